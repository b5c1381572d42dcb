/* The host port's state (paho.mqtt.c synchronous client, a storage directory, stderr log), so a host main
 * can hold it statically; the device loop sees it only as the opaque dmskd_port of port.h. */
#ifndef DMSKD_HOST_PORT_H
#define DMSKD_HOST_PORT_H

#include "dmskd/port.h"

#include <MQTTClient.h>

#define DMSKD_HOST_MAX_SUBSCRIPTIONS 16
#define DMSKD_HOST_MAX_FILTER 256
#define DMSKD_HOST_MAX_PATH 1024
#define DMSKD_HOST_HELD_MESSAGES 64 /* messages received while a publish waits for its PUBACK */

struct dmskd_port {
    MQTTClient client;
    bool client_created;
    bool ever_connected;
    dmskd_mqtt_config config;
    dmskd_message_fn on_message;
    dmskd_connected_fn on_connected;
    void *ctx;
    char filters[DMSKD_HOST_MAX_SUBSCRIPTIONS][DMSKD_HOST_MAX_FILTER];
    int filter_count;
    uint64_t next_reconnect_ms;
    char storage_dir[DMSKD_HOST_MAX_PATH];
    dmskd_log_level log_level;
    struct {
        char *topic;
        MQTTClient_message *message;
    } held[DMSKD_HOST_HELD_MESSAGES]; /* FIFO: delivered by the next polls, in arrival order */
    int held_first, held_count;
};

/* Prepare a host port whose records live as files in storage_dir (created if missing); logs at >= log_level. */
int dmskd_host_port_init(dmskd_port *port, const char *storage_dir, dmskd_log_level log_level);

#endif /* DMSKD_HOST_PORT_H */
