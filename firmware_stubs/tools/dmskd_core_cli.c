/* dmskd_core_cli: the core's functions over files, for tests/firmware (one verb per command).
   Results are JSON on stdout; a core refusal prints {"status": "rejected", "reason", "message"}, exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
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

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static const command COMMANDS[] = {
    {"sha256", cmd_sha256, "sha256 FILE: the hex sha256 of FILE"},
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
