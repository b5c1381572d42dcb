/* TFLite-Micro glue: the C API the firmware (port/, device/) calls to run its shard and train
 * its student. One shard and one student per device; all memory is the caller's (arenas, weight
 * buffer) or static; nothing is allocated after init.
 *
 * The op resolvers are compiled in from the device configuration that `python -m export` writes
 * (DMSKD_DEVICE_CONFIG: <shard>_op_resolver.h and student_train_op_resolver.h); the model arrays and
 * arena sizes come from the same configuration (dmskd_device_config.h), so a call looks like:
 *
 *   alignas(16) static uint8_t shard_arena[DMSKD_SHARD_ARENA_BYTES];
 *   dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena, sizeof shard_arena);
 *
 * The student's train step is a functional graph (export/student_train_step.py):
 *   train(weights..., x, y, teacher_logits, alpha, tau) -> (loss, gradients...)
 * with no resource variables, so the weights live in the caller's float buffer; the glue applies
 * w <- w - lr * g to it (the read-back is reading that buffer). Weight order is that of export/student.py:
 * dense_0/kernel, dense_0/bias, dense_1/kernel, ... each row-major, packed back to back.
 */
#ifndef DMSKD_TFLM_GLUE_H_
#define DMSKD_TFLM_GLUE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  DMSKD_TFLM_OK = 0,
  DMSKD_TFLM_BAD_ARGUMENT,      /* a NULL pointer or a length that does not match the model */
  DMSKD_TFLM_BAD_MODEL,         /* not a TFLite flatbuffer, or an unsupported schema version */
  DMSKD_TFLM_MISSING_OP,        /* an operator not in the compiled-in resolver: re-export the config */
  DMSKD_TFLM_ARENA_TOO_SMALL,   /* AllocateTensors failed: give the arena the config's *_ARENA_BYTES */
  DMSKD_TFLM_BAD_SIGNATURE,     /* the model's inputs/outputs are not what this API expects */
  DMSKD_TFLM_INVOKE_FAILED,     /* a kernel failed while running */
  DMSKD_TFLM_NOT_INITIALISED,   /* call dmskd_tflm_shard_init / dmskd_tflm_student_init first */
  DMSKD_TFLM_NOT_FINITE         /* the train step produced a NaN or inf (weights left unchanged) */
} dmskd_tflm_status;

/* A one-line English description of a status naming the fix (static storage). */
const char *dmskd_tflm_status_text(dmskd_tflm_status status);

/* ---- the shard (full-int8 teacher prefix, batch 1, int8 in, int8 exit logits out) ---- */

typedef struct {
  size_t input_len;          /* elements of the (batch-1) input tensor */
  size_t num_classes;        /* elements of the exit-logit output */
  float input_scale;         /* real = scale * (q - zero_point) */
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
  size_t arena_used_bytes;   /* arena the interpreter really used after allocation */
} dmskd_tflm_shard_info;

/* Load the shard from its C array into the interpreter (model must stay valid; arena 16-aligned). */
dmskd_tflm_status dmskd_tflm_shard_init(const uint8_t *model, size_t model_len,
                                        uint8_t *arena, size_t arena_len);

/* Shapes and quantisation of the loaded shard. */
dmskd_tflm_status dmskd_tflm_shard_get_info(dmskd_tflm_shard_info *info);

/* Run the shard on an already-quantised input; raw int8 exit logits (the bit-exact path). */
dmskd_tflm_status dmskd_tflm_shard_run_int8(const int8_t *x, size_t x_len,
                                            int8_t *logits_q, size_t num_classes);

/* Run the shard on a float input (quantised here with the input scale, round-half-away, clamped);
 * exit logits dequantised to float: what the student's train step takes as teacher_logits. */
dmskd_tflm_status dmskd_tflm_shard_run_float(const float *x, size_t x_len,
                                             float *logits, size_t num_classes);

/* ---- the student's train step (functional: weights in, loss and gradients out, SGD in the glue) ---- */

typedef struct {
  size_t batch;              /* fixed batch B of the train step */
  size_t input_dim;          /* D */
  size_t num_classes;        /* C */
  size_t num_tensors;        /* weight tensors (2 per dense layer) */
  size_t num_weights;        /* floats in the packed weight buffer */
  size_t arena_used_bytes;
} dmskd_tflm_student_info;

/* Load the train-step model; `weights` (num_weights floats, the caller's, kept for the device's
 * lifetime, packed order) is where the device puts the global model it fetched, or NULL to bind a
 * buffer later (dmskd_tflm_student_bind). The functional graph carries no weights of its own:
 * init_from_model must be 0 unless the configuration defines DMSKD_STUDENT_INITIAL_WEIGHTS
 * (python -m export writes none: devices train only the global model). */
dmskd_tflm_status dmskd_tflm_student_init(const uint8_t *model, size_t model_len,
                                          uint8_t *arena, size_t arena_len,
                                          float *weights, size_t num_weights, int init_from_model);

/* Train in the caller's `weights` from now on (num_weights floats, kept until the next bind): weight
 * tensor i at offsets[i] (NULL: the packed order), so a device trains in its own buffer, in its own
 * tensor order, with no copy. BAD_ARGUMENT unless the tensors tile the buffer exactly. */
dmskd_tflm_status dmskd_tflm_student_bind(float *weights, size_t num_weights, const size_t *offsets);

/* Shapes of the loaded train step. */
dmskd_tflm_status dmskd_tflm_student_get_info(dmskd_tflm_student_info *info);

/* Name ("dense_0/kernel"), offset into the bound buffer (the packed order until a bind with offsets)
 * and element count of weight tensor i. */
dmskd_tflm_status dmskd_tflm_student_tensor(size_t i, const char **name, size_t *offset, size_t *count);

/* One SGD step on exactly one batch: x[B*D], y[B*C] one-hot (all-zero rows for unlabelled
 * samples), teacher_logits[B*C]; the loss is that before the update. On success the weight buffer
 * holds the updated weights; on any failure it is left as it was. */
dmskd_tflm_status dmskd_tflm_student_train_step(const float *x, const float *y,
                                                const float *teacher_logits,
                                                float alpha, float tau, float lr, float *loss);

/* The weight buffer given to init or bind (read-only view: the read-back for an update). */
const float *dmskd_tflm_student_weights(void);

#ifdef __cplusplus
}
#endif

#endif /* DMSKD_TFLM_GLUE_H_ */
