/* dmskd-firmware: the firmware's device loop on a host, over the host port (paho.mqtt.c, files, getrandom).
 * Flags follow `python -m edge run`; exit codes as edge/cli.py: 0 done, 1 run failed, 2 bad command line. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "device.h"
#include "device_limits.h"
#include "host_port.h"
#include "local_samples.h"
#include "trainer.h"

#if __has_include("dmskd_device_config.h")
#include "dmskd_device_config.h" /* python -m export's configuration: its fleet chunk limit is the default */
#define DEFAULT_CHUNK_LIMIT DMSKD_CHUNK_LIMIT
#else
#define DEFAULT_CHUNK_LIMIT DMSKD_MAX_CHUNK_BYTES
#endif

#ifndef DMSKD_MAX_SAMPLE_FLOATS
#define DMSKD_MAX_SAMPLE_FLOATS (1u << 22) /* 16 MiB of local features */
#endif
#ifndef DMSKD_MAX_SAMPLES
#define DMSKD_MAX_SAMPLES (1u << 18)
#endif

static const char USAGE[] =
    "usage: dmskd-firmware --device ID --data FILE --fleet-key PEM [--fleet NAME] [--broker HOST:PORT]\n"
    "                      [--outbox DIR] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]\n"
    "                      [--username NAME --password-file FILE]\n"
    "                      [--resend-interval SECONDS] [--chunk-limit BYTES] [--log-level LEVEL]\n"
    "\n"
    "One DMSKD device (firmware build) until the round schedule ends; the protocol of `python -m edge run`.\n"
    "  --device ID           this device's id, as in the fleet's plans (required)\n"
    "  --fleet NAME          fleet name: the topic prefix dmskd/<fleet>/ (default: demo)\n"
    "  --data FILE           local samples (export.firmware_samples.write_samples of the device's .npz) (required)\n"
    "  --broker HOST:PORT    MQTT broker, host:port or mqtt://host:port (default: 127.0.0.1:1883)\n"
    "  --outbox DIR          on-disk outbox; this device's records go to DIR/<device>/ (default: outbox)\n"
    "  --fleet-key PEM       the fleet's public signing key (fleet-signing.pub): the device acts only on what it\n"
    "                        signed (required)\n"
    "  --tls-ca PEM          TLS to the broker: the CA that signed its certificate (python -m cloud provision)\n"
    "  --tls-cert PEM, --tls-key PEM  mutual TLS: this device's certificate and key (DIR/devices/<device>/)\n"
    "  --username NAME, --password-file FILE  broker login (python -m cloud provision --password-auth)\n"
    "  --resend-interval S   silence after which an unacknowledged update is resent, doubling (default: 10)\n"
    "  --chunk-limit BYTES   the largest MQTT message published, 512..DMSKD_MAX_CHUNK_BYTES of this build\n"
    "                        (default: the exported configuration's chunk limit, else DMSKD_MAX_CHUNK_BYTES)\n"
    "  --log-level LEVEL     DEBUG, INFO, WARNING or ERROR (default: INFO)\n";

static volatile sig_atomic_t stop_requested = 0;
static float sample_x[DMSKD_MAX_SAMPLE_FLOATS];
static int32_t sample_labels[DMSKD_MAX_SAMPLES];
static dmskd_port port;

static void on_signal(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static int usage_error(const char *message, const char *value) {
    fprintf(stderr, "error: %s%s; see `dmskd-firmware --help`\n", message, value ? value : "");
    return 2;
}

static int failure(const char *message) {
    fprintf(stderr, "error: %s\n", message);
    return 1;
}

static bool name_ok(const char *text) {
    size_t n = strlen(text);
    if (n == 0 || n > 48 || text[0] == '-' || text[0] == '_' || text[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

/* host:port or mqtt://host:port into host[cap] and *port_out. */
static bool parse_broker(const char *text, char *host, size_t cap, uint16_t *port_out) {
    if (strncmp(text, "mqtt://", 7) == 0) text += 7;
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || (size_t)(colon - text) >= cap) return false;
    char *end = NULL;
    long value = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || value < 1 || value > 65535) return false;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    *port_out = (uint16_t)value;
    return true;
}

static bool read_text(const char *path, char *out, size_t cap, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return false;
    *len = fread(out, 1, cap - 1, file);
    fclose(file);
    out[*len] = '\0';
    return true;
}

int main(int argc, char **argv) {
    const char *device = NULL, *fleet = "demo", *data = NULL, *broker = "127.0.0.1:1883", *outbox = "outbox";
    const char *fleet_key = NULL, *username = NULL, *password_file = NULL;
    const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL;
    double resend_s = 10.0;
    long chunk_limit = DEFAULT_CHUNK_LIMIT;
    dmskd_log_level level = DMSKD_LOG_INFO;
    static const struct option options[] = {
        {"device", required_argument, 0, 'd'},   {"fleet", required_argument, 0, 'f'},
        {"data", required_argument, 0, 'x'},     {"broker", required_argument, 0, 'b'},
        {"outbox", required_argument, 0, 'o'},   {"fleet-key", required_argument, 0, 'k'},
        {"username", required_argument, 0, 'u'}, {"password-file", required_argument, 0, 'p'},
        {"resend-interval", required_argument, 0, 'r'}, {"chunk-limit", required_argument, 0, 'c'},
        {"log-level", required_argument, 0, 'l'}, {"tls-ca", required_argument, 0, 'A'},
        {"tls-cert", required_argument, 0, 'C'}, {"tls-key", required_argument, 0, 'K'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'd': device = optarg; break;
        case 'f': fleet = optarg; break;
        case 'x': data = optarg; break;
        case 'b': broker = optarg; break;
        case 'o': outbox = optarg; break;
        case 'k': fleet_key = optarg; break;
        case 'u': username = optarg; break;
        case 'p': password_file = optarg; break;
        case 'A': tls_ca = optarg; break;
        case 'C': tls_cert = optarg; break;
        case 'K': tls_key = optarg; break;
        case 'r':
            resend_s = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(resend_s > 0 && resend_s < 86400))
                return usage_error("--resend-interval must be a number of seconds in (0, 86400), got ", optarg);
            break;
        case 'c':
            chunk_limit = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || chunk_limit < 512 || chunk_limit > DMSKD_MAX_CHUNK_BYTES) {
                fprintf(stderr, "error: --chunk-limit must be an integer in 512..%d (this build's "
                        "DMSKD_MAX_CHUNK_BYTES), got %s; see `dmskd-firmware --help`\n", DMSKD_MAX_CHUNK_BYTES, optarg);
                return 2;
            }
            break;
        case 'l':
            if (strcmp(optarg, "DEBUG") == 0) level = DMSKD_LOG_DEBUG;
            else if (strcmp(optarg, "INFO") == 0) level = DMSKD_LOG_INFO;
            else if (strcmp(optarg, "WARNING") == 0) level = DMSKD_LOG_WARNING;
            else if (strcmp(optarg, "ERROR") == 0) level = DMSKD_LOG_ERROR;
            else return usage_error("--log-level must be DEBUG, INFO, WARNING or ERROR, got ", optarg);
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default:
            return usage_error("unknown flag or missing value: ", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument ", argv[optind]);
    if (device == NULL) return usage_error("--device is required", NULL);
    if (data == NULL) return usage_error("--data is required", NULL);
    if (fleet_key == NULL) return usage_error("--fleet-key is required", NULL);
    if (!name_ok(device)) return usage_error("--device must be 1..48 letters, digits, '-', '_' or '.', got ", device);
    if (!name_ok(fleet)) return usage_error("--fleet must be 1..48 letters, digits, '-', '_' or '.', got ", fleet);
    if ((username == NULL) != (password_file == NULL))
        return usage_error("a broker login needs both --username and --password-file", NULL);
    if ((tls_cert == NULL) != (tls_key == NULL))
        return usage_error("a client certificate needs its key: pass --tls-cert and --tls-key together", NULL);
    if (tls_cert != NULL && tls_ca == NULL)
        return usage_error("--tls-cert needs --tls-ca (the CA that signed the broker's certificate)", NULL);
    char host[256];
    uint16_t broker_port = 0;
    if (!parse_broker(broker, host, sizeof host, &broker_port))
        return usage_error("--broker must be host:port or mqtt://host:port with a port in 1..65535, got ", broker);

    char message[1400];
    char pem[4096];
    size_t pem_len = 0;
    if (!read_text(fleet_key, pem, sizeof pem, &pem_len)) {
        snprintf(message, sizeof message, "fleet public key %s not found; `python -m cloud provision` or "
                 "`python -m simulator prepare` writes one (fleet-signing.pub)", fleet_key);
        return failure(message);
    }
    dmskd_device_config config = {.device_id = device, .fleet = fleet,
                                  .resend_interval_ms = (uint32_t)(resend_s * 1000.0),
                                  .chunk_limit = (size_t)chunk_limit};
    dmskd_error err;
    if (dmskd_public_key_from_pem(pem, pem_len, config.fleet_key, &err) != DMSKD_OK) {
        snprintf(message, sizeof message, "fleet public key %s: %s; pass the fleet-signing.pub that `python -m cloud "
                 "provision` or `python -m simulator prepare` wrote", fleet_key, err.message);
        return failure(message);
    }
    static char password[512];
    if (password_file != NULL) {
        size_t n = 0;
        if (!read_text(password_file, password, sizeof password, &n)) {
            snprintf(message, sizeof message, "--password-file %s not found; `python -m cloud provision "
                     "--password-auth` writes DIR/devices/<device>/password", password_file);
            return failure(message);
        }
        password[strcspn(password, "\r\n")] = '\0';
    }
    const char *const tls_files[][2] = {{"--tls-ca", tls_ca}, {"--tls-cert", tls_cert}, {"--tls-key", tls_key}};
    for (size_t i = 0; i < 3; i++) {
        FILE *probe = tls_files[i][1] == NULL ? NULL : fopen(tls_files[i][1], "rb");
        if (tls_files[i][1] != NULL && probe == NULL) {
            snprintf(message, sizeof message, "%s %s not found; `python -m cloud provision --fleet FILE --out DIR` "
                     "writes DIR/devices/<device>/{ca.crt,client.crt,client.key}", tls_files[i][0], tls_files[i][1]);
            return failure(message);
        }
        if (probe != NULL) fclose(probe);
    }
    dmskd_samples samples;
    if (!dmskd_load_samples(data, sample_x, DMSKD_MAX_SAMPLE_FLOATS, sample_labels, DMSKD_MAX_SAMPLES, &samples,
                            message, sizeof message))
        return failure(message);
    config.x = samples.x;
    config.labels = samples.labels;
    config.n = samples.n;
    config.dim = samples.dim;
    if (!dmskd_trainer_init(message, sizeof message)) return failure(message);

    char state_dir[DMSKD_HOST_MAX_PATH];
    if (mkdir(outbox, 0700) != 0 && errno != EEXIST) {
        snprintf(message, sizeof message, "cannot create --outbox %s: %s; pass a writable directory", outbox,
                 strerror(errno));
        return failure(message);
    }
    if ((size_t)snprintf(state_dir, sizeof state_dir, "%s/%s", outbox, device) >= sizeof state_dir - 64)
        return usage_error("--outbox path too long: ", outbox);
    if (dmskd_host_port_init(&port, state_dir, level) != DMSKD_PORT_OK) return 1;

    char client_id[128];
    snprintf(client_id, sizeof client_id, "%s-%s", fleet, device);
    dmskd_mqtt_config mqtt = {host, broker_port, client_id, username, password_file ? password : NULL,
                              NULL, NULL, 0, 30, tls_ca, tls_cert, tls_key}; /* the loop sets the Last Will */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int rc = dmskd_device_run(&port, &mqtt, &config, &stop_requested);
    if (rc != 0) fprintf(stderr, "error: the device run failed; see the log above for the cause and its fix\n");
    return rc;
}
