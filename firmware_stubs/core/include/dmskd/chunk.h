/* Chunks of a logical message and their bounded reassembly (docs/wire-protocol.md §2, edge/chunking.py). */
#ifndef DMSKD_CHUNK_H
#define DMSKD_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_CHUNK_HEADER_BYTES 37
#define DMSKD_CHUNK_MIN_LIMIT 512
#define DMSKD_CHUNK_DEFAULT_LIMIT 131072
#define DMSKD_CHUNK_MAX_COUNT 65535
#define DMSKD_MAX_STREAM 128  /* the longest logical topic a reassembly slot keys on, NUL included */

/* A chunk's header: message id (8 bytes), index, count, whole-message length and 16-byte sha256 prefix. */
typedef struct {
    uint8_t message_id[8];
    uint16_t index;
    uint16_t count;
    uint32_t total_length;
    uint8_t hash[16];
} dmskd_chunk_header;

/* The 8 bytes a message id travels as: the first 8 bytes of sha256 of its text (edge.chunking.message_key). */
void dmskd_message_key(const char *message_id, uint8_t out[8]);

/* How many chunks of at most limit bytes (header included) a message of len bytes takes. */
dmskd_status dmskd_chunk_count(size_t len, size_t limit, uint16_t *count, dmskd_error *err);

/* Write chunk `index` of payload (as edge.chunking.split_message) into out[cap]; *out_len its size. */
dmskd_status dmskd_chunk_write(const uint8_t *payload, size_t len, const uint8_t key[8], size_t limit,
                               uint16_t index, uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err);

/* Read a chunk's header and body (edge.chunking.parse_chunk's refusals, as DMSKD_CHUNK_REJECTED). */
dmskd_status dmskd_chunk_parse(const uint8_t *chunk, size_t len, dmskd_chunk_header *header,
                               const uint8_t **body, size_t *body_len, dmskd_error *err);

/* One partial message being reassembled; its buffer and received-bitmap come from the caller's memory. */
typedef struct {
    int in_use;
    char stream[DMSKD_MAX_STREAM];
    dmskd_chunk_header header;
    uint8_t *buffer;         /* capacity bytes for the message */
    uint8_t *received;       /* one bit per chunk index */
    uint32_t stored;         /* bytes held */
    uint32_t body_size;      /* the body size of a non-last chunk, 0 until one arrived */
    uint16_t received_count;
    uint64_t started;        /* arrival order, for oldest-first eviction */
    uint64_t started_ms;     /* the port's clock at its first chunk (dmskd_assembler_add_at) */
} dmskd_reassembly_slot;

/* Reassembles interleaved messages of many streams in fixed memory: nslots partial messages of at most
   slot_capacity bytes each, at most max_stream_pending per stream; a new message evicts the oldest
   (its own stream's first), counted in evictions. A message of one chunk is checked in place and takes
   no slot. Never allocates. */
typedef struct {
    dmskd_reassembly_slot *slots;
    size_t nslots;
    size_t slot_capacity;    /* the largest message accepted */
    size_t max_stream_pending;
    size_t bitmap_bytes;     /* per slot: bounds the chunks a message may have */
    uint64_t clock;
    uint32_t evictions;      /* partial messages dropped to make room or expired */
    uint64_t ttl_ms;         /* a partial message older than this is dropped (0: never; dmskd_assembler_set_ttl) */
    uint64_t now_ms;         /* the latest clock reading seen */
    uint32_t expirations;    /* of the evictions, those for age */
    size_t peak_pending;     /* the most partial messages held at once (a single-chunk message holds no slot) */
} dmskd_assembler;

/* Bytes of memory an assembler of nslots messages of capacity bytes needs (buffers + bitmaps). */
size_t dmskd_assembler_memory(size_t nslots, size_t capacity, size_t limit);

/* Set up an assembler over slots[nslots] and memory[memory_bytes] (at least dmskd_assembler_memory(...),
   where limit is the smallest chunk limit senders use: it bounds the chunk count per message). */
dmskd_status dmskd_assembler_init(dmskd_assembler *a, dmskd_reassembly_slot *slots, size_t nslots,
                                  uint8_t *memory, size_t memory_bytes, size_t capacity, size_t limit,
                                  size_t max_stream_pending, dmskd_error *err);

/* Feed one chunk of stream; when it completes a message, *message points at it (valid until the next
   call; into chunk itself for a one-chunk message) and *message_len is set, else *message is NULL.
   Refusals drop the partial message. */
dmskd_status dmskd_assembler_add(dmskd_assembler *a, const char *stream, const uint8_t *chunk, size_t len,
                                 const uint8_t **message, size_t *message_len, dmskd_error *err);

/* Drop partial messages incomplete after ttl_ms of the port's clock (edge.chunking.ChunkAssembler's ttl_s);
   0 turns it off (the default). Ages are measured by dmskd_assembler_add_at's now_ms. */
void dmskd_assembler_set_ttl(dmskd_assembler *a, uint64_t ttl_ms);

/* dmskd_assembler_add at time now_ms of the port's clock (milliseconds, monotonic): first drops the partial
   messages older than the time to live, then adds the chunk. */
dmskd_status dmskd_assembler_add_at(dmskd_assembler *a, uint64_t now_ms, const char *stream, const uint8_t *chunk,
                                    size_t len, const uint8_t **message, size_t *message_len, dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
