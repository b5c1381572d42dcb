/* Protocol 3's compact update: encoder and decoder (see dmskd/compact_update.h). */
#include "dmskd/compact_update.h"

#include <math.h>
#include <string.h>

#include "blob_internal.h"
#include "dmskd/format.h"
#include "dmskd/sha256.h"
#include "json_scan.h"
#include "quantize.h"

#define MAGIC_BYTES 4
#define CHECKSUM_BYTES 8
#define HEAD_BYTES (MAGIC_BYTES + CHECKSUM_BYTES)
#define MAX_VARINT_BYTES 9
#define DIGEST_BYTES (DMSKD_TRAINING_DIGEST_CHARS / 2)

static const char *const DP_CODES[3] = {"none", "local", "central"};

int dmskd_is_compact_update(const uint8_t *data, size_t len) {
    return data != NULL && len >= MAGIC_BYTES && memcmp(data, DMSKD_COMPACT_MAGIC, MAGIC_BYTES) == 0;
}

/* ---- encoder ---- */

static size_t varint_length(uint64_t v) {
    size_t n = 1;
    while (v > 0x7F) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v > 0x7F) {
        *p++ = (uint8_t)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_f64(uint8_t *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    for (int i = 0; i < 8; i++) *p++ = (uint8_t)(bits >> (8 * i));
    return p;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int dp_code(const char *mode) {
    for (int i = 0; i < 3; i++) {
        if (strcmp(mode, DP_CODES[i]) == 0) return i;
    }
    return -1;
}

dmskd_status dmskd_encode_compact_update(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta,
                                         const dmskd_entropy *rounding, uint8_t *out, size_t cap, size_t *out_len,
                                         dmskd_error *err) {
    dmskd_error_clear(err);
    unsigned bits = dmskd_encoding_bits(meta->encoding);
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "the compact container carries sq8-delta, sq4-delta or "
                          "sq2-delta updates, not %s", dmskd_encoding_name(meta->encoding));
    }
    int dp = dp_code(meta->dp_mode);
    size_t fleet = strlen(meta->fleet), device = strlen(meta->device);
    int digest_ok = strlen(meta->training) == DMSKD_TRAINING_DIGEST_CHARS;
    for (size_t i = 0; digest_ok && i < DMSKD_TRAINING_DIGEST_CHARS; i++) digest_ok = hex_value(meta->training[i]) >= 0;
    if (dp < 0 || !digest_ok || fleet == 0 || fleet > DMSKD_COMPACT_NAME_BYTES || device == 0 ||
        device > DMSKD_COMPACT_NAME_BYTES || meta->round < 0 || meta->base_version < 0 || meta->num_examples < 0 ||
        ntensors > 255) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "dp mode %s, training digest %s, names of 1..%d bytes, counts >= 0 "
                          "and at most 255 tensors are what a compact update carries", meta->dp_mode, meta->training,
                          DMSKD_COMPACT_NAME_BYTES);
    }
    if (delta == NULL && ntensors > 0) return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "no tensors given");
    size_t order[DMSKD_MAX_TENSORS];
    dmskd_status st = dmskd_order_tensors(delta, ntensors, order, err);
    if (st != DMSKD_OK) return st;
    size_t params = 0;
    for (size_t i = 0; i < ntensors; i++) {
        if (delta[i].dtype != DMSKD_F32) {
            return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "tensor %s: quantised tensors are float32", delta[i].name);
        }
        params += dmskd_shape_elements(delta[i].ndim, delta[i].shape);
    }
    if (params > 0 && (rounding == NULL || rounding->fill == NULL)) {
        return dmskd_fail(err, DMSKD_BAD_ARGUMENT, "a %u-bit encoding needs a rounding entropy source", bits);
    }
    size_t codes = dmskd_sq_packed_length(params, bits);
    size_t body = 2 + varint_length((uint64_t)meta->round) + varint_length((uint64_t)meta->base_version) +
                  varint_length((uint64_t)meta->num_examples) + 16 + DIGEST_BYTES + 1 + fleet + 1 + device + 1 +
                  8 * ntensors + codes;
    if (out_len != NULL) *out_len = HEAD_BYTES + body;
    if (out == NULL || cap < HEAD_BYTES + body) {
        return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "the compact update takes %zu bytes, the buffer holds %zu",
                          HEAD_BYTES + body, cap);
    }
    uint8_t *p = out + HEAD_BYTES;
    *p++ = (uint8_t)bits;
    *p++ = (uint8_t)dp;
    p = put_varint(p, (uint64_t)meta->round);
    p = put_varint(p, (uint64_t)meta->base_version);
    p = put_varint(p, (uint64_t)meta->num_examples);
    p = put_f64(p, meta->clip);
    p = put_f64(p, meta->noise_multiplier);
    for (size_t i = 0; i < DIGEST_BYTES; i++) {
        *p++ = (uint8_t)(hex_value(meta->training[2 * i]) << 4 | hex_value(meta->training[2 * i + 1]));
    }
    *p++ = (uint8_t)fleet;
    memcpy(p, meta->fleet, fleet);
    p += fleet;
    *p++ = (uint8_t)device;
    memcpy(p, meta->device, device);
    p += device;
    *p++ = (uint8_t)ntensors;
    uint8_t *qparams = p, *packed = p + 8 * ntensors;
    memset(packed, 0, codes);
    st = dmskd_sq_fill(delta, NULL, order, ntensors, bits, rounding, packed, qparams, err);
    if (st != DMSKD_OK) return st;
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(out + HEAD_BYTES, body, digest);
    memcpy(out, DMSKD_COMPACT_MAGIC, MAGIC_BYTES);
    memcpy(out + MAGIC_BYTES, digest, CHECKSUM_BYTES);
    return DMSKD_OK;
}

/* ---- decoder: the fields in order, each shortfall or bad value refused naming the field ---- */

typedef struct {
    const uint8_t *data;
    size_t len, at;
    dmskd_error *err;
} reader;

static dmskd_status take(reader *r, size_t n, const char *what, const uint8_t **out) {
    if (n > r->len - r->at) {
        return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "payload truncated: the compact update ends inside its %s",
                          what);
    }
    *out = r->data + r->at;
    r->at += n;
    return DMSKD_OK;
}

static dmskd_status byte(reader *r, const char *what, unsigned *out) {
    const uint8_t *p;
    dmskd_status st = take(r, 1, what, &p);
    if (st == DMSKD_OK) *out = *p;
    return st;
}

static dmskd_status varint(reader *r, const char *what, int64_t *out) {
    uint64_t value = 0;
    for (int i = 0; i < MAX_VARINT_BYTES; i++) {
        unsigned b;
        dmskd_status st = byte(r, what, &b);
        if (st != DMSKD_OK) return st;
        value |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0) {
                return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "the %s varint is not minimal (a trailing zero "
                                  "byte)", what);
            }
            *out = (int64_t)value;
            return DMSKD_OK;
        }
    }
    return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "the %s varint runs past %d bytes", what, MAX_VARINT_BYTES);
}

static dmskd_status name(reader *r, const char *what, char *out) {
    char label[24];
    dmskd_format(label, sizeof label, "%s length", what);
    unsigned size;
    dmskd_status st = byte(r, label, &size);
    if (st != DMSKD_OK) return st;
    if (size > DMSKD_COMPACT_NAME_BYTES) {
        return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "the %s name takes %u bytes, more than %d", what, size,
                          DMSKD_COMPACT_NAME_BYTES);
    }
    const uint8_t *p;
    st = take(r, size, what, &p);
    if (st != DMSKD_OK) return st;
    if (!js_valid_utf8(p, size)) return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "the %s name is not UTF-8", what);
    if (size == 0) return dmskd_fail(r->err, DMSKD_MALFORMED_PAYLOAD, "the %s name is empty", what);
    memcpy(out, p, size);
    out[size] = '\0';
    return DMSKD_OK;
}

static double get_f64(const uint8_t *p) {
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) bits = bits << 8 | p[i];
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

static void view(dmskd_tensor_view *v, const char *tensor, dmskd_dtype dtype, const char *dtype_name, uint32_t ndim,
                 uint32_t d0, uint32_t d1, const uint8_t *data, size_t nbytes) {
    memset(v, 0, sizeof *v);
    dmskd_format(v->name, sizeof v->name, "%s", tensor);
    v->dtype = dtype;
    dmskd_format(v->dtype_name, sizeof v->dtype_name, "%s", dtype_name);
    v->ndim = ndim;
    v->shape[0] = d0;
    v->shape[1] = d1;
    v->data = data;
    v->nbytes = nbytes;
}

/* The metadata as protocol 2's keys would hold it (docs/wire-protocol.md section 3), for dmskd_blob_meta. */
static void add_text(dmskd_blob *blob, const char *key, const char *value) {
    dmskd_meta_entry *m = &blob->meta[blob->nmeta++];
    dmskd_format(m->key, sizeof m->key, "%s", key);
    dmskd_format(m->value, sizeof m->value, "%s", value);
}

static void add_int(dmskd_blob *blob, const char *key, int64_t value) {
    char text[24];
    dmskd_format(text, sizeof text, "%lld", (long long)value);
    add_text(blob, key, text);
}

static void add_float(dmskd_blob *blob, const char *key, double value) {
    char text[32];
    dmskd_format_python_float(value, text, sizeof text);
    add_text(blob, key, text);
}

static void meta_entries(dmskd_blob *blob, const dmskd_update_meta *meta) {  /* in key order, as a parsed blob */
    add_int(blob, "b", meta->base_version);
    add_float(blob, "c", meta->clip);
    add_text(blob, "d", meta->device);
    add_text(blob, "e", dmskd_encoding_name(meta->encoding));
    add_text(blob, "f", meta->fleet);
    add_text(blob, "m", meta->dp_mode);
    add_int(blob, "n", meta->num_examples);
    add_int(blob, "r", meta->round);
    add_text(blob, "t", meta->training);
    add_float(blob, "z", meta->noise_multiplier);
}

dmskd_status dmskd_decode_compact_update(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_update_meta *meta,
                                         dmskd_error *err) {
    dmskd_error_clear(err);
    memset(meta, 0, sizeof *meta);
    memset(blob, 0, sizeof *blob);
    if (len < HEAD_BYTES + 2 || !dmskd_is_compact_update(data, len)) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "payload truncated: shorter than a compact update's header");
    }
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(data + HEAD_BYTES, len - HEAD_BYTES, digest);
    if (memcmp(digest, data + MAGIC_BYTES, CHECKSUM_BYTES) != 0) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD,
                          "checksum mismatch: the compact update was altered or corrupted in transit");
    }
    reader r = {data + HEAD_BYTES, len - HEAD_BYTES, 0, err};
    unsigned bits, dp, count;
    dmskd_status st = byte(&r, "encoding", &bits);
    if (st == DMSKD_OK) st = byte(&r, "dp mode", &dp);
    if (st != DMSKD_OK) return st;
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "compact update of %u bits; expected one of [2, 4, 8]", bits);
    }
    if (dp > 2) return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "compact update names dp mode %u; expected 0..2", dp);
    st = varint(&r, "round", &meta->round);
    if (st == DMSKD_OK) st = varint(&r, "base version", &meta->base_version);
    if (st == DMSKD_OK) st = varint(&r, "examples", &meta->num_examples);
    const uint8_t *floats = NULL, *training = NULL;
    if (st == DMSKD_OK) st = take(&r, 16, "clip and noise multiplier", &floats);
    if (st != DMSKD_OK) return st;
    meta->clip = get_f64(floats);
    meta->noise_multiplier = get_f64(floats + 8);
    if (!isfinite(meta->clip) || !isfinite(meta->noise_multiplier)) {
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "the clip or the noise multiplier is not finite");
    }
    st = take(&r, DIGEST_BYTES, "training digest", &training);
    if (st == DMSKD_OK) st = name(&r, "fleet", meta->fleet);
    if (st == DMSKD_OK) st = name(&r, "device", meta->device);
    if (st == DMSKD_OK) st = byte(&r, "tensor count", &count);
    if (st != DMSKD_OK) return st;
    char what[40];
    dmskd_format(what, sizeof what, "qparams of %u tensors", count);
    const uint8_t *qparams;
    st = take(&r, 8 * (size_t)count, what, &qparams);
    if (st != DMSKD_OK) return st;
    for (size_t i = 0; i < 2 * (size_t)count; i++) {
        if (!isfinite(dmskd_load_f32(qparams + 4 * i))) {
            return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "tensor qparams contains NaN or infinity");
        }
    }
    dmskd_hex(training, DIGEST_BYTES, meta->training);
    dmskd_format(meta->dp_mode, sizeof meta->dp_mode, "%s", DP_CODES[dp]);
    meta->encoding = dmskd_encoding_for_bits(bits);
    blob->ntensors = 2;
    size_t codes = r.len - r.at;
    view(&blob->tensors[0], "codes", DMSKD_U8, "U8", 1, (uint32_t)codes, 0, r.data + r.at, codes);
    view(&blob->tensors[1], "qparams", DMSKD_F32, "F32", 2, count, 2, qparams, 8 * (size_t)count);
    meta_entries(blob, meta);
    return DMSKD_OK;
}
