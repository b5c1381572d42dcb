/* What a parsed blob means for the student: the template check (edge.wire.check_against_template),
   dequantisation (edge.stochastic_quantization.dequantize) and the model step's apply rule
   (edge.model_step.apply_step), with the Python side's refusals and messages. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "blob_internal.h"
#include "quantize.h"
#include "dmskd/format.h"

/* A shape as Python prints a tuple: (), (4,), (6, 4). */
static void shape_text(char *out, size_t cap, uint32_t ndim, const uint32_t *shape) {
    size_t n = (size_t)dmskd_format(out, cap, "(");
    for (uint32_t d = 0; d < ndim && n < cap; d++) {
        n += (size_t)dmskd_format(out + n, cap - n, d ? ", %u" : "%u", (unsigned)shape[d]);
    }
    if (n < cap) dmskd_format(out + n, cap - n, ndim == 1 ? ",)" : ")");
}

static const dmskd_tensor_view *find_view(const dmskd_blob *blob, const char *name) {
    for (size_t i = 0; i < blob->ntensors; i++) {
        if (strcmp(blob->tensors[i].name, name) == 0) return &blob->tensors[i];
    }
    return NULL;
}

static int in_template(const dmskd_template *tmpl, const char *name) {
    for (size_t i = 0; i < tmpl->count; i++) {
        if (strcmp(tmpl->tensors[i].name, name) == 0) return 1;
    }
    return 0;
}

/* Append 'name' to a Python-style list text. */
static void list_add(char *out, size_t cap, size_t *n, const char *name) {
    if (*n < cap) *n += (size_t)dmskd_format(out + *n, cap - *n, "%s'%s'", out[1] ? ", " : "", name);
}

dmskd_status dmskd_check_template(const dmskd_blob *blob, const dmskd_template *tmpl, dmskd_error *err) {
    char missing[96] = "[", extra[96] = "[";
    size_t nm = 1, ne = 1;
    for (size_t i = 0; i < tmpl->count; i++) {
        if (find_view(blob, tmpl->tensors[i].name) == NULL) list_add(missing, sizeof missing, &nm, tmpl->tensors[i].name);
    }
    for (size_t i = 0; i < blob->ntensors; i++) {
        if (!in_template(tmpl, blob->tensors[i].name)) list_add(extra, sizeof extra, &ne, blob->tensors[i].name);
    }
    if (nm > 1 || ne > 1) {
        return dmskd_fail(err, DMSKD_WRONG_SHAPE, "tensor names differ from the student: missing %s], unexpected %s]",
                          missing, extra);
    }
    for (size_t i = 0; i < tmpl->count; i++) {
        const dmskd_tensor_spec *s = &tmpl->tensors[i];
        const dmskd_tensor_view *t = find_view(blob, s->name);
        if (t->ndim != s->ndim || memcmp(t->shape, s->shape, s->ndim * sizeof s->shape[0]) != 0) {
            char got[64], want[64];
            shape_text(got, sizeof got, t->ndim, t->shape);
            shape_text(want, sizeof want, s->ndim, s->shape);
            return dmskd_fail(err, DMSKD_WRONG_SHAPE, "tensor %s has shape %s, expected %s", s->name, got, want);
        }
    }
    return DMSKD_OK;
}

/* Check a quantised blob's codes and qparams against the template; *bits_out, codes and qparams views. */
static dmskd_status check_codes(const dmskd_blob *blob, unsigned bits, const dmskd_template *tmpl,
                                const dmskd_tensor_view **codes, const dmskd_tensor_view **qparams, dmskd_error *err) {
    *codes = find_view(blob, "codes");
    *qparams = find_view(blob, "qparams");
    if (blob->ntensors != 2 || *codes == NULL || *qparams == NULL) {
        char got[96] = "[";
        size_t n = 1;
        for (size_t i = 0; i < blob->ntensors; i++) list_add(got, sizeof got, &n, blob->tensors[i].name);
        return dmskd_fail(err, DMSKD_WRONG_SHAPE, "a %u-bit update carries exactly the tensors ['codes', 'qparams'], "
                          "got %s]", bits, got);
    }
    const dmskd_tensor_view *c = *codes, *q = *qparams;
    if (c->dtype != DMSKD_U8 || c->ndim != 1) {
        char shape[64];
        shape_text(shape, sizeof shape, c->ndim, c->shape);
        return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "codes must be a flat uint8 tensor, got %s of shape %s",
                          c->dtype == DMSKD_U8 ? "uint8" : "float32", shape);
    }
    size_t params = dmskd_template_elements(tmpl);
    size_t expected = dmskd_sq_packed_length(params, bits);
    if (c->nbytes != expected) {
        return dmskd_fail(err, DMSKD_WRONG_SHAPE, "%zu values need %zu bytes of codes at %u bits, got %zu (wrong bit "
                          "width, or another student)", params, expected, bits, c->nbytes);
    }
    if (q->dtype != DMSKD_F32 || q->ndim != 2 || q->shape[0] != tmpl->count || q->shape[1] != 2) {
        char shape[64];
        shape_text(shape, sizeof shape, q->ndim, q->shape);
        return dmskd_fail(err, DMSKD_WRONG_SHAPE, "qparams must be float32 of shape (%zu, 2), got %s %s", tmpl->count,
                          q->dtype == DMSKD_F32 ? "float32" : "uint8", shape);
    }
    for (size_t i = 0; i < tmpl->count; i++) {
        float scale = dmskd_view_f32(q, 2 * i), zero = dmskd_view_f32(q, 2 * i + 1);
        if (!(isfinite(scale) && isfinite(zero) && scale > 0)) {
            return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "every scale must be positive and finite and every zero "
                              "point finite");
        }
    }
    for (size_t k = params; k < expected * (8 / bits); k++) {
        if (dmskd_sq_code(c->data, k, bits) != 0) {
            return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "the padding bits after the last of %zu codes are not "
                              "zero", params);
        }
    }
    return DMSKD_OK;
}

/* The dequantised value k (of tensor i): float32(zero + code * scale) in float64. */
static float dequantised(const dmskd_tensor_view *codes, const dmskd_tensor_view *q, size_t i, size_t k,
                         unsigned bits) {
    double scale = (double)dmskd_view_f32(q, 2 * i), zero = (double)dmskd_view_f32(q, 2 * i + 1);
    return (float)(zero + (double)dmskd_sq_code(codes->data, k, bits) * scale);
}

dmskd_status dmskd_blob_values(const dmskd_blob *blob, dmskd_encoding encoding, const dmskd_template *tmpl,
                               float *out, size_t count, dmskd_error *err) {
    size_t params = dmskd_template_elements(tmpl);
    if (count < params) {
        return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "the student has %zu values, the buffer holds %zu", params,
                          count);
    }
    unsigned bits = dmskd_encoding_bits(encoding);
    if (bits == 32) {
        dmskd_status st = dmskd_check_template(blob, tmpl, err);
        if (st != DMSKD_OK) return st;
        size_t k = 0;
        for (size_t i = 0; i < tmpl->count; i++) {
            const dmskd_tensor_view *t = find_view(blob, tmpl->tensors[i].name);
            for (size_t j = 0; j < t->nbytes / 4; j++) out[k++] = dmskd_view_f32(t, j);
        }
        return DMSKD_OK;
    }
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "encoding %s carries no values the firmware reads",
                          dmskd_encoding_name(encoding));
    }
    const dmskd_tensor_view *codes, *q;
    dmskd_status st = check_codes(blob, bits, tmpl, &codes, &q, err);
    if (st != DMSKD_OK) return st;
    size_t k = 0;
    for (size_t i = 0; i < tmpl->count; i++) {
        size_t n = dmskd_shape_elements(tmpl->tensors[i].ndim, tmpl->tensors[i].shape);
        for (size_t j = 0; j < n; j++, k++) {
            out[k] = dequantised(codes, q, i, k, bits);
            if (!isfinite(out[k])) {
                return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "tensor %s dequantises beyond float32's range",
                                  tmpl->tensors[i].name);
            }
        }
    }
    return DMSKD_OK;
}

dmskd_status dmskd_apply_model_step(const dmskd_blob *step, const dmskd_step_meta *meta, const dmskd_template *tmpl,
                                    float *weights, size_t count, dmskd_error *err) {
    unsigned bits = dmskd_encoding_bits(meta->encoding);
    size_t params = dmskd_template_elements(tmpl);
    if (bits != 8 && bits != 4 && bits != 2) {
        return dmskd_fail(err, DMSKD_WRONG_ENCODING, "model step encoding '%s'; expected one of ['sq8-delta', "
                          "'sq4-delta', 'sq2-delta']", dmskd_encoding_name(meta->encoding));
    }
    if (count < params) {
        return dmskd_fail(err, DMSKD_BUFFER_TOO_SMALL, "the student has %zu values, the buffer holds %zu", params,
                          count);
    }
    const dmskd_tensor_view *codes, *q;
    dmskd_status st = check_codes(step, bits, tmpl, &codes, &q, err);
    if (st != DMSKD_OK) return st;
    for (int pass = 0; pass < 2; pass++) {  /* pass 0 checks everything, pass 1 writes: all or nothing */
        size_t k = 0;
        char bad[96] = "[";
        size_t nb = 1;
        for (size_t i = 0; i < tmpl->count; i++) {
            size_t n = dmskd_shape_elements(tmpl->tensors[i].ndim, tmpl->tensors[i].shape);
            int tensor_bad = 0;
            for (size_t j = 0; j < n; j++, k++) {
                float d = dequantised(codes, q, i, k, bits);
                if (!isfinite(d)) {
                    return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "tensor %s dequantises beyond float32's range",
                                      tmpl->tensors[i].name);
                }
                volatile float sum = weights[k] + d;  /* one float32 addition, never fused */
                if (pass == 1) weights[k] = sum;
                else if (!isfinite(sum)) tensor_bad = 1;
            }
            if (tensor_bad) list_add(bad, sizeof bad, &nb, tmpl->tensors[i].name);
        }
        if (pass == 0 && nb > 1) {
            return dmskd_fail(err, DMSKD_MALFORMED_PAYLOAD, "the step takes tensors %s] beyond float32's range", bad);
        }
    }
    return DMSKD_OK;
}
