/* dmskd_core_cli's chunk verbs: chunk (split a file) and join (feed chunk files to an assembler). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_verbs.h"
#include "dmskd/chunk.h"
#include "dmskd/sha256.h"

static const char CHUNK_USAGE[] = "chunk PAYLOAD --id MESSAGE_ID --limit BYTES --out-dir DIR";

int cli_chunk(int argc, char **argv) {
    if (argc < 1) cli_usage_error("chunk needs a payload file", CHUNK_USAGE);
    const char *id = NULL, *dir = NULL;
    size_t limit = DMSKD_CHUNK_DEFAULT_LIMIT;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--id")) id = argv[i + 1];
        else if (!strcmp(argv[i], "--limit")) limit = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--out-dir")) dir = argv[i + 1];
        else cli_usage_error(argv[i], CHUNK_USAGE);
    }
    if (id == NULL || dir == NULL) cli_usage_error("--id and --out-dir are required", CHUNK_USAGE);
    size_t len;
    uint8_t *payload = cli_read_file(argv[0], &len);
    uint8_t key[8];
    uint16_t count;
    dmskd_error err;
    dmskd_message_key(id, key);
    if (dmskd_chunk_count(len, limit, &count, &err) != DMSKD_OK) return cli_report_error(&err);
    uint8_t *chunk = malloc(limit);
    for (uint16_t i = 0; i < count; i++) {
        size_t n;
        if (dmskd_chunk_write(payload, len, key, limit, i, chunk, limit, &n, &err) != DMSKD_OK) {
            return cli_report_error(&err);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%u.chunk", dir, (unsigned)i);
        cli_write_file(path, chunk, n);
    }
    printf("{\"status\": \"ok\", \"count\": %u}\n", (unsigned)count);
    free(chunk);
    free(payload);
    return 0;
}

static const char JOIN_USAGE[] =
    "join --slots N --capacity BYTES --limit BYTES --pending P [--ttl-ms T] --out-dir DIR [--stream S] [--at MS] "
    "CHUNK... (--stream and --at set the stream and the clock of the chunks after them)";

int cli_join(int argc, char **argv) {
    size_t slots = 4, capacity = 1 << 20, limit = DMSKD_CHUNK_MIN_LIMIT, pending = 4;
    unsigned long long ttl_ms = 0, now_ms = 0;
    const char *dir = NULL;
    int first = 0;
    while (first + 1 < argc && strncmp(argv[first], "--", 2) == 0 && strcmp(argv[first], "--stream") != 0 &&
           strcmp(argv[first], "--at") != 0) {
        const char *k = argv[first], *v = argv[first + 1];
        if (!strcmp(k, "--slots")) slots = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--capacity")) capacity = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--limit")) limit = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--pending")) pending = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--out-dir")) dir = v;
        else if (!strcmp(k, "--ttl-ms")) ttl_ms = strtoull(v, NULL, 10);
        else cli_usage_error(k, JOIN_USAGE);
        first += 2;
    }
    if (dir == NULL) cli_usage_error("--out-dir is required", JOIN_USAGE);
    dmskd_reassembly_slot *slot_array = calloc(slots, sizeof *slot_array);
    size_t memory_bytes = dmskd_assembler_memory(slots, capacity, limit);
    uint8_t *memory = malloc(memory_bytes + 1);
    dmskd_assembler a;
    dmskd_error err;
    if (dmskd_assembler_init(&a, slot_array, slots, memory, memory_bytes, capacity, limit, pending, &err) != DMSKD_OK) {
        return cli_report_error(&err);
    }
    dmskd_assembler_set_ttl(&a, ttl_ms);
    const char *stream = "";
    unsigned messages = 0;
    printf("{\"status\": \"ok\", \"memory\": %zu, \"events\": [", memory_bytes);
    int any = 0;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--stream") && i + 1 < argc) {
            stream = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--at") && i + 1 < argc) {
            now_ms = strtoull(argv[++i], NULL, 10);
            continue;
        }
        size_t len;
        uint8_t *chunk = cli_read_file(argv[i], &len);
        const uint8_t *message;
        size_t message_len;
        dmskd_status st = dmskd_assembler_add_at(&a, now_ms, stream, chunk, len, &message, &message_len, &err);
        printf(any++ ? ", " : "");
        if (st != DMSKD_OK) {
            printf("{\"rejected\": \"%s\", \"detail\": ", dmskd_status_reason(st));
            cli_print_json_string(err.message);
            printf("}");
        } else if (message != NULL) {
            char path[4096];
            snprintf(path, sizeof path, "%s/message%u.bin", dir, messages++);
            cli_write_file(path, message, message_len);
            printf("{\"message\": ");
            cli_print_json_string(path);
            printf(", \"stream\": ");
            cli_print_json_string(stream);
            printf("}");
        } else {
            printf("\"pending\"");
        }
        free(chunk);
    }
    printf("], \"evictions\": %u, \"expirations\": %u, \"peak\": %zu}\n", (unsigned)a.evictions,
           (unsigned)a.expirations, a.peak_pending);
    free(memory);
    free(slot_array);
    return 0;
}
