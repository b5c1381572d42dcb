/* Encoding names and bit widths of the wire (edge.wire, edge.stochastic_quantization). */
#include <string.h>

#include "dmskd/blob.h"

static const char *const NAMES[] = {"float32-delta", "sq8-delta", "sq4-delta", "sq2-delta", "float32-weights",
                                    "uint8-affine-delta"};

const char *dmskd_encoding_name(dmskd_encoding e) {
    return (unsigned)e < sizeof NAMES / sizeof NAMES[0] ? NAMES[e] : "unknown";
}

dmskd_encoding dmskd_encoding_from_name(const char *name) {
    for (unsigned i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (strcmp(NAMES[i], name) == 0) return (dmskd_encoding)i;
    }
    return DMSKD_ENC_UNKNOWN;
}

unsigned dmskd_encoding_bits(dmskd_encoding e) {
    switch (e) {
    case DMSKD_ENC_SQ8_DELTA: return 8;
    case DMSKD_ENC_SQ4_DELTA: return 4;
    case DMSKD_ENC_SQ2_DELTA: return 2;
    case DMSKD_ENC_FLOAT32_DELTA:
    case DMSKD_ENC_FLOAT32_WEIGHTS: return 32;
    default: return 0;
    }
}

dmskd_encoding dmskd_encoding_for_bits(unsigned bits) {
    switch (bits) {
    case 32: return DMSKD_ENC_FLOAT32_DELTA;
    case 8: return DMSKD_ENC_SQ8_DELTA;
    case 4: return DMSKD_ENC_SQ4_DELTA;
    case 2: return DMSKD_ENC_SQ2_DELTA;
    default: return DMSKD_ENC_UNKNOWN;
    }
}
