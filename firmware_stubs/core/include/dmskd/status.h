/* Status codes and error details shared by every core module (reason codes as edge/wire.py names them). */
#ifndef DMSKD_STATUS_H
#define DMSKD_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What went wrong; the first three are the wire's rejection reasons (edge.wire.PayloadRejected.reason). */
typedef enum {
    DMSKD_OK = 0,
    DMSKD_MALFORMED_PAYLOAD,   /* "malformed_payload": framing, metadata, dtype, finiteness, checksum */
    DMSKD_WRONG_ENCODING,      /* "wrong_encoding": an encoding this receiver does not accept */
    DMSKD_WRONG_SHAPE,         /* "wrong_shape": names or shapes differ from the student's */
    DMSKD_CHUNK_REJECTED,      /* "chunk_rejected": a chunk that cannot belong to any valid message */
    DMSKD_SIGNATURE_REJECTED,  /* "signature_rejected": unsigned, forged, moved, replayed artefact */
    DMSKD_PLAN_REJECTED,       /* "plan_rejected": a plan the firmware cannot run */
    DMSKD_BUFFER_TOO_SMALL,    /* "buffer_too_small": the caller's buffer cannot hold the result */
    DMSKD_BAD_ARGUMENT,        /* "bad_argument": a caller error (a null pointer, a bad bit width) */
    DMSKD_ENTROPY_FAILED       /* "entropy_failed": the port's entropy callback failed */
} dmskd_status;

#define DMSKD_ERROR_MESSAGE_BYTES 192

/* A status with its human-readable detail (what is wrong and, where it helps, the fix). */
typedef struct {
    dmskd_status status;
    char message[DMSKD_ERROR_MESSAGE_BYTES];
} dmskd_error;

/* The reason code text of a status ("malformed_payload", ...), as the Python side names it. */
const char *dmskd_status_reason(dmskd_status status);

/* Set err (if not NULL) to status with a printf-style message; returns status for `return dmskd_fail(...)`. */
dmskd_status dmskd_fail(dmskd_error *err, dmskd_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Clear err to DMSKD_OK with an empty message. */
void dmskd_error_clear(dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
