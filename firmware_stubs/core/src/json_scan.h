/* A minimal JSON scanner over a byte range (internal): enough for safetensors headers, plans and
   signed-envelope headers. No allocation; errors are static strings. */
#ifndef DMSKD_JSON_SCAN_H
#define DMSKD_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *p;
    const char *end;
    const char *error;  /* the first error, NULL while none */
} js_cursor;

/* A cursor over [data, data + len). */
js_cursor js_open(const void *data, size_t len);
/* Skip JSON whitespace. */
void js_ws(js_cursor *c);
/* 1 and consume if the next non-space byte is ch, else 0. */
int js_eat(js_cursor *c, char ch);
/* Require ch next (sets error otherwise); returns 1 on success. */
int js_expect(js_cursor *c, char ch);
/* The next non-space byte, or -1 at the end. */
int js_peek(js_cursor *c);
/* Read a string into out[cap] (UTF-8, unescaped, NUL-terminated); *overlong = 1 if cut. Returns 1 on success. */
int js_string(js_cursor *c, char *out, size_t cap, int *overlong);
/* Read a number token (JSON grammar); start and len point at its text. Returns 1 on success. */
int js_number(js_cursor *c, const char **start, size_t *len);
/* Read a non-negative integer that fits uint64. Returns 1 on success. */
int js_uint64(js_cursor *c, uint64_t *out);
/* Skip any value (depth-limited). Returns 1 on success. */
int js_skip(js_cursor *c);
/* 1 if [data, data+len) is valid UTF-8. */
int js_valid_utf8(const uint8_t *data, size_t len);

#endif
