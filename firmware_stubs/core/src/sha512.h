/* SHA-512 (FIPS 180-4), internal: the hash of Ed25519 (RFC 8032) for the Monocypher backend. */
#ifndef DMSKD_SHA512_H
#define DMSKD_SHA512_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state[8];
    uint64_t length;  /* bytes hashed (messages below 2^61 bytes) */
    uint8_t block[128];
    size_t used;
} dmskd_sha512_ctx;

/* Start a hash. */
void dmskd_sha512_init(dmskd_sha512_ctx *ctx);
/* Add len bytes. */
void dmskd_sha512_update(dmskd_sha512_ctx *ctx, const void *data, size_t len);
/* Finish and write the 64-byte digest. */
void dmskd_sha512_final(dmskd_sha512_ctx *ctx, uint8_t out[64]);

#endif
