/* dmskd_core_cli: the core's functions over files, for tests/firmware (one verb per command).
   Results are JSON on stdout; a core refusal prints {"status": "rejected", "reason", "message"}, exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_verbs.h"
#include "dmskd/blob.h"
#include "dmskd/sha256.h"

static int cmd_sha256(int argc, char **argv) {
    if (argc != 1) cli_usage_error("sha256 takes one file", "dmskd_core_cli sha256 FILE");
    size_t len;
    uint8_t *data = cli_read_file(argv[0], &len);
    uint8_t digest[DMSKD_SHA256_BYTES];
    char hex[2 * DMSKD_SHA256_BYTES + 1];
    dmskd_sha256(data, len, digest);
    dmskd_hex(digest, sizeof digest, hex);
    printf("%s\n", hex);
    free(data);
    return 0;
}

static int cmd_repr(int argc, char **argv) {
    if (argc != 1) cli_usage_error("repr takes one file of float64 values", "dmskd_core_cli repr FILE");
    size_t len;
    uint8_t *data = cli_read_file(argv[0], &len);
    for (size_t i = 0; i + 8 <= len; i += 8) {
        double v;
        char text[40];
        memcpy(&v, data + i, sizeof v);
        if (dmskd_format_python_float(v, text, sizeof text) != DMSKD_OK) snprintf(text, sizeof text, "(refused)");
        printf("%s\n", text);
    }
    free(data);
    return 0;
}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static const command COMMANDS[] = {
    {"sha256", cmd_sha256, "sha256 FILE: the hex sha256 of FILE"},
    {"repr", cmd_repr, "repr FILE: Python's repr of each float64 in FILE, one a line"},
    {"encode-update", cli_encode_update, "encode-update --tensor NAME:SHAPE ... --values F32 --out BLOB [meta]"},
    {"encode-weights", cli_encode_weights, "encode-weights --tensor NAME:SHAPE ... --values F32 --out BLOB"},
    {"encode-step", cli_encode_step, "encode-step --tensor NAME:SHAPE ... --values NEW --old OLD --out BLOB"},
    {"chunk", cli_chunk, "chunk PAYLOAD --id ID --limit BYTES --out-dir DIR"},
    {"join", cli_join, "join --slots N --capacity B --limit B --pending P --out-dir DIR [--stream S] CHUNK..."},
    {"verify", cli_verify, "verify --key PEM [--topic T] [--stream S] ENVELOPE..."},
    {"plan", cli_plan, "plan PLAN.json"},
    {"clip", cli_clip, "clip --size N ... --values F32 --clip C --out F32"},
    {"privatise", cli_privatise, "privatise --size N ... --values F32 --clip C --noise Z --seed S --out F32"},
    {"noise", cli_noise, "noise --sigma2 S | --round X --count N --seed S --out I64"},
    {"decode", cli_decode, "decode update|weights|step BLOB [--tensor NAME:SHAPE ...] [--values-out F32]"},
};

int main(int argc, char **argv) {
    size_t n = sizeof COMMANDS / sizeof COMMANDS[0];
    if (argc >= 2) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 2, argv + 2);
        }
    }
    fprintf(stderr, "usage: dmskd_core_cli COMMAND ARGS...; commands:\n");
    for (size_t i = 0; i < n; i++) fprintf(stderr, "  %s\n", COMMANDS[i].usage);
    return 64;
}
