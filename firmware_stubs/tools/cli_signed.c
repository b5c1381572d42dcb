/* dmskd_core_cli's verify verb: open envelopes in order through one replay guard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_verbs.h"
#include "dmskd/sha256.h"
#include "dmskd/signed.h"

static const char USAGE[] = "verify --key PEM [--topic T] [--stream S] ENVELOPE... (--topic/--stream apply to the "
                            "envelopes after them; the stream defaults to the topic)";

int cli_verify(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[0], "--key") != 0) cli_usage_error("verify needs --key first", USAGE);
    size_t len;
    uint8_t *pem = cli_read_file(argv[1], &len);
    uint8_t pk[DMSKD_PUBLIC_KEY_BYTES];
    dmskd_error err;
    if (dmskd_public_key_from_pem((const char *)pem, len, pk, &err) != DMSKD_OK) return cli_report_error(&err);
    dmskd_replay_entry entries[8];
    memset(entries, 0, sizeof entries);
    dmskd_replay_guard guard = {entries, 8};
    const char *topic = "", *stream = NULL;
    printf("{\"status\": \"ok\", \"backend\": \"%s\", \"events\": [", dmskd_ed25519_backend());
    int any = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--topic") && i + 1 < argc) { topic = argv[++i]; continue; }
        if (!strcmp(argv[i], "--stream") && i + 1 < argc) { stream = argv[++i]; continue; }
        size_t n;
        uint8_t *envelope = cli_read_file(argv[i], &n);
        dmskd_opened opened;
        int is_new = 0;
        dmskd_status st = dmskd_open_envelope(pk, topic, envelope, n, &opened, &err);
        if (st == DMSKD_OK) st = dmskd_replay_admit(&guard, stream ? stream : topic, &opened, &is_new, &err);
        printf(any++ ? ", " : "");
        if (st != DMSKD_OK) {
            printf("{\"rejected\": \"%s\", \"detail\": ", dmskd_status_reason(st));
            cli_print_json_string(err.message);
            printf("}");
        } else {
            char hex[65];
            dmskd_hex(opened.digest, 32, hex);
            printf("{\"counter\": %llu, \"new\": %s, \"payload_sha256\": \"%s\", \"topic\": ",
                   (unsigned long long)opened.counter, is_new ? "true" : "false", hex);
            cli_print_json_string(opened.topic);
            printf("}");
        }
        free(envelope);
    }
    printf("]}\n");
    free(pem);
    return 0;
}
