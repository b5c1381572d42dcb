/* The port interface: everything the device loop needs from a board or an OS, and nothing more.
 *
 * A port supplies MQTT 3.1.1 at QoS 1 (connect, subscribe, publish, poll), a persistent store of named
 * records (the outbox), entropy, a monotonic clock and a log. The device loop (firmware_stubs/device/)
 * calls only these functions; the host port (port/host/, paho.mqtt.c, files, getrandom) lets the firmware
 * join a real federation in tests, the MCU skeleton (port/freertos/, coreMQTT) shows where a board's HAL
 * goes. Messages are delivered from dmskd_mqtt_poll on the caller's thread, so the device loop is
 * single-threaded, as on a microcontroller. Every function returns DMSKD_PORT_OK (0) or a negative
 * dmskd_port_status; none allocates memory the caller must free.
 */
#ifndef DMSKD_PORT_H
#define DMSKD_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DMSKD_PORT_OK = 0,
    DMSKD_PORT_ERR_CONNECT = -1,   /* the broker did not answer, or refused the client */
    DMSKD_PORT_ERR_MQTT = -2,      /* a subscribe/publish the client library refused */
    DMSKD_PORT_ERR_NOT_FOUND = -3, /* no stored record of that name */
    DMSKD_PORT_ERR_TOO_LARGE = -4, /* a record or message larger than the caller's buffer */
    DMSKD_PORT_ERR_IO = -5,        /* storage or entropy failed */
    DMSKD_PORT_ERR_ARGUMENT = -6   /* a name, topic or size the port cannot take */
} dmskd_port_status;

typedef enum { DMSKD_LOG_DEBUG = 0, DMSKD_LOG_INFO = 1, DMSKD_LOG_WARNING = 2, DMSKD_LOG_ERROR = 3 } dmskd_log_level;

/* A message (one chunk: the MQTT payload) arrived on `topic`; payload is valid only during the call. */
typedef void (*dmskd_message_fn)(void *ctx, const char *topic, const uint8_t *payload, size_t len);
/* The session is (re)connected and every subscription is in place again; reconnected is false the first time. */
typedef void (*dmskd_connected_fn)(void *ctx, bool reconnected);

/* How to reach the broker and who this client is; the strings must outlive the session. */
typedef struct {
    const char *host;
    uint16_t port;
    const char *client_id;
    const char *username;      /* NULL: no login */
    const char *password;      /* NULL: no login */
    const char *will_topic;       /* retained Last Will (status/<device>/0), NULL: none */
    const uint8_t *will_payload;  /* its bytes (the device loop frames "offline" as a one-chunk message) */
    size_t will_len;
    uint32_t keepalive_s;
    const char *tls_ca;           /* TLS: the CA that signed the broker's certificate (host: a PEM path); NULL: TCP */
    const char *tls_cert;         /* mutual TLS: this device's certificate and key, NULL: none */
    const char *tls_key;
} dmskd_mqtt_config;

/* One port instance: opaque, defined by each port (host: paho client, storage directory, log file). */
typedef struct dmskd_port dmskd_port;

/* Connect (clean session, MQTT 3.1.1) and remember the callbacks; ERR_CONNECT names the cause in the log. */
int dmskd_mqtt_connect(dmskd_port *port, const dmskd_mqtt_config *config, dmskd_message_fn on_message,
                       dmskd_connected_fn on_connected, void *ctx);
/* Subscribe to a topic filter at QoS 1; the port re-subscribes after every reconnect. Subscribing again to a
 * held filter asks the broker again (it re-delivers the retained messages: a resync after silence). */
int dmskd_mqtt_subscribe(dmskd_port *port, const char *topic_filter);
/* Drop a subscription made with dmskd_mqtt_subscribe. */
int dmskd_mqtt_unsubscribe(dmskd_port *port, const char *topic_filter);
/* Publish one MQTT message at QoS 1 (the device chunks before it calls this) and wait for its PUBACK where the
 * port can: the host port holds messages arriving meanwhile for the next polls; the MCU port (one message
 * buffer) stops waiting when one arrives or when called from a handler, and later polls read the PUBACK.
 * Delivery does not rest on it: the outbox resends until the aggregator acknowledges. Messages are never
 * handed to on_message from inside this call. */
int dmskd_mqtt_publish(dmskd_port *port, const char *topic, const uint8_t *payload, size_t len, bool retain);
/* Deliver what arrived within timeout_ms to on_message; reconnect (and call on_connected) if the link dropped. */
int dmskd_mqtt_poll(dmskd_port *port, uint32_t timeout_ms);
/* Disconnect cleanly (no Last Will). */
void dmskd_mqtt_disconnect(dmskd_port *port);

/* Store `len` bytes as record `name` (letters, digits, '-', '_', '.'), atomically: old or new, never half. */
int dmskd_storage_write(dmskd_port *port, const char *name, const uint8_t *data, size_t len);
/* Read record `name` into buf; *len_out gets its length; ERR_NOT_FOUND if absent, ERR_TOO_LARGE if cap is short. */
int dmskd_storage_read(dmskd_port *port, const char *name, uint8_t *buf, size_t cap, size_t *len_out);
/* Remove record `name`; removing an absent record is OK. */
int dmskd_storage_erase(dmskd_port *port, const char *name);

/* Fill buf with len bytes from a cryptographically secure source (DP noise, rounding, message ids). */
int dmskd_port_entropy(dmskd_port *port, uint8_t *buf, size_t len);
/* Milliseconds from a monotonic clock (not wall time). */
uint64_t dmskd_port_clock_ms(dmskd_port *port);
/* One log line at `level` (printf format); the host port writes "<level> <text>" to stderr. */
void dmskd_port_log(dmskd_port *port, dmskd_log_level level, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif /* DMSKD_PORT_H */
