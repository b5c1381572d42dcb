/* Bounded reassembly (edge.chunking.ChunkAssembler's refusals) in caller memory: each slot holds one
   partial message at fixed offsets (index * body size; the last chunk ends at the total length). */
#include <stdio.h>
#include <string.h>

#include "dmskd/chunk.h"
#include "dmskd/sha256.h"
#include "dmskd/format.h"

static size_t bitmap_bytes(size_t capacity, size_t limit) {
    size_t body = limit - DMSKD_CHUNK_HEADER_BYTES;
    return (capacity / body + 2 + 7) / 8;
}

size_t dmskd_assembler_memory(size_t nslots, size_t capacity, size_t limit) {
    if (limit < DMSKD_CHUNK_MIN_LIMIT) return 0;
    return nslots * (capacity + bitmap_bytes(capacity, limit));
}

dmskd_status dmskd_assembler_init(dmskd_assembler *a, dmskd_reassembly_slot *slots, size_t nslots,
                                  uint8_t *memory, size_t memory_bytes, size_t capacity, size_t limit,
                                  size_t max_stream_pending, dmskd_error *err) {
    size_t need = dmskd_assembler_memory(nslots, capacity, limit);
    if (nslots == 0 || need == 0 || memory_bytes < need || max_stream_pending == 0) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "an assembler of %zu slots of %zu bytes (chunk limit %zu) needs "
                          "%zu bytes of memory and at least 1 pending message per stream; got %zu bytes", nslots,
                          capacity, limit, need, memory_bytes);
    }
    size_t bits = bitmap_bytes(capacity, limit);
    a->slots = slots;
    a->nslots = nslots;
    a->slot_capacity = capacity;
    a->max_stream_pending = max_stream_pending;
    a->bitmap_bytes = bits;
    a->clock = 0;
    a->evictions = 0;
    a->peak_pending = 0;
    a->ttl_ms = 0;
    a->now_ms = 0;
    a->expirations = 0;
    for (size_t i = 0; i < nslots; i++) {
        memset(&slots[i], 0, sizeof slots[i]);
        slots[i].buffer = memory + i * (capacity + bits);
        slots[i].received = slots[i].buffer + capacity;
    }
    return DMSKD_OK;
}

static void hex_id(const uint8_t id[8], char out[17]) { dmskd_hex(id, 8, out); }

static void release(dmskd_reassembly_slot *s) { s->in_use = 0; }

/* A slot for a new message of stream: free, else the oldest of the stream if it holds too many, else oldest. */
static dmskd_reassembly_slot *claim(dmskd_assembler *a, const char *stream) {
    dmskd_reassembly_slot *free_slot = NULL, *oldest = NULL, *oldest_own = NULL;
    size_t own = 0;
    for (size_t i = 0; i < a->nslots; i++) {
        dmskd_reassembly_slot *s = &a->slots[i];
        if (!s->in_use) {
            if (free_slot == NULL) free_slot = s;
            continue;
        }
        if (oldest == NULL || s->started < oldest->started) oldest = s;
        if (strcmp(s->stream, stream) == 0) {
            own++;
            if (oldest_own == NULL || s->started < oldest_own->started) oldest_own = s;
        }
    }
    dmskd_reassembly_slot *victim = NULL;
    if (own >= a->max_stream_pending) victim = oldest_own;
    else if (free_slot == NULL) victim = oldest_own != NULL ? oldest_own : oldest;
    if (victim != NULL) {
        release(victim);
        a->evictions++;
        return victim;
    }
    return free_slot;
}

void dmskd_assembler_set_ttl(dmskd_assembler *a, uint64_t ttl_ms) { a->ttl_ms = ttl_ms; }

static void expire(dmskd_assembler *a) {
    if (a->ttl_ms == 0) return;
    for (size_t i = 0; i < a->nslots; i++) {
        dmskd_reassembly_slot *s = &a->slots[i];
        if (s->in_use && a->now_ms - s->started_ms > a->ttl_ms) {
            release(s);
            a->evictions++;
            a->expirations++;
        }
    }
}

dmskd_status dmskd_assembler_add(dmskd_assembler *a, const char *stream, const uint8_t *chunk, size_t len,
                                 const uint8_t **message, size_t *message_len, dmskd_error *err) {
    return dmskd_assembler_add_at(a, a->now_ms, stream, chunk, len, message, message_len, err);
}

dmskd_status dmskd_assembler_add_at(dmskd_assembler *a, uint64_t now_ms, const char *stream, const uint8_t *chunk,
                                    size_t len, const uint8_t **message, size_t *message_len, dmskd_error *err) {
    dmskd_chunk_header h;
    const uint8_t *body;
    size_t body_len;
    char id[17];
    *message = NULL;
    *message_len = 0;
    dmskd_error_clear(err);
    if (strlen(stream) >= DMSKD_MAX_STREAM) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "stream name longer than %d bytes", DMSKD_MAX_STREAM - 1);
    }
    dmskd_status st = dmskd_chunk_parse(chunk, len, &h, &body, &body_len, err);
    if (st != DMSKD_OK) return st;
    hex_id(h.message_id, id);
    if (now_ms > a->now_ms) a->now_ms = now_ms;  /* a clock that steps back does not rejuvenate anything */
    expire(a);
    if (h.total_length > a->slot_capacity) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "message of %lu bytes exceeds the %zu byte limit",
                          (unsigned long)h.total_length, a->slot_capacity);
    }
    dmskd_reassembly_slot *s = NULL;
    for (size_t i = 0; i < a->nslots; i++) {
        dmskd_reassembly_slot *c = &a->slots[i];
        if (c->in_use && strcmp(c->stream, stream) == 0 && memcmp(c->header.message_id, h.message_id, 8) == 0) s = c;
    }
    if (s != NULL && (s->header.count != h.count || memcmp(s->header.hash, h.hash, 16) != 0 ||
                      s->header.total_length != h.total_length)) {
        release(s);
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk of message %s disagrees with earlier chunks (count or "
                          "hash)", id);
    }
    if (h.count > 8 * a->bitmap_bytes) {
        if (s != NULL) release(s);
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "message %s in %u chunks: more than the %zu this assembler tracks "
                          "(chunks smaller than its chunk limit)", id, h.count, 8 * a->bitmap_bytes);
    }
    int last = h.index == h.count - 1;
    uint64_t offset;
    if (last) {
        if (body_len > h.total_length) offset = UINT64_MAX;
        else offset = h.total_length - body_len;
    } else {
        uint32_t size = s != NULL && s->body_size != 0 ? s->body_size : (uint32_t)body_len;
        if (body_len != size) {
            if (s != NULL) release(s);
            return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunk of message %s has a %zu-byte body where earlier ones "
                              "had %lu (not cut by edge.chunking.split_message)", id, body_len, (unsigned long)size);
        }
        offset = (uint64_t)h.index * body_len;
    }
    int seen = s != NULL && (s->received[h.index / 8] >> (h.index % 8) & 1);
    uint64_t stored_after = (s != NULL ? s->stored : 0) + (seen ? 0 : body_len);
    if (offset == UINT64_MAX || offset + body_len > h.total_length || stored_after > h.total_length) {
        if (s != NULL) release(s);
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "chunks of message %s carry more bytes than the %lu it declares",
                          id, (unsigned long)h.total_length);
    }
    if (s == NULL && h.count == 1) { /* whole in one chunk: checked in place, no slot taken, nothing evicted */
        uint8_t whole[DMSKD_SHA256_BYTES];
        dmskd_sha256(body, body_len, whole);
        if (body_len != h.total_length || memcmp(whole, h.hash, 16) != 0) {
            return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "message %s failed its sha256 check after reassembly", id);
        }
        *message = body;
        *message_len = body_len;
        return DMSKD_OK;
    }
    if (s == NULL) {
        s = claim(a, stream);
        memset(s->received, 0, a->bitmap_bytes);
        s->in_use = 1;
        dmskd_format(s->stream, sizeof s->stream, "%s", stream);
        s->header = h;
        s->stored = 0;
        s->body_size = 0;
        s->received_count = 0;
        s->started = a->clock++;
        s->started_ms = a->now_ms;
        size_t held = 0;
        for (size_t i = 0; i < a->nslots; i++) held += a->slots[i].in_use ? 1u : 0u;
        if (held > a->peak_pending) a->peak_pending = held;
    }
    if (!last) s->body_size = (uint32_t)body_len;
    memcpy(s->buffer + offset, body, body_len);
    if (!seen) {
        s->received[h.index / 8] |= (uint8_t)(1u << (h.index % 8));
        s->received_count++;
        s->stored += (uint32_t)body_len;
    }
    if (s->received_count < h.count) return DMSKD_OK;
    release(s);
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(s->buffer, h.total_length, digest);
    if (s->stored != h.total_length || memcmp(digest, h.hash, 16) != 0) {
        return dmskd_fail(err, DMSKD_CHUNK_REJECTED, "message %s failed its sha256 check after reassembly", id);
    }
    *message = s->buffer;
    *message_len = h.total_length;
    return DMSKD_OK;
}
