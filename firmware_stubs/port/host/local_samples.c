/* Reads the raw sample file (format: export/firmware_samples.py) into fixed buffers; little-endian hosts. */
#include "local_samples.h"

#include <stdio.h>
#include <string.h>

#define FIX "write it with export.firmware_samples.write_samples(<device>.npz, <file>)"

static uint32_t le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

bool dmskd_load_samples(const char *path, float *x, size_t x_cap, int32_t *labels, size_t labels_cap,
                        dmskd_samples *out, char *why, size_t why_cap) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(why, why_cap, "--data %s not found or unreadable; " FIX, path);
        return false;
    }
    uint8_t header[24];
    bool ok = fread(header, 1, sizeof header, file) == sizeof header && memcmp(header, "DMSKDDT1", 8) == 0;
    if (!ok) {
        fclose(file);
        snprintf(why, why_cap, "--data %s is not a DMSKD sample file (no DMSKDDT1 header); " FIX, path);
        return false;
    }
    size_t n = le32(header + 8), dim = le32(header + 12);
    bool has_labels = le32(header + 16) != 0;
    if (n == 0 || dim == 0 || n > x_cap / dim || (has_labels && n > labels_cap)) {
        fclose(file);
        snprintf(why, why_cap, "--data %s holds %zu samples of %zu features; this build holds at most %zu floats "
                 "(rebuild with a larger DMSKD_MAX_SAMPLE_FLOATS) and at least one sample", path, n, dim, x_cap);
        return false;
    }
    ok = fread(x, sizeof(float), n * dim, file) == n * dim;
    if (ok && has_labels) ok = fread(labels, sizeof(int32_t), n, file) == n;
    fclose(file);
    if (!ok) {
        snprintf(why, why_cap, "--data %s is truncated (header says %zu samples of %zu features); " FIX, path, n, dim);
        return false;
    }
    *out = (dmskd_samples){x, has_labels ? labels : NULL, n, dim};
    return true;
}
