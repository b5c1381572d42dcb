/* The device's on-disk outbox: the one update not yet acknowledged, as the port's record "outbox".
 *
 * Record layout: magic "DMSKDOB1" (8 bytes) | round (int64 big-endian) | the update blob as published.
 * One slot is enough: a device trains a round only after the previous one closed, and an update of a
 * closed round is dropped (edge/agent.py does the same). */
#ifndef DMSKD_OUTBOX_H
#define DMSKD_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device_limits.h"
#include "dmskd/port.h"

#define DMSKD_OUTBOX_RECORD "outbox"
#define DMSKD_OUTBOX_HEADER_BYTES 16

typedef struct {
    bool held;
    int64_t round;
    size_t len;                                 /* bytes of blob */
    uint8_t header[DMSKD_OUTBOX_HEADER_BYTES];  /* directly before blob: header and blob are the record */
    uint8_t blob[DMSKD_MAX_MESSAGE_BYTES];
} dmskd_outbox;

/* Load the record left by a previous run; true if it holds an update (a damaged record is logged and erased). */
bool dmskd_outbox_load(dmskd_outbox *outbox, dmskd_port *port);
/* Hold blob[0..len) (already in outbox->blob) as the round's update and write it to storage before it is sent. */
int dmskd_outbox_store(dmskd_outbox *outbox, dmskd_port *port, int64_t round, size_t len);
/* Drop the held update, in memory and in storage. */
void dmskd_outbox_clear(dmskd_outbox *outbox, dmskd_port *port);

#endif
