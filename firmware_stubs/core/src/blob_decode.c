/* The blob decoder: safetensors framing checked as the safetensors library does (header JSON, dtypes,
   contiguous offsets covering the data section), then edge.wire._decode's checks in its order (protocol,
   kind, dtypes per encoding, finiteness, checksum) and its metadata parsing, with its messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_internal.h"
#include "dmskd/compact_update.h"
#include "dmskd/sha256.h"
#include "json_scan.h"
#include "dmskd/format.h"

typedef struct {
    const char *name;   /* safetensors dtype */
    const char *numpy;  /* numpy's name for it, as edge.wire's messages say */
    unsigned size;
} dtype_info;

static const dtype_info DTYPES[] = {
    {"F64", "float64", 8}, {"F32", "float32", 4}, {"F16", "float16", 2}, {"BF16", "bfloat16", 2},
    {"I64", "int64", 8},   {"I32", "int32", 4},   {"I16", "int16", 2},   {"I8", "int8", 1},
    {"U64", "uint64", 8},  {"U32", "uint32", 4},  {"U16", "uint16", 2},  {"U8", "uint8", 1},
    {"BOOL", "bool", 1},
};

static const dtype_info *dtype_lookup(const char *name) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++) {
        if (strcmp(DTYPES[i].name, name) == 0) return &DTYPES[i];
    }
    return NULL;
}

#define INVALID "payload is not valid safetensors: "

static dmskd_status invalid(dmskd_error *err, const char *why) {
    return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, INVALID "%s", why);
}

typedef struct {
    uint64_t begin, end;
} offsets;

static int parse_tensor(js_cursor *c, dmskd_tensor_view *t, offsets *off) {
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (!js_expect(c, '{')) return 0;
    if (js_eat(c, '}')) { c->error = "tensor entry without dtype, shape and data_offsets"; return 0; }
    do {
        char key[16];
        int overlong = 0;
        if (!js_string(c, key, sizeof key, &overlong) || !js_expect(c, ':')) return 0;
        if (strcmp(key, "dtype") == 0 && !overlong && !have_dtype) {
            if (!js_string(c, t->dtype_name, sizeof t->dtype_name, &overlong)) return 0;
            if (overlong || dtype_lookup(t->dtype_name) == NULL) { c->error = "unknown dtype"; return 0; }
            have_dtype = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            t->ndim = 0;
            if (!js_expect(c, '[')) return 0;
            if (!js_eat(c, ']')) {
                do {
                    uint64_t d;
                    if (!js_uint64(c, &d)) return 0;
                    if (t->ndim == DMSKD_MAX_DIMS || d > UINT32_MAX) {
                        c->error = "a shape beyond the firmware's 4 dimensions of at most 2^32 - 1";
                        return 0;
                    }
                    t->shape[t->ndim++] = (uint32_t)d;
                } while (js_eat(c, ','));
                if (!js_expect(c, ']')) return 0;
            }
            have_shape = 1;
        } else if (strcmp(key, "data_offsets") == 0 && !have_offsets) {
            if (!js_expect(c, '[') || !js_uint64(c, &off->begin) || !js_expect(c, ',') || !js_uint64(c, &off->end) ||
                !js_expect(c, ']')) {
                return 0;
            }
            have_offsets = 1;
        } else if (strcmp(key, "dtype") == 0 || strcmp(key, "shape") == 0 || strcmp(key, "data_offsets") == 0) {
            c->error = "repeated field in a tensor entry";
            return 0;
        } else if (!js_skip(c)) {  /* the safetensors library ignores other fields */
            return 0;
        }
    } while (js_eat(c, ','));
    if (!js_expect(c, '}')) return 0;
    if (!(have_dtype && have_shape && have_offsets)) {
        c->error = "tensor entry without dtype, shape and data_offsets";
        return 0;
    }
    return 1;
}

static int parse_metadata(js_cursor *c, dmskd_blob *out) {
    if (!js_expect(c, '{')) return 0;
    if (js_eat(c, '}')) return 1;
    do {
        if (out->nmeta == DMSKD_MAX_META) { c->error = "more metadata entries than the firmware holds (16)"; return 0; }
        dmskd_meta_entry *m = &out->meta[out->nmeta];
        int overlong = 0;
        if (!js_string(c, m->key, sizeof m->key, &overlong) || !js_expect(c, ':')) return 0;
        if (overlong) {  /* keys of the wire are one letter; a long key is kept out (never read) */
            m->key[0] = '\0';
        }
        if (js_peek(c) != '"') { c->error = "metadata values must be strings"; return 0; }
        const char *text = c->p + 1;
        if (!js_string(c, m->value, sizeof m->value, &overlong)) return 0;
        if (overlong) {
            m->raw_len = (size_t)(c->p - 1 - text);
            m->raw = memchr(text, '\\', m->raw_len) == NULL ? text : NULL;
            m->value[0] = '\x01';  /* marks a value too long to hold: unreadable as any field */
            m->value[1] = '\0';
        }
        out->nmeta++;
    } while (js_eat(c, ','));
    return js_expect(c, '}');
}

static dmskd_status parse_safetensors(const uint8_t *data, size_t len, dmskd_blob *out, dmskd_error *err) {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | data[i];
    const uint8_t *header = data + 8;
    if (!js_valid_utf8(header, (size_t)header_len)) return invalid(err, "header is not UTF-8");
    js_cursor c = js_open(header, (size_t)header_len);
    offsets off[DMSKD_MAX_TENSORS];
    int metadata_seen = 0;
    memset(out, 0, sizeof *out);
    if (js_peek(&c) != '{') return invalid(err, "header does not start with '{'");
    c.p++;
    if (!js_eat(&c, '}')) {
        do {
            char key[DMSKD_MAX_NAME];
            int overlong = 0;
            if (!js_string(&c, key, sizeof key, &overlong) || !js_expect(&c, ':')) break;
            if (overlong) return invalid(err, "a tensor name longer than the firmware holds (47 bytes)");
            if (strcmp(key, "__metadata__") == 0) {
                if (metadata_seen++) { c.error = "repeated __metadata__"; break; }
                if (!parse_metadata(&c, out)) break;
                continue;
            }
            if (out->ntensors == DMSKD_MAX_TENSORS) return invalid(err, "more tensors than the firmware holds (16)");
            dmskd_tensor_view *t = &out->tensors[out->ntensors];
            dmskd_format(t->name, sizeof t->name, "%s", key);
            if (!parse_tensor(&c, t, &off[out->ntensors])) break;
            for (size_t i = 0; i < out->ntensors; i++) {
                if (strcmp(out->tensors[i].name, t->name) == 0) { c.error = "a tensor name appears twice"; break; }
            }
            out->ntensors++;
        } while (c.error == NULL && js_eat(&c, ','));
        if (c.error == NULL) js_expect(&c, '}');
    }
    if (c.error == NULL && js_peek(&c) != -1) c.error = "trailing bytes after the header object";
    if (c.error != NULL) return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, INVALID "header JSON: %s", c.error);
    /* offsets: sorted by begin, contiguous from 0, each exactly its shape's bytes, ending at the buffer's end */
    size_t data_len = len - 8 - (size_t)header_len;
    const uint8_t *section = header + header_len;
    size_t order[DMSKD_MAX_TENSORS];
    for (size_t i = 0; i < out->ntensors; i++) order[i] = i;
    for (size_t i = 1; i < out->ntensors; i++) {
        for (size_t j = i; j > 0 && off[order[j]].begin < off[order[j - 1]].begin; j--) {
            size_t k = order[j]; order[j] = order[j - 1]; order[j - 1] = k;
        }
    }
    uint64_t expected = 0;
    for (size_t i = 0; i < out->ntensors; i++) {
        dmskd_tensor_view *t = &out->tensors[order[i]];
        const offsets *o = &off[order[i]];
        if (o->begin != expected || o->end < o->begin) return invalid(err, "tensor data offsets overlap or leave gaps");
        uint64_t elements = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            elements *= t->shape[d];
            if (elements > (uint64_t)1 << 40) return invalid(err, "a tensor shape too large");
        }
        if (elements * dtype_lookup(t->dtype_name)->size != o->end - o->begin) {
            return invalid(err, "a tensor's data offsets disagree with its dtype and shape");
        }
        if (o->end > data_len) return invalid(err, "tensor data runs past the end of the payload");
        t->data = section + o->begin;
        t->nbytes = (size_t)(o->end - o->begin);
        t->dtype = strcmp(t->dtype_name, "F32") == 0 ? DMSKD_F32 : strcmp(t->dtype_name, "U8") == 0 ? DMSKD_U8 : 0;
        expected = o->end;
    }
    if (expected != data_len) return invalid(err, "the data section is longer or shorter than its tensors");
    /* tensors in name order from here on */
    for (size_t i = 1; i < out->ntensors; i++) {
        for (size_t j = i; j > 0 && dmskd_name_less(out->tensors[j].name, out->tensors[j - 1].name); j--) {
            dmskd_tensor_view t = out->tensors[j];
            out->tensors[j] = out->tensors[j - 1];
            out->tensors[j - 1] = t;
        }
    }
    return DMSKD_OK;
}

const char *dmskd_blob_meta(const dmskd_blob *blob, const char *key) {
    for (size_t i = 0; i < blob->nmeta; i++) {
        if (strcmp(blob->meta[i].key, key) == 0) return blob->meta[i].value;
    }
    return NULL;
}

float dmskd_view_f32(const dmskd_tensor_view *t, size_t i) { return dmskd_load_f32(t->data + 4 * i); }

static const char *kind_name(const char *k) {
    if (k == NULL) return NULL;
    if (strcmp(k, "u") == 0) return "update";
    if (strcmp(k, "w") == 0) return "weights";
    if (strcmp(k, "s") == 0) return "step";
    return k;
}

dmskd_status dmskd_blob_parse(const uint8_t *data, size_t len, char kind, dmskd_blob *out, dmskd_error *err) {
    dmskd_error_clear(err);
    if (data == NULL || len < 8) return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD,
                                                   "payload truncated: shorter than a safetensors header");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | data[i];
    if (header_len > len - 8) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "payload truncated: header claims %llu bytes, %zu present",
                          (unsigned long long)header_len, len - 8);
    }
    dmskd_status st = parse_safetensors(data, len, out, err);
    if (st != DMSKD_OK) return st;
    const char *version = dmskd_blob_meta(out, "v");
    if (version == NULL) version = dmskd_blob_meta(out, "protocol");
    if (version == NULL || strcmp(version, DMSKD_PROTOCOL_VERSION) != 0) {
        char shown[DMSKD_MAX_META_VALUE + 2];
        if (version == NULL) dmskd_format(shown, sizeof shown, "None");
        else dmskd_format(shown, sizeof shown, "'%s'", version);
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "protocol version %s, this build speaks '%s'; upgrade the "
                          "sender (docs/wire-protocol.md)", shown, DMSKD_PROTOCOL_VERSION);
    }
    const char *got = dmskd_blob_meta(out, "k");
    char want[2] = {kind, '\0'};
    if (got == NULL || strcmp(got, want) != 0) {
        const char *named = kind_name(got);
        if (named == NULL) return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "payload kind None where '%s' was expected",
                                             kind_name(want));
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "payload kind '%s' where '%s' was expected", named,
                          kind_name(want));
    }
    const char *enc = dmskd_blob_meta(out, "e");
    dmskd_encoding e = enc != NULL ? dmskd_encoding_from_name(enc) : DMSKD_ENC_UNKNOWN;
    int u8_allowed = e == DMSKD_ENC_SQ8_DELTA || e == DMSKD_ENC_SQ4_DELTA || e == DMSKD_ENC_SQ2_DELTA ||
                     e == DMSKD_ENC_UINT8_AFFINE_DELTA;
    for (size_t i = 0; i < out->ntensors; i++) {
        const dmskd_tensor_view *t = &out->tensors[i];
        if (!(t->dtype == DMSKD_F32 || (u8_allowed && t->dtype == DMSKD_U8))) {
            return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "tensor %s has dtype %s, expected %s", t->name,
                              dtype_lookup(t->dtype_name)->numpy, u8_allowed ? "float32 or uint8" : "float32");
        }
        if (t->dtype == DMSKD_F32) {
            for (size_t k = 0; k < t->nbytes / 4; k++) {
                if (!isfinite(dmskd_view_f32(t, k))) {
                    return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "tensor %s contains NaN or infinity", t->name);
                }
            }
        }
    }
    dmskd_sha256_ctx h;
    dmskd_sha256_init(&h);
    for (size_t i = 0; i < out->ntensors; i++) dmskd_sha256_update(&h, out->tensors[i].data, out->tensors[i].nbytes);
    uint8_t digest[DMSKD_SHA256_BYTES];
    char hex[33];
    dmskd_sha256_final(&h, digest);
    dmskd_hex(digest, 16, hex);
    const char *claimed = dmskd_blob_meta(out, "h");
    if (claimed == NULL || strcmp(claimed, hex) != 0) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "checksum mismatch: tensors were altered or corrupted in "
                          "transit");
    }
    return DMSKD_OK;
}

/* ---- metadata fields (edge.wire._meta_from) ---- */

typedef struct {
    const dmskd_blob *blob;
    dmskd_error *err;
    dmskd_status status;
} meta_reader;

static const char *field_text(meta_reader *r, const char *field, const char *key, int required) {
    if (r->status != DMSKD_OK) return NULL;
    const char *v = dmskd_blob_meta(r->blob, key);
    if (v == NULL && required) {
        r->status = dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "metadata field '%s' (key '%s') missing", field, key);
    }
    return v;
}

static void unreadable(meta_reader *r, const char *field, const char *key, const char *v) {
    r->status = dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "metadata field '%s' (key '%s') unreadable: '%.40s'",
                           field, key, v[0] == '\x01' ? "(too long)" : v);
}

static void read_int(meta_reader *r, const char *field, const char *key, int64_t *out) {
    const char *v = field_text(r, field, key, 1);
    if (v == NULL) return;
    const char *p = v;
    if (*p == '+' || *p == '-') p++;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || p[digits] != '\0' || digits > 18) {
        unreadable(r, field, key, v);
        return;
    }
    *out = strtoll(v, NULL, 10);
}

static const dmskd_meta_entry *entry_of(const dmskd_blob *blob, const char *key) {
    for (size_t i = 0; i < blob->nmeta; i++) {
        if (strcmp(blob->meta[i].key, key) == 0) return &blob->meta[i];
    }
    return NULL;
}

static void read_float(meta_reader *r, const char *field, const char *key, double *out) {
    const char *v = field_text(r, field, key, 1);
    if (v == NULL) return;
    const dmskd_meta_entry *e = entry_of(r->blob, key);
    const char *text = v[0] == '\x01' && e->raw != NULL ? e->raw : v;  /* a long number: read from the blob */
    const char *stop = text == v ? v + strlen(v) : e->raw + e->raw_len;
    char *end;
    double d = strtod(text, &end);
    if (end == text || end != stop || memchr(text, 'x', (size_t)(stop - text)) != NULL ||
        memchr(text, 'X', (size_t)(stop - text)) != NULL) {
        unreadable(r, field, key, v);
        return;
    }
    *out = d;
}

static void read_text(meta_reader *r, const char *field, const char *key, char *out, size_t cap, int required,
                      const char *fallback) {
    const char *v = field_text(r, field, key, required);
    if (r->status != DMSKD_OK) return;
    if (v == NULL) v = fallback;
    if (v[0] == '\x01' || strlen(v) >= cap) {
        r->status = dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "metadata field '%s' (key '%s') longer than the %zu "
                               "bytes the firmware holds", field, key, cap - 1);
        return;
    }
    memcpy(out, v, strlen(v) + 1);
}

static void read_encoding(meta_reader *r, const char *fallback, dmskd_encoding *out, char *name, size_t cap) {
    read_text(r, "encoding", "e", name, cap, 0, fallback);
    if (r->status == DMSKD_OK) *out = dmskd_encoding_from_name(name);
}

static void shown_list(char *out, size_t cap, const dmskd_encoding *list, size_t n) {
    size_t len = (size_t)dmskd_format(out, cap, "[");
    for (size_t i = 0; i < n && len < cap; i++) {
        len += (size_t)dmskd_format(out + len, cap - len, "%s'%s'", i ? ", " : "", dmskd_encoding_name(list[i]));
    }
    if (len < cap) dmskd_format(out + len, cap - len, "]");
}

/* DMSKD_OK if encoding is among accepted, else wrong_encoding naming it (enc: its name as written). */
static dmskd_status accepted_or_refused(dmskd_encoding encoding, const char *enc, const dmskd_encoding *accepted,
                                        size_t naccepted, dmskd_error *err) {
    for (size_t i = 0; i < naccepted; i++) {
        if (encoding == accepted[i] && encoding != DMSKD_ENC_UNKNOWN) return DMSKD_OK;
    }
    char list[160];
    shown_list(list, sizeof list, accepted, naccepted);
    return dmskd_fail(err, DMSKD_WRONG_ENCODING, "update encoding '%s' not accepted here; expected one of %s", enc,
                      list);
}

dmskd_status dmskd_decode_update(const uint8_t *data, size_t len, const dmskd_encoding *accepted, size_t naccepted,
                                 dmskd_blob *blob, dmskd_update_meta *meta, dmskd_error *err) {
    char enc[DMSKD_MAX_META_VALUE];
    if (dmskd_is_compact_update(data, len)) { /* protocol 3 (edge.compact_update), read as edge.wire does */
        dmskd_status st = dmskd_decode_compact_update(data, len, blob, meta, err);
        if (st != DMSKD_OK) return st;
        dmskd_format(enc, sizeof enc, "%s", dmskd_encoding_name(meta->encoding));
        return accepted_or_refused(meta->encoding, enc, accepted, naccepted, err);
    }
    dmskd_status st = dmskd_blob_parse(data, len, 'u', blob, err);
    if (st != DMSKD_OK) return st;
    meta_reader r = {blob, err, DMSKD_OK};
    memset(meta, 0, sizeof *meta);
    read_text(&r, "fleet", "f", meta->fleet, sizeof meta->fleet, 1, NULL);
    read_text(&r, "device", "d", meta->device, sizeof meta->device, 1, NULL);
    read_int(&r, "round", "r", &meta->round);
    read_int(&r, "base_version", "b", &meta->base_version);
    read_int(&r, "num_examples", "n", &meta->num_examples);
    read_float(&r, "clip", "c", &meta->clip);
    read_float(&r, "noise_multiplier", "z", &meta->noise_multiplier);
    read_text(&r, "dp_mode", "m", meta->dp_mode, sizeof meta->dp_mode, 1, NULL);
    read_encoding(&r, "float32-delta", &meta->encoding, enc, sizeof enc);
    read_text(&r, "training", "t", meta->training, sizeof meta->training, 0, "");
    if (r.status != DMSKD_OK) return r.status;
    return accepted_or_refused(meta->encoding, enc, accepted, naccepted, err);
}

dmskd_status dmskd_decode_weights(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_weights_meta *meta,
                                  dmskd_error *err) {
    dmskd_status st = dmskd_blob_parse(data, len, 'w', blob, err);
    if (st != DMSKD_OK) return st;
    meta_reader r = {blob, err, DMSKD_OK};
    char enc[DMSKD_MAX_META_VALUE];
    memset(meta, 0, sizeof *meta);
    read_text(&r, "fleet", "f", meta->fleet, sizeof meta->fleet, 1, NULL);
    read_int(&r, "version", "g", &meta->version);
    read_int(&r, "round", "r", &meta->round);
    read_encoding(&r, "float32-weights", &meta->encoding, enc, sizeof enc);
    return r.status;
}

dmskd_status dmskd_decode_model_step(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_step_meta *meta,
                                     dmskd_error *err) {
    dmskd_status st = dmskd_blob_parse(data, len, 's', blob, err);
    if (st != DMSKD_OK) return st;
    meta_reader r = {blob, err, DMSKD_OK};
    char enc[DMSKD_MAX_META_VALUE];
    memset(meta, 0, sizeof *meta);
    read_text(&r, "fleet", "f", meta->fleet, sizeof meta->fleet, 1, NULL);
    read_int(&r, "version", "g", &meta->version);
    read_int(&r, "round", "r", &meta->round);
    read_int(&r, "base_version", "b", &meta->base_version);
    read_encoding(&r, "sq8-delta", &meta->encoding, enc, sizeof enc);
    if (r.status != DMSKD_OK) return r.status;
    unsigned bits = dmskd_encoding_bits(meta->encoding);
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "model step encoding '%s'; expected one of ['sq8-delta', "
                          "'sq4-delta', 'sq2-delta']", enc);
    }
    return DMSKD_OK;
}
