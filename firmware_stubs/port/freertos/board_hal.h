/* What a board supplies to the FreeRTOS + coreMQTT port (port_freertos.c): its network, flash, TRNG and log.
 * One implementation per board (e.g. board_stm32l4.c over the vendor HAL and the modem's TCP/TLS stack). */
#ifndef DMSKD_BOARD_HAL_H
#define DMSKD_BOARD_HAL_H

#include <stddef.h>
#include <stdint.h>

#include "transport_interface.h" /* coreMQTT: NetworkContext_t is the board's own struct */

/* The board's one network context (socket or TLS session state). */
NetworkContext_t *board_net_context(void);
/* Open TCP (or TLS to the broker, with the fleet CA and the device's certificate) to host:port; 0 on success. */
int board_net_connect(NetworkContext_t *network, const char *host, uint16_t port);
/* coreMQTT transport: send/receive up to len bytes; bytes moved, 0 if none yet, negative on a dead link. */
int32_t board_net_send(NetworkContext_t *network, const void *buffer, size_t len);
int32_t board_net_recv(NetworkContext_t *network, void *buffer, size_t len);
/* Close the link. */
void board_net_disconnect(NetworkContext_t *network);

/* The flash slot reserved for record `name` ("outbox": the size of the largest update plus 16 bytes). */
int board_flash_slot(const char *name);
/* Write a record power-cut safely (program the inactive copy, then flip its header); 0 on success. */
int board_flash_write_record(int slot, const uint8_t *data, size_t len);
/* Read a record into buf[cap]: its length, -1 if the slot is empty, -2 if it does not fit. */
int32_t board_flash_read_record(int slot, uint8_t *buf, size_t cap);
/* Mark a record empty; 0 on success. */
int board_flash_erase_record(int slot);

/* Fill buf from the hardware TRNG (after its health test); 0 on success. */
int board_trng_fill(uint8_t *buf, size_t len);

/* Write one log line (UART, SEGGER RTT, or a RAM ring read over the debugger). */
void board_log_write(const char *line);

/* port_freertos.c's own: the device's one port (static), for the task that calls dmskd_device_run. */
struct dmskd_port;
struct dmskd_port *dmskd_freertos_port(void);

#endif
