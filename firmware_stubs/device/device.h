/* The firmware's device loop: one DMSKD device on the fleet, speaking the protocol of edge/agent.py
 * (firmware_stubs/device/README.md lists the subset) through the port interface, with no heap. */
#ifndef DMSKD_DEVICE_H
#define DMSKD_DEVICE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmskd/port.h"
#include "dmskd/signed.h"

/* What a device is and holds: its identity, the pinned fleet key and its local samples. */
typedef struct {
    const char *device_id;
    const char *fleet;
    uint8_t fleet_key[DMSKD_PUBLIC_KEY_BYTES];
    const float *x;          /* n * dim features */
    const int32_t *labels;   /* n labels (-1 unlabelled), or NULL */
    size_t n, dim;
    uint32_t resend_interval_ms; /* silence after which an unacknowledged update is sent again (doubling) */
    size_t chunk_limit;          /* the largest MQTT message this device publishes, chunk header included */
} dmskd_device_config;

/* Run until the signed final model (return 0), a fatal error (1), or *stop set (0, progress kept on disk). */
int dmskd_device_run(dmskd_port *port, const dmskd_mqtt_config *mqtt, const dmskd_device_config *config,
                     volatile sig_atomic_t *stop);

#endif
