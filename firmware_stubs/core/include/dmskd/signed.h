/* Verification of the aggregator's Ed25519-signed envelopes with topic binding and a replay guard
   (edge/signed_artifact.py):
   envelope = MAGIC "DMSKD-SIGNED-1\n" | u32 BE header length | header JSON {"counter", "sha256", "topic"}
              | payload | Ed25519 signature (64) over everything before it. */
#ifndef DMSKD_SIGNED_H
#define DMSKD_SIGNED_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/chunk.h"
#include "dmskd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_SIGNED_MAGIC "DMSKD-SIGNED-1\n"
#define DMSKD_SIGNED_MAGIC_BYTES 15
#define DMSKD_SIGNATURE_BYTES 64
#define DMSKD_SIGNED_MAX_HEADER 4096
#define DMSKD_PUBLIC_KEY_BYTES 32

/* A verified envelope: the topic it was signed for, its counter, its payload (points into the envelope). */
typedef struct {
    char topic[DMSKD_MAX_STREAM];
    uint64_t counter;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t digest[32];  /* sha256 of the payload */
} dmskd_opened;

/* The Ed25519 backend's name ("libsodium", "monocypher"). */
const char *dmskd_ed25519_backend(void);

/* 0 if sig is a valid Ed25519 signature of msg under pk, non-zero otherwise. */
int dmskd_ed25519_verify(const uint8_t sig[DMSKD_SIGNATURE_BYTES], const uint8_t *msg, size_t len,
                         const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES]);

/* The 32-byte key of a SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----", what devices pin). */
dmskd_status dmskd_public_key_from_pem(const char *pem, size_t len, uint8_t pk[DMSKD_PUBLIC_KEY_BYTES],
                                       dmskd_error *err);

/* Verify an envelope received on topic (signature, topic binding, payload digest) as
   edge.signed_artifact.open_envelope does; DMSKD_SIGNATURE_REJECTED names what is wrong. */
dmskd_status dmskd_open_envelope(const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES], const char *topic,
                                 const uint8_t *envelope, size_t len, dmskd_opened *out, dmskd_error *err);

/* The highest counter (and its payload digest) accepted on one stream. */
typedef struct {
    int used;
    char stream[DMSKD_MAX_STREAM];
    uint64_t counter;
    uint8_t digest[32];
} dmskd_replay_entry;

/* ReplayGuard over caller-provided entries (persist them to survive a reboot). */
typedef struct {
    dmskd_replay_entry *entries;
    size_t nentries;
} dmskd_replay_guard;

/* Admit an opened envelope on stream: *is_new = 1 for a newer message, 0 for a re-delivery of the held
   one; DMSKD_SIGNATURE_REJECTED for an older counter or a different message under the held counter. */
dmskd_status dmskd_replay_admit(dmskd_replay_guard *guard, const char *stream, const dmskd_opened *opened,
                                int *is_new, dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
