/* The wire's blobs (docs/wire-protocol.md §3-4, edge/wire.py): canonical safetensors with one-letter
   metadata, float32 or stochastically quantised (sq8/sq4/sq2) tensors; encoders are bit-exact with
   edge/, decoders validate like edge.wire and refuse with the same reason codes. */
#ifndef DMSKD_BLOB_H
#define DMSKD_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/entropy.h"
#include "dmskd/status.h"
#include "dmskd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_PROTOCOL_VERSION "2"
#define DMSKD_MAX_TEXT 64        /* fleet and device ids, NUL included */
#define DMSKD_MAX_META 16        /* metadata entries a blob may carry */
#define DMSKD_MAX_META_VALUE 72  /* one metadata value, NUL included */
#define DMSKD_TRAINING_DIGEST_CHARS 16

/* Tensor encodings of the wire (metadata key "e"). */
typedef enum {
    DMSKD_ENC_FLOAT32_DELTA = 0,  /* "float32-delta" */
    DMSKD_ENC_SQ8_DELTA,          /* "sq8-delta" */
    DMSKD_ENC_SQ4_DELTA,          /* "sq4-delta" */
    DMSKD_ENC_SQ2_DELTA,          /* "sq2-delta" */
    DMSKD_ENC_FLOAT32_WEIGHTS,    /* "float32-weights" */
    DMSKD_ENC_UINT8_AFFINE_DELTA, /* "uint8-affine-delta" (FedCompress baseline: recognised, never accepted) */
    DMSKD_ENC_UNKNOWN
} dmskd_encoding;

/* The wire name of an encoding ("sq8-delta", ...). */
const char *dmskd_encoding_name(dmskd_encoding e);
/* The encoding of a wire name (DMSKD_ENC_UNKNOWN if none). */
dmskd_encoding dmskd_encoding_from_name(const char *name);
/* Bits per value of a stochastic encoding (8, 4, 2), 32 for float32, 0 otherwise. */
unsigned dmskd_encoding_bits(dmskd_encoding e);
/* The update encoding of a plan's update_bits (32, 8, 4, 2); DMSKD_ENC_UNKNOWN otherwise. */
dmskd_encoding dmskd_encoding_for_bits(unsigned bits);

/* An update's metadata (edge.wire.UpdateMeta); clip and noise travel as Python's str(float). */
typedef struct {
    char fleet[DMSKD_MAX_TEXT];
    char device[DMSKD_MAX_TEXT];
    int64_t round;
    int64_t base_version;
    int64_t num_examples;
    double clip;
    double noise_multiplier;
    char dp_mode[16];                               /* "none", "local", "central" */
    dmskd_encoding encoding;
    char training[DMSKD_TRAINING_DIGEST_CHARS + 1]; /* the plan's declaration digest, "" if none */
} dmskd_update_meta;

/* A weights blob's metadata (edge.wire.WeightsMeta). */
typedef struct {
    char fleet[DMSKD_MAX_TEXT];
    int64_t version;
    int64_t round;
    dmskd_encoding encoding;  /* DMSKD_ENC_FLOAT32_WEIGHTS */
} dmskd_weights_meta;

/* A model step's metadata (edge.wire.ModelStepMeta). */
typedef struct {
    char fleet[DMSKD_MAX_TEXT];
    int64_t version;
    int64_t round;
    int64_t base_version;
    dmskd_encoding encoding;  /* sq8/sq4/sq2 */
} dmskd_step_meta;

/* A tensor of a parsed blob: its bytes point into the blob (unaligned: read with dmskd_view_f32). */
typedef struct {
    char name[DMSKD_MAX_NAME];
    dmskd_dtype dtype;        /* 0 for a dtype the wire never carries (see dtype_name) */
    char dtype_name[8];       /* the safetensors dtype as written ("F32", "U8", "F64", ...) */
    uint32_t ndim;
    uint32_t shape[DMSKD_MAX_DIMS];
    const uint8_t *data;
    size_t nbytes;
} dmskd_tensor_view;

/* One metadata entry (key and unescaped value). */
typedef struct {
    char key[16];
    char value[DMSKD_MAX_META_VALUE];  /* "\x01" when the value is longer than this holds */
    const char *raw;                   /* then: its JSON text in the blob (NULL if it has escapes) */
    size_t raw_len;
} dmskd_meta_entry;

/* A parsed, checked blob: its tensors (in name order) and metadata. Lives as long as the blob bytes. */
typedef struct {
    size_t ntensors;
    dmskd_tensor_view tensors[DMSKD_MAX_TENSORS];
    size_t nmeta;
    dmskd_meta_entry meta[DMSKD_MAX_META];
} dmskd_blob;

/* Float i of an F32 view (little-endian, alignment-safe). */
float dmskd_view_f32(const dmskd_tensor_view *t, size_t i);
/* The metadata value of key, or NULL. */
const char *dmskd_blob_meta(const dmskd_blob *blob, const char *key);

/* Bytes the encoded update of delta would take (so the caller can size out). */
size_t dmskd_update_size(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta);

/* Encode a float32 delta as an update blob, byte-identical to edge.wire.encode_update after
   edge.update_quantization.update_tensors; sq encodings draw one uniform u per value from rounding
   (in name order, as numpy's rng.random), float32 ignores it (may be NULL). Writes *out_len bytes. */
dmskd_status dmskd_encode_update(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta,
                                 const dmskd_entropy *rounding, uint8_t *out, size_t cap, size_t *out_len,
                                 dmskd_error *err);

/* Encode float32 weights, byte-identical to edge.wire.encode_weights. */
dmskd_status dmskd_encode_weights(const dmskd_tensor *weights, size_t ntensors, const dmskd_weights_meta *meta,
                                  uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err);

/* Encode the step old -> new (same names and shapes) as edge.model_step.quantised_step + encode_model_step. */
dmskd_status dmskd_encode_model_step(const dmskd_tensor *old_w, const dmskd_tensor *new_w, size_t ntensors,
                                     const dmskd_step_meta *meta, const dmskd_entropy *rounding,
                                     uint8_t *out, size_t cap, size_t *out_len, dmskd_error *err);

/* Parse a blob of kind 'u', 'w' or 's' and check it as edge.wire._decode does (framing, protocol, kind,
   dtypes per encoding, finiteness, checksum). */
dmskd_status dmskd_blob_parse(const uint8_t *data, size_t len, char kind, dmskd_blob *out, dmskd_error *err);

/* Parse an update and its metadata; refuse (wrong_encoding) encodings outside accepted[0..naccepted). */
dmskd_status dmskd_decode_update(const uint8_t *data, size_t len, const dmskd_encoding *accepted, size_t naccepted,
                                 dmskd_blob *blob, dmskd_update_meta *meta, dmskd_error *err);
/* Parse a weights blob and its metadata. */
dmskd_status dmskd_decode_weights(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_weights_meta *meta,
                                  dmskd_error *err);
/* Parse a model step and its metadata (wrong_encoding unless sq8/sq4/sq2). */
dmskd_status dmskd_decode_model_step(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_step_meta *meta,
                                     dmskd_error *err);

/* Refuse (wrong_shape) tensors whose names or shapes differ from the template (check_against_template). */
dmskd_status dmskd_check_template(const dmskd_blob *blob, const dmskd_template *tmpl, dmskd_error *err);

/* The float32 values a parsed update or step carries, laid out flat in template order into out[count]
   (float32 as is; sq codes dequantised as edge.stochastic_quantization.dequantize, refusing like it). */
dmskd_status dmskd_blob_values(const dmskd_blob *blob, dmskd_encoding encoding, const dmskd_template *tmpl,
                               float *out, size_t count, dmskd_error *err);

/* Apply a parsed step to weights[count] (flat, template order) as edge.model_step.apply_step:
   W' = float32(W + float32(zero + code * scale)); leaves weights untouched on any failure. */
dmskd_status dmskd_apply_model_step(const dmskd_blob *step, const dmskd_step_meta *meta, const dmskd_template *tmpl,
                                    float *weights, size_t count, dmskd_error *err);

/* Python's repr of a finite double (shortest round-trip, "1.0", "1e-05", "1e+16") into out[cap]. */
dmskd_status dmskd_format_python_float(double value, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
