/* The discrete Gaussian N_Z(0, sigma^2) by Canonne, Kamath and Steinke's rejection from a discrete Laplace of
   scale t = floor(sigma) + 1, as edge.noise_source.discrete_gaussian_numpy draws it: Y = G1 - G2 for two
   geometrics of success probability 1 - exp(-1/t), kept with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)).
   Floating point, like the seeded Python sampler; the uniforms come from the port's entropy (64-bit words). */
#include <math.h>

#include "dmskd/privacy.h"

/* A geometric draw on {1, 2, ...} with P(k) = (1 - q) q^(k-1), q = exp(-1/t), by inversion. */
static dmskd_status geometric(double log_q, const dmskd_entropy *src, double *out) {
    double u;
    dmskd_status st = dmskd_entropy_uniform(src, &u);
    if (st != DMSKD_OK) return st;
    *out = floor(log1p(-u) / log_q) + 1.0;  /* 1 - u in (0, 1] */
    return DMSKD_OK;
}

dmskd_status dmskd_discrete_gaussian(double sigma2, const dmskd_entropy *src, int64_t *out) {
    if (!(sigma2 > 0) || !isfinite(sigma2) || sigma2 > 1e30) return DMSKD_BAD_ARGUMENT;
    double t = floor(sqrt(sigma2)) + 1.0;
    double log_q = -1.0 / t;
    for (;;) {
        double g1, g2, u;
        dmskd_status st = geometric(log_q, src, &g1);
        if (st == DMSKD_OK) st = geometric(log_q, src, &g2);
        if (st == DMSKD_OK) st = dmskd_entropy_uniform(src, &u);
        if (st != DMSKD_OK) return st;
        double y = g1 - g2;
        double d = fabs(y) - sigma2 / t;
        if (u < exp(-(d * d) / (2.0 * sigma2))) {
            *out = (int64_t)y;
            return DMSKD_OK;
        }
    }
}

dmskd_status dmskd_randomized_round(double x, const dmskd_entropy *src, int64_t *out) {
    double a = fabs(x);
    if (!isfinite(a) || a >= 9223372036854775808.0) return DMSKD_BAD_ARGUMENT;
    double low = floor(a);
    double frac = a - low;                                 /* exact (Sterbenz) */
    uint64_t threshold = (uint64_t)floor(frac * 18446744073709551616.0);  /* exact: f * 2^64 < 2^64 */
    uint64_t word;
    dmskd_status st = dmskd_entropy_u64(src, &word);
    if (st != DMSKD_OK) return st;
    int64_t rounded = (int64_t)low + (word < threshold ? 1 : 0);  /* P(up) = frac to 2^-64 */
    *out = x < 0 ? -rounded : rounded;
    return DMSKD_OK;
}
