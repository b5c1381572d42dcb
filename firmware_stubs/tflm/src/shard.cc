// The shard: a full-int8, batch-1 teacher prefix run from its C array with the generated resolver.
#include <math.h>
#include <string.h>

#include "dmskd_tflm_resolvers.h"
#include "glue_internal.h"

namespace {

DMSKD_SHARD_RESOLVER shard_resolver;
bool shard_ops_registered = false;
dmskd_glue::InterpreterSlot shard_slot;

int8_t quantise(float x, float scale, int32_t zero_point) {
  const float q = roundf(x / scale) + static_cast<float>(zero_point);
  return static_cast<int8_t>(q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q));
}

dmskd_tflm_status check_io(tflite::MicroInterpreter* interp, size_t x_len, size_t classes) {
  if (interp == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  const TfLiteTensor* in = interp->input(0);
  const TfLiteTensor* out = interp->output(0);
  if (dmskd_glue::element_count(in) != x_len || dmskd_glue::element_count(out) != classes) {
    return DMSKD_TFLM_BAD_ARGUMENT;
  }
  return DMSKD_TFLM_OK;
}

}  // namespace

extern "C" dmskd_tflm_status dmskd_tflm_shard_init(const uint8_t* model, size_t model_len, uint8_t* arena,
                                                   size_t arena_len) {
  const tflite::Model* m = nullptr;
  dmskd_tflm_status st = dmskd_glue::checked_model(model, model_len, &m);
  if (st != DMSKD_TFLM_OK) return st;
  if (!shard_ops_registered) {
    if (DMSKD_SHARD_REGISTER_OPS(shard_resolver) != kTfLiteOk) return DMSKD_TFLM_MISSING_OP;
    shard_ops_registered = true;
  }
  st = dmskd_glue::start(shard_slot, m, shard_resolver, arena, arena_len);
  if (st != DMSKD_TFLM_OK) return st;
  tflite::MicroInterpreter* interp = shard_slot.get();
  if (interp->inputs_size() != 1 || interp->outputs_size() != 1 || interp->input(0)->type != kTfLiteInt8 ||
      interp->output(0)->type != kTfLiteInt8) {
    shard_slot.reset();
    return DMSKD_TFLM_BAD_SIGNATURE;
  }
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_shard_get_info(dmskd_tflm_shard_info* info) {
  tflite::MicroInterpreter* interp = shard_slot.get();
  if (interp == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  if (info == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  const TfLiteTensor* in = interp->input(0);
  const TfLiteTensor* out = interp->output(0);
  info->input_len = dmskd_glue::element_count(in);
  info->num_classes = dmskd_glue::element_count(out);
  info->input_scale = in->params.scale;
  info->input_zero_point = in->params.zero_point;
  info->output_scale = out->params.scale;
  info->output_zero_point = out->params.zero_point;
  info->arena_used_bytes = interp->arena_used_bytes();
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_shard_run_int8(const int8_t* x, size_t x_len, int8_t* logits_q,
                                                       size_t num_classes) {
  tflite::MicroInterpreter* interp = shard_slot.get();
  const dmskd_tflm_status st = check_io(interp, x_len, num_classes);
  if (st != DMSKD_TFLM_OK) return st;
  if (x == nullptr || logits_q == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  memcpy(interp->input(0)->data.int8, x, x_len);
  if (interp->Invoke() != kTfLiteOk) return DMSKD_TFLM_INVOKE_FAILED;
  memcpy(logits_q, interp->output(0)->data.int8, num_classes);
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_shard_run_float(const float* x, size_t x_len, float* logits,
                                                        size_t num_classes) {
  tflite::MicroInterpreter* interp = shard_slot.get();
  const dmskd_tflm_status st = check_io(interp, x_len, num_classes);
  if (st != DMSKD_TFLM_OK) return st;
  if (x == nullptr || logits == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  TfLiteTensor* in = interp->input(0);
  for (size_t i = 0; i < x_len; ++i) in->data.int8[i] = quantise(x[i], in->params.scale, in->params.zero_point);
  if (interp->Invoke() != kTfLiteOk) return DMSKD_TFLM_INVOKE_FAILED;
  const TfLiteTensor* out = interp->output(0);
  for (size_t i = 0; i < num_classes; ++i) {
    logits[i] = out->params.scale * static_cast<float>(out->data.int8[i] - out->params.zero_point);
  }
  return DMSKD_TFLM_OK;
}
