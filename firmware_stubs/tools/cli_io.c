/* File and argument helpers of the host test driver. */
#include "cli_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *cli_read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "error: cannot open %s: check the path\n", path);
        exit(64);
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fprintf(stderr, "error: out of memory reading %s\n", path);
            exit(70);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

void cli_write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "error: cannot write %s: check the folder exists and is writable\n", path);
        exit(73);
    }
    if (f != stdout) fclose(f);
    else fflush(f);
}

void cli_print_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

int cli_report_error(const dmskd_error *err) {
    printf("{\"status\": \"rejected\", \"reason\": \"%s\", \"message\": ", dmskd_status_reason(err->status));
    cli_print_json_string(err->message);
    printf("}\n");
    return 2;
}

void cli_usage_error(const char *what, const char *usage) {
    fprintf(stderr, "error: %s\nusage: %s\n", what, usage);
    exit(64);
}

int cli_entropy_file_fill(void *ctx, uint8_t *out, size_t n) {
    cli_entropy_file *src = ctx;
    if (src->len - src->pos < n) return 1;
    memcpy(out, src->bytes + src->pos, n);
    src->pos += n;
    return 0;
}
