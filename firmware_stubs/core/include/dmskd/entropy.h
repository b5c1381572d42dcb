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

/* A source's bytes served in the order it produces them, read DMSKD_ENTROPY_POOL_BYTES at a time: one
   TRNG read or getrandom call per 32 words instead of one per word (stochastic rounding draws one word per
   parameter). Served bytes are wiped. The pool reads ahead, so its source must not run dry. */
#define DMSKD_ENTROPY_POOL_BYTES 256
typedef struct {
    dmskd_entropy source;
    uint8_t bytes[DMSKD_ENTROPY_POOL_BYTES];
    size_t next; /* the first unserved byte; DMSKD_ENTROPY_POOL_BYTES: empty */
} dmskd_entropy_pool;

/* An empty pool over source, and the entropy source that draws from it (valid while pool lives). */
dmskd_entropy dmskd_entropy_pooled(dmskd_entropy_pool *pool, dmskd_entropy source);

/* A uniform 64-bit word: 8 bytes from the source, little-endian. */
dmskd_status dmskd_entropy_u64(const dmskd_entropy *src, uint64_t *out);

/* A uniform double in [0, 1): (word >> 11) * 2^-53, exactly numpy's Generator.random() for the same
   64-bit word (so a test feeding PCG64's raw words reproduces a seeded Python draw bit for bit). */
dmskd_status dmskd_entropy_uniform(const dmskd_entropy *src, double *out);

#ifdef __cplusplus
}
#endif
#endif
