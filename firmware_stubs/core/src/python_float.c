/* Python's repr(float) for finite doubles: the shortest digits that round-trip, in fixed notation for
   decimal exponents -4..15 (with ".0" when integral) and scientific beyond ("1e-05", "1.5e+16"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmskd/blob.h"

/* The shortest digit string d1d2...dn and exponent e with value = 0.d1d2...dn * 10^(e+1)... as d1.d2..dn e10^e. */
static int shortest_digits(double value, char *digits, int *exp10) {
    char buf[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, sizeof buf, "%.*e", precision - 1, value);
        if (strtod(buf, NULL) == value) break;
    }
    /* buf is d[.ddd]e[+-]XX */
    int n = 0;
    const char *p = buf;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9') digits[n++] = *p;
    }
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    *exp10 = atoi(p + 1);
    return n;
}

dmskd_status dmskd_format_python_float(double value, char *out, size_t cap) {
    if (!isfinite(value) || out == NULL) return DMSKD_BAD_ARGUMENT;
    char text[48], digits[24];
    size_t len = 0;
    if (signbit(value)) text[len++] = '-';
    value = fabs(value);
    if (value == 0.0) {
        memcpy(text + len, "0.0", 4);
        len += 3;
    } else {
        int e;
        int n = shortest_digits(value, digits, &e);
        if (e >= -4 && e < 16) {
            if (e < 0) {
                text[len++] = '0';
                text[len++] = '.';
                for (int i = 0; i < -e - 1; i++) text[len++] = '0';
                for (int i = 0; i < n; i++) text[len++] = digits[i];
            } else {
                for (int i = 0; i <= e; i++) text[len++] = i < n ? digits[i] : '0';
                text[len++] = '.';
                if (n > e + 1) {
                    for (int i = e + 1; i < n; i++) text[len++] = digits[i];
                } else {
                    text[len++] = '0';
                }
            }
        } else {
            text[len++] = digits[0];
            if (n > 1) {
                text[len++] = '.';
                for (int i = 1; i < n; i++) text[len++] = digits[i];
            }
            len += (size_t)snprintf(text + len, sizeof text - len, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        }
        text[len] = '\0';
    }
    if (len + 1 > cap) return DMSKD_BUFFER_TOO_SMALL;
    memcpy(out, text, len + 1);
    return DMSKD_OK;
}
