/* Randomness only through a callback the port provides (no OS calls in the core). */
#ifndef DMSKD_ENTROPY_H
#define DMSKD_ENTROPY_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill out with n uniform random bytes; return 0 on success, non-zero on failure. */
typedef int (*dmskd_entropy_fill)(void *ctx, uint8_t *out, size_t n);

/* An entropy source: the port's callback and its context (a TRNG on an MCU, getrandom on a host). */
typedef struct {
    dmskd_entropy_fill fill;
    void *ctx;
} dmskd_entropy;

/* A uniform 64-bit word: 8 bytes from the source, little-endian. */
dmskd_status dmskd_entropy_u64(const dmskd_entropy *src, uint64_t *out);

/* A uniform double in [0, 1): (word >> 11) * 2^-53, exactly numpy's Generator.random() for the same
   64-bit word (so a test feeding PCG64's raw words reproduces a seeded Python draw bit for bit). */
dmskd_status dmskd_entropy_uniform(const dmskd_entropy *src, double *out);

#ifdef __cplusplus
}
#endif
#endif
