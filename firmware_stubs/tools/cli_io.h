/* File and argument helpers of the host test driver (host only: it may use the heap and stdio). */
#ifndef DMSKD_CLI_IO_H
#define DMSKD_CLI_IO_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/entropy.h"
#include "dmskd/status.h"

/* The whole file (or stdin for "-") in a heap buffer; exits with a message naming the file on failure. */
uint8_t *cli_read_file(const char *path, size_t *len);
/* Write len bytes to path (stdout for "-"); exits with a message on failure. */
void cli_write_file(const char *path, const uint8_t *data, size_t len);
/* Print {"status": ..., "reason": ..., "message": ...} for a failed core call and return exit code 2. */
int cli_report_error(const dmskd_error *err);
/* Print s as a JSON string literal to stdout. */
void cli_print_json_string(const char *s);
/* Exit with a usage message naming the bad argument and the command's usage. */
void cli_usage_error(const char *what, const char *usage);

/* An entropy source reading bytes from a file in order (the tests' seeded words); fails when exhausted. */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    size_t pos;
} cli_entropy_file;
/* The fill callback over a cli_entropy_file. */
int cli_entropy_file_fill(void *ctx, uint8_t *out, size_t n);

#endif
