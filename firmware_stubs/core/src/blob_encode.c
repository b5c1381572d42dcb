/* The canonical safetensors writer of edge.wire.canonical_safetensors and the update, weights and
   model-step encoders: header JSON with sorted keys, compact separators, ASCII escapes, space padding to
   a multiple of 8; tensors in name order; metadata as edge.wire.wire_metadata writes it. */
#include <stdio.h>
#include <string.h>

#include "blob_internal.h"
#include "dmskd/sha256.h"
#include "quantize.h"
#include "dmskd/format.h"

typedef struct {
    const char *name;
    dmskd_dtype dtype;
    uint32_t ndim;
    uint32_t shape[DMSKD_MAX_DIMS];
    size_t nbytes;
} wire_entry;

/* An encoder's metadata entry: values are ids (< DMSKD_MAX_TEXT), numbers, names, digests. */
typedef struct {
    char key[2];
    char value[DMSKD_MAX_TEXT];
} meta_entry;

#define ENCODER_META 14  /* an update's 13 keys and a spare: the encoder's stack stays under 1 KiB of metadata */

typedef struct {
    uint8_t *out;  /* NULL: only count */
    size_t cap;
    size_t n;
} writer;

int dmskd_name_less(const char *a, const char *b) { return strcmp(a, b) < 0; }

float dmskd_load_f32(const uint8_t *p) {
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

void dmskd_store_f32(uint8_t *p, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    p[0] = (uint8_t)bits; p[1] = (uint8_t)(bits >> 8); p[2] = (uint8_t)(bits >> 16); p[3] = (uint8_t)(bits >> 24);
}

static void w_byte(writer *w, char ch) {
    if (w->out != NULL && w->n < w->cap) w->out[w->n] = (uint8_t)ch;
    w->n++;
}

static void w_text(writer *w, const char *s) {
    while (*s) w_byte(w, *s++);
}

static void w_u64(writer *w, uint64_t v) {
    char buf[24];
    dmskd_format(buf, sizeof buf, "%llu", (unsigned long long)v);
    w_text(w, buf);
}

static void w_escape_unit(writer *w, unsigned unit) {
    char buf[8];
    dmskd_format(buf, sizeof buf, "\\u%04x", unit);
    w_text(w, buf);
}

/* A JSON string as json.dumps(ensure_ascii=True) writes it (input UTF-8, assumed valid). */
static void w_json_string(writer *w, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    w_byte(w, '"');
    while (*p) {
        unsigned cp = *p;
        size_t extra = cp < 0x80 ? 0 : cp < 0xE0 ? 1 : cp < 0xF0 ? 2 : 3;
        if (extra) {
            cp &= 0x3F >> extra;
            for (size_t k = 1; k <= extra && p[k]; k++) cp = cp << 6 | (p[k] & 0x3F);
        }
        p += extra + 1;
        switch (cp) {
        case '"': w_text(w, "\\\""); continue;
        case '\\': w_text(w, "\\\\"); continue;
        case '\n': w_text(w, "\\n"); continue;
        case '\r': w_text(w, "\\r"); continue;
        case '\t': w_text(w, "\\t"); continue;
        case '\b': w_text(w, "\\b"); continue;
        case '\f': w_text(w, "\\f"); continue;
        default: break;
        }
        if (cp >= 0x20 && cp < 0x7F) w_byte(w, (char)cp);
        else if (cp < 0x10000) w_escape_unit(w, cp);
        else {
            cp -= 0x10000;
            w_escape_unit(w, 0xD800 | (cp >> 10));
            w_escape_unit(w, 0xDC00 | (cp & 0x3FF));
        }
    }
    w_byte(w, '"');
}

static const char *dtype_text(dmskd_dtype d) { return d == DMSKD_U8 ? "U8" : "F32"; }

/* The header JSON of entries (sorted by name) and metadata (sorted by key), unpadded. */
static void w_header(writer *w, const wire_entry *entries, size_t n, const meta_entry *meta, size_t nmeta) {
    static const char metadata_key[] = "__metadata__";
    uint64_t offset = 0;
    int metadata_written = 0;
    w_byte(w, '{');
    for (size_t i = 0; i <= n; i++) {
        if (!metadata_written && (i == n || dmskd_name_less(metadata_key, entries[i].name))) {
            if (i > 0) w_byte(w, ',');
            w_text(w, "\"__metadata__\":{");
            for (size_t m = 0; m < nmeta; m++) {
                if (m > 0) w_byte(w, ',');
                w_json_string(w, meta[m].key);
                w_byte(w, ':');
                w_json_string(w, meta[m].value);
            }
            w_byte(w, '}');
            metadata_written = 1;
        }
        if (i == n) break;
        if (i > 0 || metadata_written) w_byte(w, ',');
        w_json_string(w, entries[i].name);
        w_text(w, ":{\"data_offsets\":[");
        w_u64(w, offset);
        w_byte(w, ',');
        w_u64(w, offset + entries[i].nbytes);
        w_text(w, "],\"dtype\":\"");
        w_text(w, dtype_text(entries[i].dtype));
        w_text(w, "\",\"shape\":[");
        for (uint32_t d = 0; d < entries[i].ndim; d++) {
            if (d > 0) w_byte(w, ',');
            w_u64(w, entries[i].shape[d]);
        }
        w_text(w, "]}");
        offset += entries[i].nbytes;
    }
    w_byte(w, '}');
}

static void sort_meta(meta_entry *meta, size_t n) {
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && strcmp(meta[j - 1].key, meta[j].key) > 0; j--) {
            meta_entry t = meta[j];
            meta[j] = meta[j - 1];
            meta[j - 1] = t;
        }
    }
}

dmskd_status dmskd_order_tensors(const dmskd_tensor *t, size_t n, size_t *order, dmskd_error *err) {
    if (n > DMSKD_MAX_TENSORS) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "%zu tensors, at most %d fit a blob", n, DMSKD_MAX_TENSORS);
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].name == NULL || t[i].ndim > DMSKD_MAX_DIMS || strlen(t[i].name) >= DMSKD_MAX_NAME) {
            return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "tensor %zu has no name, a name of %d bytes or more, "
                              "or more than %d dimensions", i, DMSKD_MAX_NAME, DMSKD_MAX_DIMS);
        }
        order[i] = i;
    }
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && dmskd_name_less(t[order[j]].name, t[order[j - 1]].name); j--) {
            size_t k = order[j]; order[j] = order[j - 1]; order[j - 1] = k;
        }
    }
    for (size_t i = 1; i < n; i++) {
        if (strcmp(t[order[i]].name, t[order[i - 1]].name) == 0) {
            return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "tensor name %s appears twice", t[order[i]].name);
        }
    }
    return DMSKD_OK;
}

static void add_meta(meta_entry *meta, size_t *n, const char *key, const char *value) {
    meta[*n].key[0] = key[0];
    meta[*n].key[1] = '\0';
    dmskd_format(meta[*n].value, sizeof meta[*n].value, "%s", value);
    (*n)++;
}

static void add_meta_int(meta_entry *meta, size_t *n, const char *key, int64_t v) {
    char buf[24];
    dmskd_format(buf, sizeof buf, "%lld", (long long)v);
    add_meta(meta, n, key, buf);
}

static dmskd_status add_meta_float(meta_entry *meta, size_t *n, const char *key, double v, dmskd_error *err) {
    char buf[40];
    if (dmskd_format_python_float(v, buf, sizeof buf) != DMSKD_OK) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "metadata %s is not a finite number", key);
    }
    add_meta(meta, n, key, buf);
    return DMSKD_OK;
}

/* Lay out header + data: data_fn writes the data section at data (returns status); then checksum and header. */
typedef dmskd_status (*data_writer)(void *ctx, uint8_t *data, dmskd_error *err);

static dmskd_status write_blob(const wire_entry *entries, size_t n, meta_entry *meta, size_t nmeta, data_writer fill,
                               void *ctx, uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err) {
    add_meta(meta, &nmeta, "h", "00000000000000000000000000000000");
    sort_meta(meta, nmeta);
    writer count = {NULL, 0, 0};
    w_header(&count, entries, n, meta, nmeta);
    size_t header = (count.n + 7) / 8 * 8;
    size_t data_bytes = 0;
    for (size_t i = 0; i < n; i++) data_bytes += entries[i].nbytes;
    size_t total = 8 + header + data_bytes;
    if (out_len != NULL) *out_len = total;
    if (out == NULL || cap < total) {
        return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "the blob takes %zu bytes, the buffer holds %zu", total, cap);
    }
    uint8_t *data = out + 8 + header;
    memset(data, 0, data_bytes);
    dmskd_status st = fill(ctx, data, err);
    if (st != DMSKD_OK) return st;
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(data, data_bytes, digest);
    for (size_t m = 0; m < nmeta; m++) {
        if (strcmp(meta[m].key, "h") == 0) dmskd_hex(digest, 16, meta[m].value);
    }
    writer w = {out + 8, header, 0};
    w_header(&w, entries, n, meta, nmeta);
    while (w.n < header) w_byte(&w, ' ');
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)header >> (8 * i));
    return DMSKD_OK;
}

/* ---- float32 tensors (float32-delta updates, weights) ---- */

typedef struct {
    const dmskd_tensor *tensors;
    const size_t *order;
    size_t n;
} float_ctx;

static dmskd_status fill_floats(void *ctx, uint8_t *data, dmskd_error *err) {
    const float_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) {
        const dmskd_tensor *t = &c->tensors[c->order[i]];
        size_t count = dmskd_shape_elements(t->ndim, t->shape);
        if (t->dtype == DMSKD_U8) {
            memcpy(data, t->data, count);
            data += count;
            continue;
        }
        const float *v = t->data;
        for (size_t k = 0; k < count; k++, data += 4) dmskd_store_f32(data, v[k]);
    }
    (void)err;
    return DMSKD_OK;
}

static dmskd_status float_entries(const dmskd_tensor *t, size_t n, size_t *order, wire_entry *entries,
                                  dmskd_error *err) {
    dmskd_status st = dmskd_order_tensors(t, n, order, err);
    if (st != DMSKD_OK) return st;
    for (size_t i = 0; i < n; i++) {
        const dmskd_tensor *src = &t[order[i]];
        entries[i].name = src->name;
        entries[i].dtype = src->dtype;
        entries[i].ndim = src->ndim;
        memcpy(entries[i].shape, src->shape, sizeof src->shape);
        entries[i].nbytes = dmskd_shape_elements(src->ndim, src->shape) * (src->dtype == DMSKD_U8 ? 1 : 4);
    }
    return DMSKD_OK;
}

/* ---- stochastic codes (sq updates and steps) ---- */

typedef struct {
    const dmskd_tensor *a;
    const dmskd_tensor *b;  /* NULL for updates; the old weights for a step (value = a - b) */
    const size_t *order;
    size_t n;
    unsigned bits;
    size_t codes_bytes;
    const dmskd_entropy *rng;
} sq_ctx;

dmskd_status dmskd_sq_fill(const dmskd_tensor *a, const dmskd_tensor *b, const size_t *order, size_t n,
                           unsigned bits, const dmskd_entropy *rng, uint8_t *codes, uint8_t *qparams,
                           dmskd_error *err) {
    size_t position = 0;
    for (size_t i = 0; i < n; i++) {
        const dmskd_tensor *t = &a[order[i]];
        size_t count = dmskd_shape_elements(t->ndim, t->shape);
        float q[2];
        dmskd_status st = dmskd_sq_encode_tensor(t->data, b ? b[order[i]].data : NULL, count, bits, rng, codes,
                                                 &position, q);
        if (st == DMSKD_BAD_ARGUMENT) {
            return dmskd_fail(err, st, "cannot quantise tensor %s: it holds NaN or infinity", t->name);
        }
        if (st != DMSKD_OK) return dmskd_fail(err, st, "the rounding entropy source failed");
        dmskd_store_f32(qparams + 8 * i, q[0]);
        dmskd_store_f32(qparams + 8 * i + 4, q[1]);
    }
    return DMSKD_OK;
}

static dmskd_status fill_codes(void *ctx, uint8_t *data, dmskd_error *err) {
    const sq_ctx *c = ctx;
    return dmskd_sq_fill(c->a, c->b, c->order, c->n, c->bits, c->rng, data, data + c->codes_bytes, err);
}

static dmskd_status sq_blob(const dmskd_tensor *a, const dmskd_tensor *b, size_t n, unsigned bits,
                            const dmskd_entropy *rng, meta_entry *meta, size_t nmeta, uint8_t *out, size_t cap,
                            size_t *out_len, dmskd_error *err) {
    size_t order[DMSKD_MAX_TENSORS];
    dmskd_status st = dmskd_order_tensors(a, n, order, err);
    if (st != DMSKD_OK) return st;
    size_t params = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].dtype != DMSKD_F32 || (b != NULL && (b[i].dtype != DMSKD_F32 || b[i].ndim != a[i].ndim ||
                                                      memcmp(b[i].shape, a[i].shape, a[i].ndim * 4) != 0))) {
            return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "tensor %s: quantised tensors are float32 (and a step's old "
                              "and new tensors share a shape)", a[i].name);
        }
        params += dmskd_shape_elements(a[i].ndim, a[i].shape);
    }
    sq_ctx ctx = {a, b, order, n, bits, dmskd_sq_packed_length(params, bits), rng};
    if (params > 0 && (rng == NULL || rng->fill == NULL)) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "a %u-bit encoding needs a rounding entropy source", bits);
    }
    wire_entry entries[2] = {
        {"codes", DMSKD_U8, 1, {(uint32_t)ctx.codes_bytes, 0, 0, 0}, ctx.codes_bytes},
        {"qparams", DMSKD_F32, 2, {(uint32_t)n, 2, 0, 0}, 8 * n},
    };
    return write_blob(entries, 2, meta, nmeta, fill_codes, &ctx, out, cap, out_len, err);
}

static dmskd_status update_meta_entries(const dmskd_update_meta *m, meta_entry *meta, size_t *n, dmskd_error *err) {
    add_meta(meta, n, "v", DMSKD_PROTOCOL_VERSION);
    add_meta(meta, n, "k", "u");
    add_meta(meta, n, "f", m->fleet);
    add_meta(meta, n, "d", m->device);
    add_meta_int(meta, n, "r", m->round);
    add_meta_int(meta, n, "b", m->base_version);
    add_meta_int(meta, n, "n", m->num_examples);
    dmskd_status st = add_meta_float(meta, n, "c", m->clip, err);
    if (st == DMSKD_OK) st = add_meta_float(meta, n, "z", m->noise_multiplier, err);
    if (st != DMSKD_OK) return st;
    add_meta(meta, n, "m", m->dp_mode);
    add_meta(meta, n, "e", dmskd_encoding_name(m->encoding));
    add_meta(meta, n, "t", m->training);
    return DMSKD_OK;
}

dmskd_status dmskd_encode_update(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta,
                                 const dmskd_entropy *rounding, uint8_t *out, size_t cap, size_t *out_len,
                                 dmskd_error *err) {
    meta_entry entries_meta[ENCODER_META];
    size_t nmeta = 0;
    dmskd_error_clear(err);
    if (delta == NULL && ntensors > 0) return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "no tensors given");
    dmskd_status st = update_meta_entries(meta, entries_meta, &nmeta, err);
    if (st != DMSKD_OK) return st;
    unsigned bits = dmskd_encoding_bits(meta->encoding);
    if (bits == 8 || bits == 4 || bits == 2) {
        return sq_blob(delta, NULL, ntensors, bits, rounding, entries_meta, nmeta, out, cap, out_len, err);
    }
    if (meta->encoding != DMSKD_ENC_FLOAT32_DELTA) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "update encoding %s cannot be written by the firmware; use "
                          "float32-delta, sq8-delta, sq4-delta or sq2-delta", dmskd_encoding_name(meta->encoding));
    }
    size_t order[DMSKD_MAX_TENSORS];
    wire_entry entries[DMSKD_MAX_TENSORS];
    st = float_entries(delta, ntensors, order, entries, err);
    if (st != DMSKD_OK) return st;
    float_ctx ctx = {delta, order, ntensors};
    return write_blob(entries, ntensors, entries_meta, nmeta, fill_floats, &ctx, out, cap, out_len, err);
}

size_t dmskd_update_size(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta) {
    size_t len = 0;
    dmskd_encode_update(delta, ntensors, meta, NULL, NULL, 0, &len, NULL);
    return len;
}

dmskd_status dmskd_encode_weights(const dmskd_tensor *weights, size_t ntensors, const dmskd_weights_meta *meta,
                                  uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err) {
    meta_entry m[ENCODER_META];
    size_t nmeta = 0;
    dmskd_error_clear(err);
    add_meta(m, &nmeta, "v", DMSKD_PROTOCOL_VERSION);
    add_meta(m, &nmeta, "k", "w");
    add_meta(m, &nmeta, "f", meta->fleet);
    add_meta_int(m, &nmeta, "g", meta->version);
    add_meta_int(m, &nmeta, "r", meta->round);
    add_meta(m, &nmeta, "e", dmskd_encoding_name(meta->encoding));
    size_t order[DMSKD_MAX_TENSORS];
    wire_entry entries[DMSKD_MAX_TENSORS];
    dmskd_status st = float_entries(weights, ntensors, order, entries, err);
    if (st != DMSKD_OK) return st;
    float_ctx ctx = {weights, order, ntensors};
    return write_blob(entries, ntensors, m, nmeta, fill_floats, &ctx, out, cap, out_len, err);
}

dmskd_status dmskd_encode_model_step(const dmskd_tensor *old_w, const dmskd_tensor *new_w, size_t ntensors,
                                     const dmskd_step_meta *meta, const dmskd_entropy *rounding,
                                     uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err) {
    meta_entry m[ENCODER_META];
    size_t nmeta = 0;
    dmskd_error_clear(err);
    unsigned bits = dmskd_encoding_bits(meta->encoding);
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "a model step is sq8-delta, sq4-delta or sq2-delta, not %s",
                          dmskd_encoding_name(meta->encoding));
    }
    for (size_t i = 0; i < ntensors; i++) {
        if (strcmp(old_w[i].name, new_w[i].name) != 0) {
            return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "old and new models differ in tensors: %s vs %s",
                              old_w[i].name, new_w[i].name);
        }
    }
    add_meta(m, &nmeta, "v", DMSKD_PROTOCOL_VERSION);
    add_meta(m, &nmeta, "k", "s");
    add_meta(m, &nmeta, "f", meta->fleet);
    add_meta_int(m, &nmeta, "g", meta->version);
    add_meta_int(m, &nmeta, "r", meta->round);
    add_meta_int(m, &nmeta, "b", meta->base_version);
    add_meta(m, &nmeta, "e", dmskd_encoding_name(meta->encoding));
    return sq_blob(new_w, old_w, ntensors, bits, rounding, m, nmeta, out, cap, out_len, err);
}
