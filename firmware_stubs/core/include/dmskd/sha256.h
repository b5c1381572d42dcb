/* SHA-256 (FIPS 180-4): checksums, chunk hashes, message ids, signed digests. */
#ifndef DMSKD_SHA256_H
#define DMSKD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_SHA256_BYTES 32

/* Incremental hashing state; no heap. */
typedef struct {
    uint32_t state[8];
    uint64_t length;      /* bytes hashed so far */
    uint8_t block[64];
    size_t used;          /* bytes pending in block */
} dmskd_sha256_ctx;

/* Start a hash. */
void dmskd_sha256_init(dmskd_sha256_ctx *ctx);
/* Add len bytes. */
void dmskd_sha256_update(dmskd_sha256_ctx *ctx, const void *data, size_t len);
/* Finish and write the 32-byte digest. */
void dmskd_sha256_final(dmskd_sha256_ctx *ctx, uint8_t out[DMSKD_SHA256_BYTES]);
/* One-shot digest of data. */
void dmskd_sha256(const void *data, size_t len, uint8_t out[DMSKD_SHA256_BYTES]);
/* Lower-case hex of the first nbytes of bytes into out (2 * nbytes + 1 chars incl. NUL). */
void dmskd_hex(const uint8_t *bytes, size_t nbytes, char *out);

#ifdef __cplusplus
}
#endif
#endif
