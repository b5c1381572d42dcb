/* Uniform words and doubles from the port's entropy callback. */
#include "dmskd/entropy.h"

#include <string.h>

static int pool_fill(void *ctx, uint8_t *out, size_t n) {
    dmskd_entropy_pool *pool = ctx;
    while (n > 0) {
        if (pool->next == DMSKD_ENTROPY_POOL_BYTES) {
            if (pool->source.fill(pool->source.ctx, pool->bytes, DMSKD_ENTROPY_POOL_BYTES) != 0) return 1;
            pool->next = 0;
        }
        size_t take = DMSKD_ENTROPY_POOL_BYTES - pool->next;
        if (take > n) take = n;
        memcpy(out, pool->bytes + pool->next, take);
        memset(pool->bytes + pool->next, 0, take);
        pool->next += take;
        out += take;
        n -= take;
    }
    return 0;
}

dmskd_entropy dmskd_entropy_pooled(dmskd_entropy_pool *pool, dmskd_entropy source) {
    pool->source = source;
    pool->next = DMSKD_ENTROPY_POOL_BYTES;
    return (dmskd_entropy){pool_fill, pool};
}

dmskd_status dmskd_entropy_u64(const dmskd_entropy *src, uint64_t *out) {
    uint8_t raw[8];
    if (src == NULL || src->fill == NULL) return DMSKD_BAD_ARGUMENT;
    if (src->fill(src->ctx, raw, sizeof raw) != 0) return DMSKD_ENTROPY_FAILED;
    uint64_t word = 0;
    for (int i = 7; i >= 0; i--) word = word << 8 | raw[i];
    *out = word;
    return DMSKD_OK;
}

dmskd_status dmskd_entropy_uniform(const dmskd_entropy *src, double *out) {
    uint64_t word;
    dmskd_status st = dmskd_entropy_u64(src, &word);
    if (st != DMSKD_OK) return st;
    *out = (double)(word >> 11) * (1.0 / 9007199254740992.0);
    return DMSKD_OK;
}
