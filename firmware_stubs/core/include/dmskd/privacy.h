/* L2 clipping and the discrete Gaussian mechanism of the Python edge (edge/privacy.py,
   edge/noise_source.py): the same arithmetic and distributions, entropy only from the port. */
#ifndef DMSKD_PRIVACY_H
#define DMSKD_PRIVACY_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/entropy.h"
#include "dmskd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_GRID_STEPS 1000  /* edge.privacy.GRID_STEPS */

/* The L2 norm of values[n] (float64 squares, numpy's pairwise summation per tensor, as global_l2_norm). */
double dmskd_l2_norm(const float *const *tensors, const size_t *sizes, size_t ntensors);

/* Scale every tensor so the global L2 norm is at most clip (edge.privacy.clip_update); *norm_before. */
dmskd_status dmskd_clip_update(float *const *tensors, const size_t *sizes, size_t ntensors, double clip,
                               double *norm_before, dmskd_error *err);

/* One draw of the discrete Gaussian N_Z(0, sigma2) by CKS 2020's rejection from a discrete Laplace. */
dmskd_status dmskd_discrete_gaussian(double sigma2, const dmskd_entropy *src, int64_t *out);

/* Unbiased randomized rounding of x to an integer (P(up) = x - floor(x) to 2^-64). */
dmskd_status dmskd_randomized_round(double x, const dmskd_entropy *src, int64_t *out);

/* The grid step gamma = clip / (GRID_STEPS * sqrt(dimension)) (DiscreteGaussianMechanism.granularity). */
double dmskd_dg_granularity(double clip, size_t dimension);

/* A device's `local`-mode release in place: each clipped value rounded onto the grid, plus
   N_Z(0, (z clip / gamma)^2), back in its units as float32 (DiscreteGaussianMechanism.privatise). */
dmskd_status dmskd_privatise_local(float *const *tensors, const size_t *sizes, size_t ntensors, double clip,
                                   double noise_multiplier, const dmskd_entropy *src, dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
