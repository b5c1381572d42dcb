/* Signed envelopes (edge.signed_artifact): layout, Ed25519 check, topic binding, payload digest, replay guard. */
#include <stdio.h>
#include <string.h>

#include "dmskd/sha256.h"
#include "dmskd/signed.h"
#include "json_scan.h"
#include "dmskd/format.h"

dmskd_status dmskd_open_envelope(const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES], const char *topic,
                                 const uint8_t *envelope, size_t len, dmskd_opened *out, dmskd_error *err) {
    const size_t start = DMSKD_SIGNED_MAGIC_BYTES + 4;
    dmskd_error_clear(err);
    if (len < DMSKD_SIGNED_MAGIC_BYTES || memcmp(envelope, DMSKD_SIGNED_MAGIC, DMSKD_SIGNED_MAGIC_BYTES) != 0) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "unsigned message on %s: the fleet's artefacts are signed "
                          "(no b'DMSKD-SIGNED-1\\n' header)", topic);
    }
    if (len < start + DMSKD_SIGNATURE_BYTES) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "truncated signed message on %s (%zu bytes)", topic, len);
    }
    const uint8_t *p = envelope + DMSKD_SIGNED_MAGIC_BYTES;
    uint32_t header_len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (header_len > DMSKD_SIGNED_MAX_HEADER || start + header_len + DMSKD_SIGNATURE_BYTES > len) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "signed message on %s declares a header of %lu bytes it does "
                          "not hold", topic, (unsigned long)header_len);
    }
    size_t signed_len = len - DMSKD_SIGNATURE_BYTES;
    if (dmskd_ed25519_verify(envelope + signed_len, envelope, signed_len, pk) != 0) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "forged or corrupted message on %s: its signature does not "
                          "verify against the pinned fleet key (Ed25519 backend %s)", topic, dmskd_ed25519_backend());
    }
    /* the header, now authentic: {"counter": N, "sha256": "<hex>", "topic": "<topic>"} */
    js_cursor c = js_open(envelope + start, header_len);
    char key[16], digest_hex[65] = "";
    int have_counter = 0, have_topic = 0;
    memset(out, 0, sizeof *out);
    if (js_expect(&c, '{') && !js_eat(&c, '}')) {
        do {
            int overlong = 0;
            if (!js_string(&c, key, sizeof key, &overlong) || !js_expect(&c, ':')) break;
            if (!overlong && strcmp(key, "counter") == 0) {
                uint64_t v;
                if (!js_uint64(&c, &v)) break;
                out->counter = v;
                have_counter = 1;
            } else if (!overlong && strcmp(key, "sha256") == 0) {
                if (!js_string(&c, digest_hex, sizeof digest_hex, &overlong)) break;
            } else if (!overlong && strcmp(key, "topic") == 0) {
                if (!js_string(&c, out->topic, sizeof out->topic, &overlong)) break;
                have_topic = !overlong;
            } else if (!js_skip(&c)) {
                break;
            }
        } while (js_eat(&c, ','));
        if (c.error == NULL) js_expect(&c, '}');
    }
    if (c.error != NULL || !have_counter) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "signed message on %s: its header is not the "
                          "{counter, sha256, topic} object this firmware reads", topic);
    }
    if (!have_topic || strcmp(out->topic, topic) != 0) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "message signed for '%s' arrived on '%s' (moved topic)",
                          out->topic, topic);
    }
    out->payload = envelope + start + header_len;
    out->payload_len = signed_len - start - header_len;
    char hex[65];
    dmskd_sha256(out->payload, out->payload_len, out->digest);
    dmskd_hex(out->digest, DMSKD_SHA256_BYTES, hex);
    if (strcmp(hex, digest_hex) != 0) {
        return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "signed message on %s: payload does not match its signed "
                          "digest", topic);
    }
    return DMSKD_OK;
}

dmskd_status dmskd_replay_admit(dmskd_replay_guard *guard, const char *stream, const dmskd_opened *opened,
                                int *is_new, dmskd_error *err) {
    dmskd_replay_entry *held = NULL, *free_entry = NULL;
    *is_new = 0;
    if (strlen(stream) >= DMSKD_MAX_STREAM) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "stream name longer than %d bytes", DMSKD_MAX_STREAM - 1);
    }
    for (size_t i = 0; i < guard->nentries; i++) {
        dmskd_replay_entry *e = &guard->entries[i];
        if (e->used && strcmp(e->stream, stream) == 0) held = e;
        else if (!e->used && free_entry == NULL) free_entry = e;
    }
    if (held != NULL) {
        if (opened->counter < held->counter) {
            return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "replayed %s: counter %llu is older than the %llu "
                              "already held", stream, (unsigned long long)opened->counter,
                              (unsigned long long)held->counter);
        }
        if (opened->counter == held->counter) {
            if (memcmp(opened->digest, held->digest, sizeof held->digest) != 0) {
                return dmskd_fail(err, DMSKD_SIGNATURE_REJECTED, "%s: a different message with the held counter %llu",
                                  stream, (unsigned long long)held->counter);
            }
            return DMSKD_OK;
        }
    } else {
        if (free_entry == NULL) {
            return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "the replay guard holds %zu streams, all in use; give it "
                              "more entries", guard->nentries);
        }
        held = free_entry;
        held->used = 1;
        dmskd_format(held->stream, sizeof held->stream, "%s", stream);
    }
    held->counter = opened->counter;
    memcpy(held->digest, opened->digest, sizeof held->digest);
    *is_new = 1;
    return DMSKD_OK;
}

/* ---- the pinned key: SubjectPublicKeyInfo PEM of an Ed25519 key ---- */

static int b64_value(char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

dmskd_status dmskd_public_key_from_pem(const char *pem, size_t len, uint8_t pk[DMSKD_PUBLIC_KEY_BYTES],
                                       dmskd_error *err) {
    static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
    static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    const char *fix = "pin the fleet-signing.pub that `python -m cloud provision` wrote";
    const char *p = NULL;
    for (size_t i = 0; i + sizeof begin - 1 <= len; i++) {
        if (memcmp(pem + i, begin, sizeof begin - 1) == 0) { p = pem + i + sizeof begin - 1; break; }
    }
    if (p == NULL) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "the fleet public key is not a PEM public key (no %s line); %s",
                          begin, fix);
    }
    uint8_t der[64];
    size_t n = 0;
    unsigned acc = 0, bits = 0;
    for (; p < pem + len && *p != '-'; p++) {
        int v = b64_value(*p);
        if (v < 0) continue;  /* line breaks, padding */
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == sizeof der) break;
            der[n++] = (uint8_t)(acc >> bits);
        }
    }
    if ((size_t)(pem + len - p) < sizeof end - 1 || memcmp(p, end, sizeof end - 1) != 0 || n != 44 ||
        memcmp(der, spki_prefix, sizeof spki_prefix) != 0) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "the fleet public key is not an Ed25519 SubjectPublicKeyInfo PEM; "
                          "%s", fix);
    }
    memcpy(pk, der + 12, DMSKD_PUBLIC_KEY_BYTES);
    return DMSKD_OK;
}
