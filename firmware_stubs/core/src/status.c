/* Status reason codes and error formatting. */
#include "dmskd/status.h"

#include <stdarg.h>
#include <stdio.h>
#include "dmskd/format.h"

const char *dmskd_status_reason(dmskd_status status) {
    switch (status) {
    case DMSKD_OK: return "ok";
    case DMSKD_MALFORMED_PAYLOAD: return "malformed_payload";
    case DMSKD_WRONG_ENCODING: return "wrong_encoding";
    case DMSKD_WRONG_SHAPE: return "wrong_shape";
    case DMSKD_CHUNK_REJECTED: return "chunk_rejected";
    case DMSKD_SIGNATURE_REJECTED: return "signature_rejected";
    case DMSKD_PLAN_REJECTED: return "plan_rejected";
    case DMSKD_BUFFER_TOO_SMALL: return "buffer_too_small";
    case DMSKD_BAD_ARGUMENT: return "bad_argument";
    case DMSKD_ENTROPY_FAILED: return "entropy_failed";
    }
    return "unknown";
}

dmskd_status dmskd_fail(dmskd_error *err, dmskd_status status, const char *fmt, ...) {
    if (err != NULL) {
        va_list args;
        va_start(args, fmt);
        err->status = status;
        dmskd_vformat(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return status;
}

void dmskd_error_clear(dmskd_error *err) {
    if (err != NULL) {
        err->status = DMSKD_OK;
        err->message[0] = '\0';
    }
}
