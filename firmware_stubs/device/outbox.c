/* The outbox record: written atomically by the port before an update is published, erased on its fate. */
#include "outbox.h"

#include <stddef.h>
#include <string.h>

_Static_assert(offsetof(dmskd_outbox, blob) == offsetof(dmskd_outbox, header) + DMSKD_OUTBOX_HEADER_BYTES,
               "the outbox record is header and blob back to back");

static const uint8_t MAGIC[8] = {'D', 'M', 'S', 'K', 'D', 'O', 'B', '1'};

bool dmskd_outbox_load(dmskd_outbox *outbox, dmskd_port *port) {
    size_t len = 0;
    outbox->held = false;
    int rc = dmskd_storage_read(port, DMSKD_OUTBOX_RECORD, outbox->header,
                                DMSKD_OUTBOX_HEADER_BYTES + sizeof outbox->blob, &len);
    if (rc == DMSKD_PORT_ERR_NOT_FOUND) return false;
    if (rc != DMSKD_PORT_OK || len <= DMSKD_OUTBOX_HEADER_BYTES || memcmp(outbox->header, MAGIC, 8) != 0) {
        dmskd_port_log(port, DMSKD_LOG_WARNING, "the outbox record is damaged or unreadable (port code %d); erasing it",
                       rc);
        dmskd_storage_erase(port, DMSKD_OUTBOX_RECORD);
        return false;
    }
    uint64_t round = 0;
    for (int i = 0; i < 8; i++) round = round << 8 | outbox->header[8 + i];
    outbox->round = (int64_t)round;
    outbox->len = len - DMSKD_OUTBOX_HEADER_BYTES;
    outbox->held = true;
    return true;
}

int dmskd_outbox_store(dmskd_outbox *outbox, dmskd_port *port, int64_t round, size_t len) {
    memcpy(outbox->header, MAGIC, 8);
    for (int i = 0; i < 8; i++) outbox->header[8 + i] = (uint8_t)((uint64_t)round >> (56 - 8 * i));
    outbox->round = round;
    outbox->len = len;
    outbox->held = true;
    return dmskd_storage_write(port, DMSKD_OUTBOX_RECORD, outbox->header, DMSKD_OUTBOX_HEADER_BYTES + len);
}

void dmskd_outbox_clear(dmskd_outbox *outbox, dmskd_port *port) {
    outbox->held = false;
    dmskd_storage_erase(port, DMSKD_OUTBOX_RECORD);
}
