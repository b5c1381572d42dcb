/* Stochastic quantisation, bit-exact with edge.stochastic_quantization.quantize: zero = float32(min x),
   scale = float32((max - min) / (2^b - 1)) (1.0 for a constant tensor), s = clamp((x - zero) / scale, 0, L),
   code = floor(s) + [u < s - floor(s)], all in float64. */
#include "quantize.h"

#include <math.h>

size_t dmskd_sq_packed_length(size_t count, unsigned bits) { return (count * bits + 7) / 8; }

unsigned dmskd_sq_code(const uint8_t *packed, size_t k, unsigned bits) {
    unsigned per_byte = 8 / bits;
    return (packed[k / per_byte] >> ((k % per_byte) * bits)) & ((1u << bits) - 1);
}

static double value_at(const float *a, const float *b, size_t i) {
    return b != NULL ? (double)a[i] - (double)b[i] : (double)a[i];
}

dmskd_status dmskd_sq_encode_tensor(const float *a, const float *b, size_t n, unsigned bits, const dmskd_entropy *rng,
                                    uint8_t *packed, size_t *position, float qparams[2]) {
    const double levels = (double)((1u << bits) - 1);
    double lo = 0.0, hi = 0.0;
    if (n > 0) {
        double mn = value_at(a, b, 0), mx = mn;
        for (size_t i = 0; i < n; i++) {
            double x = value_at(a, b, i);
            if (!isfinite(x)) return DMSKD_BAD_ARGUMENT;
            if (x < mn) mn = x;
            if (x > mx) mx = x;
        }
        lo = (double)(float)mn;
        hi = (double)(float)mx;
    }
    double scale = hi > lo ? (double)(float)((hi - lo) / levels) : 1.0;
    unsigned per_byte = 8 / bits;
    for (size_t i = 0; i < n; i++) {
        double s = (value_at(a, b, i) - lo) / scale;
        if (s < 0.0) s = 0.0;
        if (s > levels) s = levels;
        double fl = floor(s);
        double u;
        dmskd_status st = dmskd_entropy_uniform(rng, &u);
        if (st != DMSKD_OK) return st;
        double code = fl + (u < s - fl ? 1.0 : 0.0);
        if (code > levels) code = levels;
        size_t k = (*position)++;
        packed[k / per_byte] |= (uint8_t)((unsigned)code << ((k % per_byte) * bits));
    }
    qparams[0] = (float)scale;
    qparams[1] = (float)lo;
    return DMSKD_OK;
}
