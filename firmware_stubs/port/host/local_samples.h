/* The host port's local data: the raw sample file export/firmware_samples.py writes from a device's .npz.
 * (On a meter the samples come from its sensor through the board's HAL instead.) */
#ifndef DMSKD_LOCAL_SAMPLES_H
#define DMSKD_LOCAL_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *x;        /* n * dim features, sample after sample */
    const int32_t *labels; /* n labels (-1: unlabelled), or NULL */
    size_t n;
    size_t dim;
} dmskd_samples;

/* Read `path` into the caller's buffers (x_cap floats, labels_cap labels); false with `why` naming the fix. */
bool dmskd_load_samples(const char *path, float *x, size_t x_cap, int32_t *labels, size_t labels_cap,
                        dmskd_samples *out, char *why, size_t why_cap);

#endif
