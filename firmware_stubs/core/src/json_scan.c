/* A minimal JSON scanner (RFC 8259 grammar for strings and numbers). */
#include "json_scan.h"

#include <string.h>

js_cursor js_open(const void *data, size_t len) {
    js_cursor c = {(const char *)data, (const char *)data + len, NULL};
    return c;
}

static int fail(js_cursor *c, const char *why) {
    if (c->error == NULL) c->error = why;
    return 0;
}

void js_ws(js_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

int js_peek(js_cursor *c) {
    js_ws(c);
    return c->p < c->end ? (unsigned char)*c->p : -1;
}

int js_eat(js_cursor *c, char ch) {
    if (js_peek(c) == (unsigned char)ch) {
        c->p++;
        return 1;
    }
    return 0;
}

int js_expect(js_cursor *c, char ch) {
    if (c->error) return 0;
    if (js_eat(c, ch)) return 1;
    switch (ch) {
    case '{': return fail(c, "expected an object");
    case '}': return fail(c, "expected ',' or '}'");
    case '[': return fail(c, "expected an array");
    case ']': return fail(c, "expected ',' or ']'");
    case ':': return fail(c, "expected ':'");
    default: return fail(c, "unexpected character");
    }
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static void put(char *out, size_t cap, size_t *n, int *overlong, char ch) {
    if (*n + 1 < cap) out[(*n)++] = ch;
    else *overlong = 1;
}

int js_string(js_cursor *c, char *out, size_t cap, int *overlong) {
    size_t n = 0;
    int cut = 0;
    if (c->error) return 0;
    if (!js_eat(c, '"')) return fail(c, "expected a string");
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) return fail(c, "control character in a string");
        if (ch != '\\') {
            put(out, cap, &n, &cut, (char)ch);
            continue;
        }
        if (c->p >= c->end) break;
        char e = *c->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple != NULL && e != '\0') {
            static const char map[] = "\"\\/\b\f\n\r\t";
            put(out, cap, &n, &cut, map[simple - "\"\\/bfnrt"]);
            continue;
        }
        if (e != 'u' || c->end - c->p < 4) return fail(c, "bad escape in a string");
        unsigned cp;
        if (!hex4(c->p, &cp)) return fail(c, "bad \\u escape in a string");
        c->p += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {
            unsigned lo;
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &lo) || lo < 0xDC00 ||
                lo >= 0xE000) {
                return fail(c, "unpaired surrogate in a string");
            }
            c->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            return fail(c, "unpaired surrogate in a string");
        }
        if (cp < 0x80) {
            put(out, cap, &n, &cut, (char)cp);
        } else if (cp < 0x800) {
            put(out, cap, &n, &cut, (char)(0xC0 | cp >> 6));
            put(out, cap, &n, &cut, (char)(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            put(out, cap, &n, &cut, (char)(0xE0 | cp >> 12));
            put(out, cap, &n, &cut, (char)(0x80 | ((cp >> 6) & 0x3F)));
            put(out, cap, &n, &cut, (char)(0x80 | (cp & 0x3F)));
        } else {
            put(out, cap, &n, &cut, (char)(0xF0 | cp >> 18));
            put(out, cap, &n, &cut, (char)(0x80 | ((cp >> 12) & 0x3F)));
            put(out, cap, &n, &cut, (char)(0x80 | ((cp >> 6) & 0x3F)));
            put(out, cap, &n, &cut, (char)(0x80 | (cp & 0x3F)));
        }
    }
    if (c->p >= c->end) return fail(c, "unterminated string");
    c->p++;
    if (cap > 0) out[n] = '\0';
    if (overlong != NULL) *overlong = cut;
    else if (cut) return fail(c, "string too long");
    return 1;
}

static int is_digit(const char *p, const char *end) { return p < end && *p >= '0' && *p <= '9'; }

int js_number(js_cursor *c, const char **start, size_t *len) {
    if (c->error) return 0;
    js_ws(c);
    const char *p = c->p;
    if (p < c->end && *p == '-') p++;
    if (!is_digit(p, c->end)) return fail(c, "expected a number");
    if (*p == '0') p++;
    else while (is_digit(p, c->end)) p++;
    if (p < c->end && *p == '.') {
        p++;
        if (!is_digit(p, c->end)) return fail(c, "bad number");
        while (is_digit(p, c->end)) p++;
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < c->end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(p, c->end)) return fail(c, "bad number");
        while (is_digit(p, c->end)) p++;
    }
    *start = c->p;
    *len = (size_t)(p - c->p);
    c->p = p;
    return 1;
}

int js_uint64(js_cursor *c, uint64_t *out) {
    const char *s;
    size_t n;
    if (!js_number(c, &s, &n)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return fail(c, "expected a non-negative integer");
        if (v > (UINT64_MAX - 9) / 10) return fail(c, "integer too large");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static int skip_depth(js_cursor *c, int depth) {
    if (depth > 16) return fail(c, "nested too deeply");
    int ch = js_peek(c);
    if (ch == '"') return js_string(c, NULL, 0, &(int){0});
    if (ch == '{') {
        c->p++;
        if (js_eat(c, '}')) return 1;
        do {
            if (!js_string(c, NULL, 0, &(int){0}) || !js_expect(c, ':') || !skip_depth(c, depth + 1)) return 0;
        } while (js_eat(c, ','));
        return js_expect(c, '}');
    }
    if (ch == '[') {
        c->p++;
        if (js_eat(c, ']')) return 1;
        do {
            if (!skip_depth(c, depth + 1)) return 0;
        } while (js_eat(c, ','));
        return js_expect(c, ']');
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[i], n) == 0) {
            c->p += n;
            return 1;
        }
    }
    const char *s;
    size_t n;
    return js_number(c, &s, &n);
}

int js_skip(js_cursor *c) { return skip_depth(c, 0); }

int js_valid_utf8(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t extra;
        uint32_t cp;
        if (b < 0x80) { i++; continue; }
        if ((b & 0xE0) == 0xC0) { extra = 1; cp = b & 0x1F; }
        else if ((b & 0xF0) == 0xE0) { extra = 2; cp = b & 0x0F; }
        else if ((b & 0xF8) == 0xF0) { extra = 3; cp = b & 0x07; }
        else return 0;
        if (i + extra >= len) return 0;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
            return 0;
        }
        i += extra + 1;
    }
    return 1;
}
