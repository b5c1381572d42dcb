/* A strict reader of the cohort notice's few JSON shapes: objects of known keys, integers, booleans,
 * null and a hex string; no general JSON (the notice is signed, so only the aggregator's writer matters). */
#include "cohort_notice.h"

#include <string.h>

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} cursor;

static void skip_space(cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\t' || *c->at == '\r')) c->at++;
}

static bool take(cursor *c, char ch) {
    skip_space(c);
    if (c->at < c->end && *c->at == (uint8_t)ch) {
        c->at++;
        return true;
    }
    return false;
}

static bool take_word(cursor *c, const char *word) {
    skip_space(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->at) < n || memcmp(c->at, word, n) != 0) return false;
    c->at += n;
    return true;
}

/* A string of at most cap-1 plain characters (no escapes: keys and hex digests need none). */
static bool take_string(cursor *c, char *out, size_t cap) {
    if (!take(c, '"')) return false;
    size_t n = 0;
    while (c->at < c->end && *c->at != '"') {
        if (*c->at == '\\' || *c->at < 0x20 || n + 1 >= cap) return false;
        out[n++] = (char)*c->at++;
    }
    if (c->at >= c->end) return false;
    c->at++;
    out[n] = '\0';
    return true;
}

static bool take_int(cursor *c, int64_t *out) {
    skip_space(c);
    bool negative = c->at < c->end && *c->at == '-';
    if (negative) c->at++;
    if (c->at >= c->end || *c->at < '0' || *c->at > '9') return false;
    int64_t value = 0;
    while (c->at < c->end && *c->at >= '0' && *c->at <= '9') {
        if (value > (INT64_MAX - 9) / 10) return false;
        value = value * 10 + (*c->at++ - '0');
    }
    *out = negative ? -value : value;
    return true;
}

static bool take_bool(cursor *c, bool *out) {
    if (take_word(c, "true")) return (*out = true), true;
    if (take_word(c, "false")) return (*out = false), true;
    return false;
}

static bool parse_ack(cursor *c, dmskd_cohort_notice *out, const char **why) {
    if (take_word(c, "null")) return true; /* no previous update to speak of */
    if (!take(c, '{')) return (*why = "ack is neither an object nor null"), false;
    bool has_round = false, has_update = false;
    do {
        char key[16];
        if (!take_string(c, key, sizeof key) || !take(c, ':')) return (*why = "unreadable key in ack"), false;
        if (strcmp(key, "round") == 0) {
            if (!take_int(c, &out->ack_round)) return (*why = "ack round is not an integer"), false;
            has_round = true;
        } else if (strcmp(key, "update") == 0) {
            if (take_word(c, "null")) {
                out->ack_accepted = false;
            } else if (take_string(c, out->ack_digest, sizeof out->ack_digest)) {
                out->ack_accepted = true;
            } else {
                return (*why = "ack update is neither a digest string nor null"), false;
            }
            has_update = true;
        } else {
            return (*why = "unknown key in ack"), false;
        }
    } while (take(c, ','));
    if (!take(c, '}') || !has_round || !has_update) return (*why = "ack needs round and update"), false;
    out->has_ack = true;
    return true;
}

bool dmskd_cohort_notice_parse(const uint8_t *json, size_t len, dmskd_cohort_notice *out, const char **why) {
    cursor c = {json, json + len};
    memset(out, 0, sizeof *out);
    *why = "not a JSON object";
    if (!take(&c, '{')) return false;
    bool has_round = false, has_selected = false;
    do {
        char key[16];
        if (!take_string(&c, key, sizeof key) || !take(&c, ':')) return (*why = "unreadable key"), false;
        if (strcmp(key, "round") == 0) {
            if (!take_int(&c, &out->round) || out->round < 0) return (*why = "round is not an integer >= 0"), false;
            has_round = true;
        } else if (strcmp(key, "selected") == 0) {
            if (!take_bool(&c, &out->selected)) return (*why = "selected is not a boolean"), false;
            has_selected = true;
        } else if (strcmp(key, "ack") == 0) {
            if (!parse_ack(&c, out, why)) return false;
        } else {
            return (*why = "unknown key (this firmware reads round, selected, ack)"), false;
        }
    } while (take(&c, ','));
    if (!take(&c, '}')) return (*why = "object not closed"), false;
    skip_space(&c);
    if (c.at != c.end) return (*why = "bytes after the object"), false;
    if (!has_round || !has_selected) return (*why = "round and selected are required"), false;
    return true;
}
