/* MCU port skeleton: port.h on FreeRTOS + coreMQTT, with every board-specific call marked "HAL:".
 *
 * Not built by default (FreeRTOS, coreMQTT and a board's HAL are not in this repository; see README.md
 * beside this file for how a board project compiles it). What a board supplies, all in board_hal.h:
 *   - a TCP (or TLS: mbedTLS / the modem's stack) socket as coreMQTT's TransportInterface_t (board_net_*),
 *   - a flash region of a few KiB per record for the outbox (board_flash_*: erase, program, read),
 *   - its TRNG (board_trng_fill), and a UART or RTT for the log (board_log_write).
 * Everything else is here: the device loop calls only port.h, exactly as on the host. The device loop
 * runs in one FreeRTOS task; coreMQTT is not thread-safe and needs no lock when only that task calls it.
 *
 * Memory: the network buffer must hold the largest incoming MQTT packet, i.e. the fleet's chunk limit
 * (chunk header included) plus the topic: set the aggregator's chunk limit to what the meter can hold
 * (e.g. 4096 bytes) rather than AWS IoT Core's 128 KiB. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "FreeRTOS.h"
#include "task.h"

#include "core_mqtt.h"
#include "core_mqtt_state.h"

#include "board_hal.h" /* HAL: the board's network, flash, TRNG and log */
#include "dmskd/port.h"

#ifndef DMSKD_MAX_CHUNK_BYTES
#define DMSKD_MAX_CHUNK_BYTES 4096 /* the fleet's chunk limit (DMSKD_DEVICE_LIMITS: the device loop's too) */
#endif
#ifndef DMSKD_MCU_NETWORK_BUFFER
#define DMSKD_MCU_NETWORK_BUFFER (DMSKD_MAX_CHUNK_BYTES + 256) /* a chunk + topic and MQTT header */
#endif
#define MAX_FILTERS 8
#define MAX_FILTER_BYTES 128
#define OUTGOING_QOS1 8 /* publishes from a handler do not wait for their PUBACK: room for a few */
#define PUBACK_TIMEOUT_MS 10000u

struct dmskd_port {
    MQTTContext_t mqtt;
    NetworkContext_t *network;          /* HAL: the board's socket/TLS context */
    TransportInterface_t transport;
    uint8_t buffer[DMSKD_MCU_NETWORK_BUFFER];
    MQTTPubAckInfo_t outgoing[OUTGOING_QOS1];
    MQTTPubAckInfo_t incoming[OUTGOING_QOS1];
    dmskd_mqtt_config config;
    dmskd_message_fn on_message;
    dmskd_connected_fn on_connected;
    void *ctx;
    char filters[MAX_FILTERS][MAX_FILTER_BYTES];
    int filter_count;
    uint16_t awaited_puback;            /* the packet id dmskd_mqtt_publish waits for, 0 if none */
    bool ever_connected;
    /* The message coreMQTT handed over, delivered by dmskd_mqtt_poll once MQTT_ProcessLoop has returned:
     * the device loop never runs (and never publishes) inside coreMQTT's callback. ProcessLoop reads one
     * packet per call and a message is delivered before the next call, so one is enough. */
    bool held;
    bool delivering; /* the device handles held_payload: a publish then must not run ProcessLoop */
    size_t held_len;
    char held_topic[MAX_FILTER_BYTES + 32];
    uint8_t held_payload[DMSKD_MAX_CHUNK_BYTES];
};

/* The one port of this device, statically allocated (the device task passes it to dmskd_device_run). */
dmskd_port *dmskd_freertos_port(void) {
    static dmskd_port port;
    return &port;
}

static uint32_t now_ms(void) { return (uint32_t)(xTaskGetTickCount() * portTICK_PERIOD_MS); }

/* coreMQTT hands every incoming packet here, from MQTT_ProcessLoop on the device task. */
static void on_event(MQTTContext_t *mqtt, MQTTPacketInfo_t *packet, MQTTDeserializedInfo_t *info) {
    dmskd_port *port = (dmskd_port *)((uint8_t *)mqtt - offsetof(dmskd_port, mqtt));
    if ((packet->type & 0xF0u) == MQTT_PACKET_TYPE_PUBLISH) {
        const MQTTPublishInfo_t *p = info->pPublishInfo;
        if (p->topicNameLength >= sizeof port->held_topic) return; /* longer than any DMSKD topic */
        if (port->held || p->payloadLength > sizeof port->held_payload) {
            dmskd_port_log(port, DMSKD_LOG_WARNING, "dropped a %u-byte message (%s); the device's resync "
                           "recovers it", (unsigned)p->payloadLength, port->held ? "one is held" : "too long");
            return;
        }
        memcpy(port->held_topic, p->pTopicName, p->topicNameLength);
        port->held_topic[p->topicNameLength] = '\0';
        memcpy(port->held_payload, p->pPayload, p->payloadLength);
        port->held_len = p->payloadLength;
        port->held = true;
    } else if (packet->type == MQTT_PACKET_TYPE_PUBACK && info->packetIdentifier == port->awaited_puback) {
        port->awaited_puback = 0;
    }
}

static int open_session(dmskd_port *port) {
    /* HAL: TCP, or TLS when config.tls_ca is set (the board's TLS stack holds the CA and device key) */
    if (board_net_connect(port->network, port->config.host, port->config.port) != 0) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "cannot reach %s:%u", port->config.host, (unsigned)port->config.port);
        return DMSKD_PORT_ERR_CONNECT;
    }
    MQTTConnectInfo_t connect = {0};
    connect.cleanSession = true;
    connect.keepAliveSeconds = (uint16_t)port->config.keepalive_s;
    connect.pClientIdentifier = port->config.client_id;
    connect.clientIdentifierLength = (uint16_t)strlen(port->config.client_id);
    if (port->config.username != NULL) {
        connect.pUserName = port->config.username;
        connect.userNameLength = (uint16_t)strlen(port->config.username);
        connect.pPassword = port->config.password;
        connect.passwordLength = (uint16_t)strlen(port->config.password);
    }
    MQTTPublishInfo_t will = {0};
    will.qos = MQTTQoS1;
    will.retain = true;
    will.pTopicName = port->config.will_topic;
    will.topicNameLength = port->config.will_topic ? (uint16_t)strlen(port->config.will_topic) : 0;
    will.pPayload = port->config.will_payload;
    will.payloadLength = port->config.will_len;
    bool session_present = false;
    if (MQTT_Connect(&port->mqtt, &connect, port->config.will_topic ? &will : NULL, 10000u, &session_present) !=
        MQTTSuccess) {
        dmskd_port_log(port, DMSKD_LOG_ERROR, "the broker refused %s: check the device's credentials",
                       port->config.client_id);
        return DMSKD_PORT_ERR_CONNECT;
    }
    for (int i = 0; i < port->filter_count; i++) {
        MQTTSubscribeInfo_t sub = {MQTTQoS1, port->filters[i], (uint16_t)strlen(port->filters[i])};
        MQTT_Subscribe(&port->mqtt, &sub, 1, MQTT_GetPacketId(&port->mqtt));
    }
    bool reconnected = port->ever_connected;
    port->ever_connected = true;
    port->on_connected(port->ctx, reconnected);
    return DMSKD_PORT_OK;
}

int dmskd_mqtt_connect(dmskd_port *port, const dmskd_mqtt_config *config, dmskd_message_fn on_message,
                       dmskd_connected_fn on_connected, void *ctx) {
    port->config = *config;
    port->on_message = on_message;
    port->on_connected = on_connected;
    port->ctx = ctx;
    port->network = board_net_context();               /* HAL */
    port->transport.pNetworkContext = port->network;
    port->transport.send = board_net_send;             /* HAL: int32_t (*)(NetworkContext_t *, const void *, size_t) */
    port->transport.recv = board_net_recv;             /* HAL: non-blocking or short-timeout receive */
    MQTTFixedBuffer_t buffer = {port->buffer, sizeof port->buffer};
    if (MQTT_Init(&port->mqtt, &port->transport, now_ms, on_event, &buffer) != MQTTSuccess ||
        MQTT_InitStatefulQoS(&port->mqtt, port->outgoing, OUTGOING_QOS1, port->incoming, OUTGOING_QOS1) !=
            MQTTSuccess)
        return DMSKD_PORT_ERR_ARGUMENT;
    return open_session(port);
}

int dmskd_mqtt_subscribe(dmskd_port *port, const char *topic_filter) {
    bool held = false;
    for (int i = 0; i < port->filter_count; i++) held = held || strcmp(port->filters[i], topic_filter) == 0;
    if (!held) {
        if (port->filter_count >= MAX_FILTERS || strlen(topic_filter) >= MAX_FILTER_BYTES)
            return DMSKD_PORT_ERR_ARGUMENT;
        strcpy(port->filters[port->filter_count++], topic_filter);
    }
    if (!port->ever_connected) return DMSKD_PORT_OK; /* subscribed on connect */
    MQTTSubscribeInfo_t sub = {MQTTQoS1, topic_filter, (uint16_t)strlen(topic_filter)};
    return MQTT_Subscribe(&port->mqtt, &sub, 1, MQTT_GetPacketId(&port->mqtt)) == MQTTSuccess ? DMSKD_PORT_OK
                                                                                             : DMSKD_PORT_ERR_MQTT;
}

int dmskd_mqtt_unsubscribe(dmskd_port *port, const char *topic_filter) {
    for (int i = 0; i < port->filter_count; i++) {
        if (strcmp(port->filters[i], topic_filter) != 0) continue;
        memmove(port->filters[i], port->filters[i + 1], (size_t)(port->filter_count - i - 1) * MAX_FILTER_BYTES);
        port->filter_count--;
        MQTTSubscribeInfo_t sub = {MQTTQoS1, topic_filter, (uint16_t)strlen(topic_filter)};
        MQTT_Unsubscribe(&port->mqtt, &sub, 1, MQTT_GetPacketId(&port->mqtt));
    }
    return DMSKD_PORT_OK;
}

int dmskd_mqtt_publish(dmskd_port *port, const char *topic, const uint8_t *payload, size_t len, bool retain) {
    MQTTPublishInfo_t info = {0};
    info.qos = MQTTQoS1;
    info.retain = retain;
    info.pTopicName = topic;
    info.topicNameLength = (uint16_t)strlen(topic);
    info.pPayload = payload;
    info.payloadLength = len;
    uint16_t id = MQTT_GetPacketId(&port->mqtt);
    port->awaited_puback = id;
    if (MQTT_Publish(&port->mqtt, &info, id) != MQTTSuccess) return DMSKD_PORT_ERR_MQTT;
    if (port->delivering) return DMSKD_PORT_OK; /* ProcessLoop would overwrite the message being handled: the
                                                   PUBACK is read by later polls (the outbox resends if lost) */
    uint32_t started = now_ms();
    while (port->awaited_puback == id && now_ms() - started < PUBACK_TIMEOUT_MS) {
        if (MQTT_ProcessLoop(&port->mqtt) != MQTTSuccess) return DMSKD_PORT_ERR_CONNECT;
        if (port->held) return DMSKD_PORT_OK; /* sent; its PUBACK is read by later polls, the message first */
    }
    return port->awaited_puback == 0 ? DMSKD_PORT_OK : DMSKD_PORT_ERR_MQTT;
}

int dmskd_mqtt_poll(dmskd_port *port, uint32_t timeout_ms) {
    uint32_t started = now_ms();
    do {
        if (port->held) { /* outside coreMQTT: the device may publish from its handler */
            port->held = false;
            port->delivering = true;
            port->on_message(port->ctx, port->held_topic, port->held_payload, port->held_len);
            port->delivering = false;
            continue;
        }
        MQTTStatus_t status = MQTT_ProcessLoop(&port->mqtt);
        if (status != MQTTSuccess && status != MQTTNeedMoreBytes) {
            board_net_disconnect(port->network); /* HAL */
            vTaskDelay(pdMS_TO_TICKS(1000));
            return open_session(port) == DMSKD_PORT_OK ? DMSKD_PORT_OK : DMSKD_PORT_ERR_CONNECT;
        }
        if (!port->held) vTaskDelay(pdMS_TO_TICKS(10));
    } while (port->held || now_ms() - started < timeout_ms);
    return DMSKD_PORT_OK;
}

void dmskd_mqtt_disconnect(dmskd_port *port) {
    MQTT_Disconnect(&port->mqtt);
    board_net_disconnect(port->network); /* HAL */
}

/* Records live in flash slots the board reserves (board_flash_slot maps a name to a slot, e.g. "outbox" to
 * the outbox's sectors); a write programs the inactive copy and then flips a header, so a power cut leaves
 * the old record or the new one. */
int dmskd_storage_write(dmskd_port *port, const char *name, const uint8_t *data, size_t len) {
    (void)port;
    return board_flash_write_record(board_flash_slot(name), data, len) == 0 ? DMSKD_PORT_OK : DMSKD_PORT_ERR_IO;
}

int dmskd_storage_read(dmskd_port *port, const char *name, uint8_t *buf, size_t cap, size_t *len_out) {
    (void)port;
    int32_t got = board_flash_read_record(board_flash_slot(name), buf, cap); /* HAL: -1 empty, -2 too large */
    if (got == -1) return DMSKD_PORT_ERR_NOT_FOUND;
    if (got < 0) return DMSKD_PORT_ERR_TOO_LARGE;
    *len_out = (size_t)got;
    return DMSKD_PORT_OK;
}

int dmskd_storage_erase(dmskd_port *port, const char *name) {
    (void)port;
    return board_flash_erase_record(board_flash_slot(name)) == 0 ? DMSKD_PORT_OK : DMSKD_PORT_ERR_IO;
}

int dmskd_port_entropy(dmskd_port *port, uint8_t *buf, size_t len) {
    (void)port;
    return board_trng_fill(buf, len) == 0 ? DMSKD_PORT_OK : DMSKD_PORT_ERR_IO; /* HAL: the TRNG, health-checked */
}

uint64_t dmskd_port_clock_ms(dmskd_port *port) {
    (void)port;
    return (uint64_t)xTaskGetTickCount() * portTICK_PERIOD_MS; /* 32-bit ticks wrap after 49 days at 1 kHz */
}

void dmskd_port_log(dmskd_port *port, dmskd_log_level level, const char *format, ...) {
    (void)port;
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    char line[192];
    int n = snprintf(line, sizeof line, "%s ", names[level]);
    va_list args;
    va_start(args, format);
    vsnprintf(line + n, sizeof line - (size_t)n, format, args);
    va_end(args);
    board_log_write(line); /* HAL: UART, RTT or a log ring in RAM */
}
