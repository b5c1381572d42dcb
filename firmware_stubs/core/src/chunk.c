/* Chunk framing of edge.chunking: a 37-byte big-endian header (magic "DMCK", framing version 2, message id,
   index, count, total length, sha256[:16]) followed by the message bytes [index * B, (index + 1) * B). */
#include <string.h>

#include "dmskd/chunk.h"
#include "dmskd/sha256.h"

#define FRAMING_VERSION 2

void dmskd_message_key(const char *message_id, uint8_t out[8]) {
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(message_id, strlen(message_id), digest);
    memcpy(out, digest, 8);
}

dmskd_status dmskd_chunk_count(size_t len, size_t limit, uint16_t *count, dmskd_error *err) {
    if (limit < DMSKD_CHUNK_MIN_LIMIT) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "chunk limit %zu is too small; use at least %d bytes", limit,
                          DMSKD_CHUNK_MIN_LIMIT);
    }
#if SIZE_MAX > 0xFFFFFFFFu
    if (len > 0xFFFFFFFFu) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "message of %zu bytes exceeds the 4 GiB a chunk header can state",
                          len);
    }
#endif
    size_t body = limit - DMSKD_CHUNK_HEADER_BYTES;
    size_t n = len == 0 ? 1 : (len + body - 1) / body;
    if (n > DMSKD_CHUNK_MAX_COUNT) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "message of %zu bytes needs %zu chunks, more than %d; raise the "
                          "chunk limit", len, n, DMSKD_CHUNK_MAX_COUNT);
    }
    *count = (uint16_t)n;
    return DMSKD_OK;
}

static void put_be(uint8_t *p, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static uint32_t get_be(const uint8_t *p, int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
    return v;
}

dmskd_status dmskd_chunk_write(const uint8_t *payload, size_t len, const uint8_t key[8], size_t limit,
                               uint16_t index, uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err) {
    uint16_t count = 0;
    dmskd_status st = dmskd_chunk_count(len, limit, &count, err);
    if (st != DMSKD_OK) return st;
    if (index >= count) return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "chunk index %u outside 0..%u", index, count - 1);
    size_t body = limit - DMSKD_CHUNK_HEADER_BYTES;
    size_t begin = (size_t)index * body;
    size_t n = len - begin < body ? len - begin : body;
    if (len == 0) n = 0;
    if (cap < DMSKD_CHUNK_HEADER_BYTES + n) {
        return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "chunk needs %zu bytes, the buffer holds %zu",
                          DMSKD_CHUNK_HEADER_BYTES + n, cap);
    }
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(payload, len, digest);
    memcpy(out, "DMCK", 4);
    out[4] = FRAMING_VERSION;
    memcpy(out + 5, key, 8);
    put_be(out + 13, index, 2);
    put_be(out + 15, count, 2);
    put_be(out + 17, (uint32_t)len, 4);
    memcpy(out + 21, digest, 16);
    if (n > 0) memcpy(out + DMSKD_CHUNK_HEADER_BYTES, payload + begin, n);
    *out_len = DMSKD_CHUNK_HEADER_BYTES + n;
    return DMSKD_OK;
}

dmskd_status dmskd_chunk_parse(const uint8_t *chunk, size_t len, dmskd_chunk_header *header,
                               const uint8_t **body, size_t *body_len, dmskd_error *err) {
    if (len >= 8 && memcmp(chunk, "DMSKDCH1", 8) == 0) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk in protocol 1's JSON framing (magic DMSKDCH1); this build "
                          "speaks framing version %d: upgrade the sender", FRAMING_VERSION);
    }
    if (len < 4 || memcmp(chunk, "DMCK", 4) != 0) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "not a DMSKD chunk (bad magic); publish with "
                          "edge.chunking.split_message");
    }
    if (len < DMSKD_CHUNK_HEADER_BYTES) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk truncated inside its %d-byte header (%zu bytes)",
                          DMSKD_CHUNK_HEADER_BYTES, len);
    }
    if (chunk[4] != FRAMING_VERSION) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk framing version %u, this build speaks %d; upgrade the "
                          "sender or this runtime", chunk[4], FRAMING_VERSION);
    }
    memcpy(header->message_id, chunk + 5, 8);
    header->index = (uint16_t)get_be(chunk + 13, 2);
    header->count = (uint16_t)get_be(chunk + 15, 2);
    header->total_length = get_be(chunk + 17, 4);
    memcpy(header->hash, chunk + 21, 16);
    if (!(header->index < header->count)) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk index %u outside 0..%d", header->index,
                          (int)header->count - 1);
    }
    *body = chunk + DMSKD_CHUNK_HEADER_BYTES;
    *body_len = len - DMSKD_CHUNK_HEADER_BYTES;
    return DMSKD_OK;
}
