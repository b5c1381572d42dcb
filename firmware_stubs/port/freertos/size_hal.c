/* Size-only board HAL: links the whole Cortex-M4F image for the size report only; NOT a board.
 *
 * Every board_hal.h call has a minimal body that touches its arguments, so the linker keeps all of the
 * firmware that calls it (port_freertos.c, coreMQTT, the device loop) and arm-none-eabi-size measures a
 * complete image. Nothing here talks to hardware: the network never connects, flash records are absent,
 * the "TRNG" fails (so a device on this HAL refuses to make noise) and log lines go nowhere but a byte
 * counter. A real board replaces this file (README.md beside it). */
#include <string.h>

#include "board_hal.h"

struct NetworkContext {
    int link; /* the board's socket or TLS session; here a flag */
};

static NetworkContext_t size_network;
static volatile size_t logged_bytes; /* what a UART would have sent: keeps the log path in the image */

NetworkContext_t *board_net_context(void) { return &size_network; }

int board_net_connect(NetworkContext_t *network, const char *host, uint16_t port) {
    network->link = (host != NULL && port != 0) ? -1 : -1; /* no network on the size image */
    return -1;
}

int32_t board_net_send(NetworkContext_t *network, const void *buffer, size_t len) {
    return (network->link > 0 && buffer != NULL) ? (int32_t)len : -1;
}

int32_t board_net_recv(NetworkContext_t *network, void *buffer, size_t len) {
    if (network->link <= 0 || buffer == NULL) return -1;
    memset(buffer, 0, len);
    return 0;
}

void board_net_disconnect(NetworkContext_t *network) { network->link = 0; }

int board_flash_slot(const char *name) { return name != NULL && strcmp(name, "outbox") == 0 ? 0 : 1; }

int board_flash_write_record(int slot, const uint8_t *data, size_t len) {
    return (slot >= 0 && data != NULL && len > 0) ? -1 : -1; /* no flash driver on the size image */
}

int32_t board_flash_read_record(int slot, uint8_t *buf, size_t cap) {
    (void)slot;
    (void)buf;
    (void)cap;
    return -1; /* empty */
}

int board_flash_erase_record(int slot) { return slot >= 0 ? 0 : -1; }

int board_trng_fill(uint8_t *buf, size_t len) {
    memset(buf, 0, len);
    return -1; /* no TRNG: the device loop refuses to draw noise from it */
}

void board_log_write(const char *line) { logged_bytes += strlen(line); }
