/* The host port: MQTT through paho.mqtt.c's synchronous client (messages received on the caller's thread),
 * records as files written atomically (temp file, fsync, rename), entropy from getrandom, CLOCK_MONOTONIC. */
#include "host_port.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECONNECT_PAUSE_MS 1000
#define PUBACK_TIMEOUT_MS 30000

static const char *const LEVEL_NAMES[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void dmskd_port_log(dmskd_port *port, dmskd_log_level level, const char *format, ...) {
    if (port != NULL && level < port->log_level) return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char text[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    fprintf(stderr, "%lld.%03ld dmskd.firmware %s %s\n", (long long)now.tv_sec, now.tv_nsec / 1000000L,
            LEVEL_NAMES[level], text);
    fflush(stderr);
}

uint64_t dmskd_port_clock_ms(dmskd_port *port) {
    (void)port;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

int dmskd_port_entropy(dmskd_port *port, uint8_t *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t got = getrandom(buf + done, len - done, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            dmskd_port_log(port, DMSKD_LOG_ERROR, "getrandom failed: %s; the OS entropy source is unavailable",
                      strerror(errno));
            return DMSKD_PORT_ERR_IO;
        }
        done += (size_t)got;
    }
    return DMSKD_PORT_OK;
}

int dmskd_host_port_init(dmskd_port *port, const char *storage_dir, dmskd_log_level log_level) {
    memset(port, 0, sizeof *port);
    port->log_level = log_level;
    if (strlen(storage_dir) + 1 > sizeof port->storage_dir - 64) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "state directory path too long (%zu bytes); pass a shorter --state-dir",
                  strlen(storage_dir));
        return DMSKD_PORT_ERR_ARGUMENT;
    }
    snprintf(port->storage_dir, sizeof port->storage_dir, "%s", storage_dir);
    if (mkdir(storage_dir, 0700) != 0 && errno != EEXIST) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot create state directory %s: %s; pass a writable --state-dir",
                  storage_dir, strerror(errno));
        return DMSKD_PORT_ERR_IO;
    }
    struct stat info;
    if (stat(storage_dir, &info) != 0 || !S_ISDIR(info.st_mode)) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "--state-dir %s is not a directory; pass a directory", storage_dir);
        return DMSKD_PORT_ERR_IO;
    }
    return DMSKD_PORT_OK;
}

/* --- storage: one file per record --- */

static bool record_name_ok(const char *name) {
    if (name[0] == '\0' || name[0] == '.' || strlen(name) > 63) return false;
    for (const char *c = name; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                  *c == '_' || *c == '.';
        if (!ok) return false;
    }
    return true;
}

static int record_path(dmskd_port *port, const char *name, const char *suffix, char *out, size_t cap) {
    if (!record_name_ok(name)) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "record name %.80s is not letters, digits, '-', '_', '.'", name);
        return DMSKD_PORT_ERR_ARGUMENT;
    }
    snprintf(out, cap, "%s/%s%s", port->storage_dir, name, suffix);
    return DMSKD_PORT_OK;
}

int dmskd_storage_write(dmskd_port *port, const char *name, const uint8_t *data, size_t len) {
    char path[DMSKD_HOST_MAX_PATH + 80], temp[DMSKD_HOST_MAX_PATH + 80];
    if (record_path(port, name, "", path, sizeof path) != 0) return DMSKD_PORT_ERR_ARGUMENT;
    record_path(port, name, ".tmp", temp, sizeof temp);
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot write %s: %s; check --state-dir", temp, strerror(errno));
        return DMSKD_PORT_ERR_IO;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t wrote = write(fd, data + done, len - done);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) {
            dmskd_port_log(port, DMSKD_LOG_ERROR, "writing %s failed: %s", temp, strerror(errno));
            close(fd);
            unlink(temp);
            return DMSKD_PORT_ERR_IO;
        }
        done += (size_t)wrote;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(temp, path) != 0) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "storing %s failed: %s", path, strerror(errno));
        unlink(temp);
        return DMSKD_PORT_ERR_IO;
    }
    return DMSKD_PORT_OK;
}

int dmskd_storage_read(dmskd_port *port, const char *name, uint8_t *buf, size_t cap, size_t *len_out) {
    char path[DMSKD_HOST_MAX_PATH + 80];
    if (record_path(port, name, "", path, sizeof path) != 0) return DMSKD_PORT_ERR_ARGUMENT;
    FILE *file = fopen(path, "rb");
    if (file == NULL) return errno == ENOENT ? DMSKD_PORT_ERR_NOT_FOUND : DMSKD_PORT_ERR_IO;
    struct stat info;
    if (fstat(fileno(file), &info) != 0) {
        fclose(file);
        return DMSKD_PORT_ERR_IO;
    }
    if ((size_t)info.st_size > cap) {
        fclose(file);
        dmskd_port_log(port, DMSKD_LOG_ERROR, "record %s holds %lld bytes, more than the %zu-byte buffer", path,
                  (long long)info.st_size, cap);
        return DMSKD_PORT_ERR_TOO_LARGE;
    }
    size_t got = fread(buf, 1, (size_t)info.st_size, file);
    fclose(file);
    if (got != (size_t)info.st_size) return DMSKD_PORT_ERR_IO;
    *len_out = got;
    return DMSKD_PORT_OK;
}

int dmskd_storage_erase(dmskd_port *port, const char *name) {
    char path[DMSKD_HOST_MAX_PATH + 80];
    if (record_path(port, name, "", path, sizeof path) != 0) return DMSKD_PORT_ERR_ARGUMENT;
    if (unlink(path) != 0 && errno != ENOENT) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot erase %s: %s", path, strerror(errno));
        return DMSKD_PORT_ERR_IO;
    }
    return DMSKD_PORT_OK;
}

/* --- MQTT over paho.mqtt.c (synchronous: no callbacks, MQTTClient_receive on the caller's thread) --- */

static int open_session(dmskd_port *port) {
    const dmskd_mqtt_config *c = &port->config;
    MQTTClient_connectOptions options = MQTTClient_connectOptions_initializer;
    MQTTClient_willOptions will = MQTTClient_willOptions_initializer;
    options.keepAliveInterval = (int)(c->keepalive_s ? c->keepalive_s : 30);
    options.cleansession = 1;
    options.MQTTVersion = MQTTVERSION_3_1_1;
    options.connectTimeout = 10;
    options.username = c->username;
    options.password = c->password;
    if (c->will_topic != NULL) {
        will.topicName = c->will_topic;
        will.message = NULL; /* binary: payload.data / payload.len (willOptions struct_version 1) */
        will.payload.data = c->will_payload;
        will.payload.len = (int)c->will_len;
        will.retained = 1;
        will.qos = 1;
        options.will = &will;
    }
    MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
    if (c->tls_ca != NULL) {
        ssl.trustStore = c->tls_ca;
        ssl.keyStore = c->tls_cert;
        ssl.privateKey = c->tls_key;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1; /* the broker's certificate must name the host dialled */
        options.ssl = &ssl;
    }
    int rc = MQTTClient_connect(port->client, &options);
    if (rc != MQTTCLIENT_SUCCESS) {
        const char *hint = rc == 4 || rc == 5
                               ? "the broker refused the login: check --username and --password-file "
                                 "(python -m cloud provision --password-auth writes them)"
                           : c->tls_ca != NULL
                               ? "is the broker running at --broker, does --tls-ca hold the CA that signed its "
                                 "certificate, and were --tls-cert/--tls-key issued by the fleet CA it trusts "
                                 "(python -m cloud provision)?"
                               : "is the broker running at --broker, and is the address right? A provisioned "
                                 "broker needs --tls-ca (and --tls-cert, --tls-key)";
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot connect %s to %s:%u (paho code %d: %s); %s", c->client_id, c->host,
                  (unsigned)c->port, rc, MQTTClient_strerror(rc), hint);
        return DMSKD_PORT_ERR_CONNECT;
    }
    for (int i = 0; i < port->filter_count; i++) {
        rc = MQTTClient_subscribe(port->client, port->filters[i], 1);
        if (rc != MQTTCLIENT_SUCCESS) {
            dmskd_port_log(port, DMSKD_LOG_ERROR, "re-subscribing to %s failed (paho code %d)", port->filters[i], rc);
            return DMSKD_PORT_ERR_MQTT;
        }
    }
    bool reconnected = port->ever_connected;
    port->ever_connected = true;
    if (port->on_connected != NULL) port->on_connected(port->ctx, reconnected);
    return DMSKD_PORT_OK;
}

int dmskd_mqtt_connect(dmskd_port *port, const dmskd_mqtt_config *config, dmskd_message_fn on_message,
                       dmskd_connected_fn on_connected, void *ctx) {
    port->config = *config;
    port->on_message = on_message;
    port->on_connected = on_connected;
    port->ctx = ctx;
    char uri[DMSKD_HOST_MAX_FILTER + 16];
    snprintf(uri, sizeof uri, "%s://%s:%u", config->tls_ca != NULL ? "ssl" : "tcp", config->host,
             (unsigned)config->port);
    if (!port->client_created) {
        int rc = MQTTClient_create(&port->client, uri, config->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
        if (rc != MQTTCLIENT_SUCCESS) {
            dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot create an MQTT client for %s (paho code %d); check --broker", uri,
                      rc);
            return DMSKD_PORT_ERR_ARGUMENT;
        }
        port->client_created = true;
    }
    return open_session(port);
}

int dmskd_mqtt_subscribe(dmskd_port *port, const char *topic_filter) {
    bool held = false;
    for (int i = 0; i < port->filter_count; i++) held = held || strcmp(port->filters[i], topic_filter) == 0;
    if (!held && (port->filter_count >= DMSKD_HOST_MAX_SUBSCRIPTIONS || strlen(topic_filter) >= DMSKD_HOST_MAX_FILTER)) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot hold subscription %.120s: at most %d filters of %d bytes",
                  topic_filter, DMSKD_HOST_MAX_SUBSCRIPTIONS, DMSKD_HOST_MAX_FILTER - 1);
        return DMSKD_PORT_ERR_ARGUMENT;
    }
    if (!held) snprintf(port->filters[port->filter_count++], DMSKD_HOST_MAX_FILTER, "%s", topic_filter);
    if (!port->client_created || !MQTTClient_isConnected(port->client)) return DMSKD_PORT_OK; /* on connect */
    int rc = MQTTClient_subscribe(port->client, topic_filter, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "subscribing to %s failed (paho code %d)", topic_filter, rc);
        return DMSKD_PORT_ERR_MQTT;
    }
    return DMSKD_PORT_OK;
}

int dmskd_mqtt_unsubscribe(dmskd_port *port, const char *topic_filter) {
    for (int i = 0; i < port->filter_count; i++) {
        if (strcmp(port->filters[i], topic_filter) != 0) continue;
        memmove(port->filters[i], port->filters[i + 1], (size_t)(port->filter_count - i - 1) * DMSKD_HOST_MAX_FILTER);
        port->filter_count--;
        if (port->client_created && MQTTClient_isConnected(port->client)) {
            return MQTTClient_unsubscribe(port->client, topic_filter) == MQTTCLIENT_SUCCESS ? DMSKD_PORT_OK
                                                                                         : DMSKD_PORT_ERR_MQTT;
        }
        return DMSKD_PORT_OK;
    }
    return DMSKD_PORT_OK;
}

static bool delivered(MQTTClient client, MQTTClient_deliveryToken token) {
    MQTTClient_deliveryToken *pending = NULL;
    if (MQTTClient_getPendingDeliveryTokens(client, &pending) != MQTTCLIENT_SUCCESS) return false;
    bool found = false;
    for (int i = 0; pending != NULL && pending[i] != -1; i++) found = found || pending[i] == token;
    MQTTClient_free(pending);
    return !found;
}

/* The PUBACK of token, read a few milliseconds at a time (paho's waitForCompletion sleeps 100 ms per step):
 * paho's receive reads it, and a message it hands over meanwhile is held for the next polls, in order. */
static int wait_for_puback(dmskd_port *port, MQTTClient_deliveryToken token) {
    uint64_t deadline = dmskd_port_clock_ms(port) + PUBACK_TIMEOUT_MS;
    while (!delivered(port->client, token)) {
        uint64_t now = dmskd_port_clock_ms(port);
        if (now >= deadline || !MQTTClient_isConnected(port->client)) return MQTTCLIENT_FAILURE;
        if (port->held_count == DMSKD_HOST_HELD_MESSAGES) { /* paho keeps further messages queued itself */
            return MQTTClient_waitForCompletion(port->client, token, (unsigned long)(deadline - now));
        }
        char *topic = NULL;
        int topic_len = 0;
        MQTTClient_message *message = NULL;
        int rc = MQTTClient_receive(port->client, &topic, &topic_len, &message, 2);
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) continue; /* isConnected decides */
        if (message != NULL) {
            int at = (port->held_first + port->held_count++) % DMSKD_HOST_HELD_MESSAGES;
            port->held[at].topic = topic;
            port->held[at].message = message;
        }
    }
    return MQTTCLIENT_SUCCESS;
}

int dmskd_mqtt_publish(dmskd_port *port, const char *topic, const uint8_t *payload, size_t len, bool retain) {
    if (!port->client_created || !MQTTClient_isConnected(port->client)) return DMSKD_PORT_ERR_CONNECT;
    if (len > 0x7FFFFFFF) return DMSKD_PORT_ERR_TOO_LARGE;
    MQTTClient_deliveryToken token;
    int rc = MQTTClient_publish(port->client, topic, (int)len, (void *)payload, 1, retain ? 1 : 0, &token);
    if (rc == MQTTCLIENT_SUCCESS) rc = wait_for_puback(port, token);
    if (rc != MQTTCLIENT_SUCCESS) {
        dmskd_port_log(port, DMSKD_LOG_WARNING, "publish to %s not acknowledged (paho code %d: %s)", topic, rc,
                  MQTTClient_strerror(rc));
        return DMSKD_PORT_ERR_MQTT;
    }
    return DMSKD_PORT_OK;
}

int dmskd_mqtt_poll(dmskd_port *port, uint32_t timeout_ms) {
    if (!port->client_created) return DMSKD_PORT_ERR_CONNECT;
    if (!MQTTClient_isConnected(port->client)) {
        uint64_t now = dmskd_port_clock_ms(port);
        if (now < port->next_reconnect_ms) {
            usleep(timeout_ms * 1000u);
            return DMSKD_PORT_ERR_CONNECT;
        }
        port->next_reconnect_ms = now + RECONNECT_PAUSE_MS;
        dmskd_port_log(port, DMSKD_LOG_WARNING, "connection to %s:%u lost; reconnecting", port->config.host,
                  (unsigned)port->config.port);
        if (open_session(port) != DMSKD_PORT_OK) return DMSKD_PORT_ERR_CONNECT;
    }
    char *topic = NULL;
    int topic_len = 0;
    MQTTClient_message *message = NULL;
    if (port->held_count > 0) { /* received while a publish waited: before anything newer */
        topic = port->held[port->held_first].topic;
        message = port->held[port->held_first].message;
        port->held_first = (port->held_first + 1) % DMSKD_HOST_HELD_MESSAGES;
        port->held_count--;
    } else {
        int rc = MQTTClient_receive(port->client, &topic, &topic_len, &message, (unsigned long)timeout_ms);
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            return MQTTClient_isConnected(port->client) ? DMSKD_PORT_OK : DMSKD_PORT_ERR_CONNECT;
        }
        if (message == NULL) return DMSKD_PORT_OK; /* nothing within timeout_ms */
    }
    if (port->on_message != NULL) {
        port->on_message(port->ctx, topic, (const uint8_t *)message->payload, (size_t)message->payloadlen);
    }
    MQTTClient_freeMessage(&message);
    MQTTClient_free(topic);
    return DMSKD_PORT_OK;
}

void dmskd_mqtt_disconnect(dmskd_port *port) {
    for (; port->held_count > 0; port->held_count--) {
        MQTTClient_freeMessage(&port->held[port->held_first].message);
        MQTTClient_free(port->held[port->held_first].topic);
        port->held_first = (port->held_first + 1) % DMSKD_HOST_HELD_MESSAGES;
    }
    if (!port->client_created) return;
    if (MQTTClient_isConnected(port->client)) MQTTClient_disconnect(port->client, 2000);
    MQTTClient_destroy(&port->client);
    port->client_created = false;
}
