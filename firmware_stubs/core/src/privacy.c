/* L2 clipping as edge.privacy.clip_update computes it: per-tensor float64 sums of squares with numpy's
   pairwise summation, summed across tensors in order, sqrt; then value * float32(min(1, C / max(norm, 1e-12))). */
#include <math.h>

#include "dmskd/privacy.h"

/* numpy's pairwise sum of squares (loops_utils.h: blocks of 8 accumulators up to 128 values, halves beyond). */
static double pairwise_squares(const float *a, size_t n) {
    if (n < 8) {
        double res = 0.0;
        for (size_t i = 0; i < n; i++) res += (double)a[i] * (double)a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = (double)a[j] * (double)a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8) {
            for (int j = 0; j < 8; j++) r[j] += (double)a[i + j] * (double)a[i + j];
        }
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += (double)a[i] * (double)a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_squares(a, n2) + pairwise_squares(a + n2, n - n2);
}

double dmskd_l2_norm(const float *const *tensors, const size_t *sizes, size_t ntensors) {
    double total = 0.0;
    for (size_t i = 0; i < ntensors; i++) total += 0.0 + pairwise_squares(tensors[i], sizes[i]);
    return sqrt(total);
}

dmskd_status dmskd_clip_update(float *const *tensors, const size_t *sizes, size_t ntensors, double clip,
                               double *norm_before, dmskd_error *err) {
    if (!(clip > 0)) return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "clip norm must be positive, got %g", clip);
    double norm = dmskd_l2_norm((const float *const *)tensors, sizes, ntensors);
    double scale = clip / (norm > 1e-12 ? norm : 1e-12);
    if (scale > 1.0) scale = 1.0;
    float s = (float)scale;  /* numpy 1.26 multiplies a float32 array by a Python float in float32 */
    for (size_t i = 0; i < ntensors; i++) {
        for (size_t k = 0; k < sizes[i]; k++) {
            volatile float v = tensors[i][k] * s;
            tensors[i][k] = v;
        }
    }
    if (norm_before != NULL) *norm_before = norm;
    return DMSKD_OK;
}

double dmskd_dg_granularity(double clip, size_t dimension) {
    return clip / (DMSKD_GRID_STEPS * sqrt((double)dimension));
}

dmskd_status dmskd_privatise_local(float *const *tensors, const size_t *sizes, size_t ntensors, double clip,
                                   double noise_multiplier, const dmskd_entropy *src, dmskd_error *err) {
    size_t dimension = 0;
    for (size_t i = 0; i < ntensors; i++) dimension += sizes[i];
    if (!(clip > 0) || !(noise_multiplier > 0) || dimension < 1) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "the discrete Gaussian mechanism needs clip > 0, noise multiplier "
                          "> 0 and a dimension >= 1, got %g, %g, %zu", clip, noise_multiplier, dimension);
    }
    double gamma = dmskd_dg_granularity(clip, dimension);
    double sigma = noise_multiplier * clip / gamma;
    double sigma2 = sigma * sigma;
    for (size_t i = 0; i < ntensors; i++) {
        for (size_t k = 0; k < sizes[i]; k++) {
            int64_t grid, noise;
            dmskd_status st = dmskd_randomized_round((double)tensors[i][k] / gamma, src, &grid);
            if (st == DMSKD_OK) st = dmskd_discrete_gaussian(sigma2, src, &noise);
            if (st == DMSKD_BAD_ARGUMENT) {
                return dmskd_fail(err, st, "a value of the record is not finite or too large to round onto the grid; "
                                  "clip the record first");
            }
            if (st != DMSKD_OK) return dmskd_fail(err, st, "the noise entropy source failed");
            tensors[i][k] = (float)((double)(grid + noise) * gamma);
        }
    }
    return DMSKD_OK;
}
