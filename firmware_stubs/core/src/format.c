/* The core's own printf subset (see format.h). Floating conversions go to the C library's snprintf
   (newlib-nano needs -u _printf_float for them: the Cortex-M4F toolchain file links it). */
#include "dmskd/format.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *out;
    size_t cap;
    size_t n;
} sink;

static void emit(sink *s, char ch) {
    if (s->n + 1 < s->cap) s->out[s->n] = ch;
    s->n++;
}

static void emit_text(sink *s, const char *text, size_t max) {
    for (size_t i = 0; text[i] && i < max; i++) emit(s, text[i]);
}

static void emit_unsigned(sink *s, unsigned long long v, unsigned base, int width) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v > 0);
    while (width-- > n) emit(s, '0');
    while (n > 0) emit(s, digits[--n]);
}

size_t dmskd_vformat(char *out, size_t cap, const char *fmt, va_list args) {
    sink s = {out, cap, 0};
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            emit(&s, *p);
            continue;
        }
        p++;
        int width = 0, precision = -1, zero = 0;
        if (*p == '0') { zero = 1; p++; }
        while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        if (*p == '.') {
            p++;
            if (*p == '*') { precision = va_arg(args, int); p++; }
            else for (precision = 0; *p >= '0' && *p <= '9'; p++) precision = precision * 10 + (*p - '0');
        }
        int longs = 0, size = 0;
        while (*p == 'l') { longs++; p++; }
        if (*p == 'z') { size = 1; p++; }
        char conv = *p;
        if (conv == '\0') break;
        switch (conv) {
        case 's': emit_text(&s, va_arg(args, const char *), precision < 0 ? SIZE_MAX : (size_t)precision); break;
        case 'c': emit(&s, (char)va_arg(args, int)); break;
        case '%': emit(&s, '%'); break;
        case 'd':
        case 'i': {
            long long v = size ? (long long)va_arg(args, size_t) : longs >= 2 ? va_arg(args, long long)
                          : longs == 1 ? va_arg(args, long) : va_arg(args, int);
            if (v < 0) emit(&s, '-');
            emit_unsigned(&s, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v, 10, zero ? width : 0);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = size ? va_arg(args, size_t) : longs >= 2 ? va_arg(args, unsigned long long)
                                   : longs == 1 ? va_arg(args, unsigned long) : va_arg(args, unsigned);
            emit_unsigned(&s, v, conv == 'u' ? 10 : 16, zero ? width : 0);
            break;
        }
        case 'e':
        case 'g':
        case 'f': {
            char spec[8] = {'%', '.', '*', conv, '\0'}, text[48];
            double v = va_arg(args, double);
            if (precision < 0) {
                spec[1] = conv;
                spec[2] = '\0';
                snprintf(text, sizeof text, spec, v);
            } else {
                snprintf(text, sizeof text, spec, precision, v);
            }
            emit_text(&s, text, SIZE_MAX);
            break;
        }
        default: emit(&s, '%'); emit(&s, conv); break;
        }
    }
    if (cap > 0) out[s.n < cap ? s.n : cap - 1] = '\0';
    return s.n;
}

size_t dmskd_format(char *out, size_t cap, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    size_t n = dmskd_vformat(out, cap, fmt, args);
    va_end(args);
    return n;
}
