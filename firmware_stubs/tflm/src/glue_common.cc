// Model checks, interpreter start-up and status texts shared by the shard and the student.
#include "glue_internal.h"

#include "tensorflow/lite/schema/schema_utils.h"

namespace dmskd_glue {

dmskd_tflm_status checked_model(const uint8_t* data, size_t len, const tflite::Model** out) {
  if (data == nullptr || out == nullptr || len < 8) return DMSKD_TFLM_BAD_ARGUMENT;
  if ((reinterpret_cast<uintptr_t>(data) & 15u) != 0) return DMSKD_TFLM_BAD_ARGUMENT;
  if (!tflite::ModelBufferHasIdentifier(data)) return DMSKD_TFLM_BAD_MODEL;
  const tflite::Model* model = tflite::GetModel(data);
  if (model->version() != TFLITE_SCHEMA_VERSION || model->subgraphs() == nullptr ||
      model->subgraphs()->size() < 1) {
    return DMSKD_TFLM_BAD_MODEL;
  }
  *out = model;
  return DMSKD_TFLM_OK;
}

dmskd_tflm_status check_ops(const tflite::Model* model, const tflite::MicroOpResolver& resolver) {
  const auto* codes = model->operator_codes();
  if (codes == nullptr) return DMSKD_TFLM_OK;
  for (const auto* code : *codes) {
    const tflite::BuiltinOperator op = tflite::GetBuiltinCode(code);
    if (op == tflite::BuiltinOperator_CUSTOM || resolver.FindOp(op) == nullptr) return DMSKD_TFLM_MISSING_OP;
  }
  return DMSKD_TFLM_OK;
}

dmskd_tflm_status start(InterpreterSlot& slot, const tflite::Model* model,
                        const tflite::MicroOpResolver& resolver, uint8_t* arena, size_t arena_len) {
  slot.reset();
  if (arena == nullptr || arena_len == 0) return DMSKD_TFLM_BAD_ARGUMENT;
  const dmskd_tflm_status ops = check_ops(model, resolver);
  if (ops != DMSKD_TFLM_OK) return ops;
  tflite::MicroInterpreter* interp = slot.emplace(model, resolver, arena, arena_len);
  if (interp->initialization_status() != kTfLiteOk) {
    slot.reset();
    return DMSKD_TFLM_BAD_MODEL;
  }
  if (interp->AllocateTensors() != kTfLiteOk) {
    slot.reset();
    return DMSKD_TFLM_ARENA_TOO_SMALL;
  }
  return DMSKD_TFLM_OK;
}

size_t element_count(const TfLiteTensor* t) {
  size_t n = 1;
  for (int i = 0; i < t->dims->size; ++i) n *= static_cast<size_t>(t->dims->data[i]);
  return n;
}

}  // namespace dmskd_glue

extern "C" const char* dmskd_tflm_status_text(dmskd_tflm_status status) {
  switch (status) {
    case DMSKD_TFLM_OK: return "ok";
    case DMSKD_TFLM_BAD_ARGUMENT:
      return "bad argument: a NULL pointer, an unaligned model (needs 16 bytes) or a length that does not match the model";
    case DMSKD_TFLM_BAD_MODEL:
      return "not a TFLite model of this schema version: re-export it with `python -m export`";
    case DMSKD_TFLM_MISSING_OP:
      return "the model uses an operator the compiled-in resolver lacks: rebuild with the DMSKD_DEVICE_CONFIG exported with this model";
    case DMSKD_TFLM_ARENA_TOO_SMALL:
      return "tensor allocation failed: give the arena the configuration's *_ARENA_BYTES (16-byte aligned)";
    case DMSKD_TFLM_BAD_SIGNATURE:
      return "the model's inputs or outputs are not what the glue expects: export the shard with the mcu target and the train step with export.student_train_step";
    case DMSKD_TFLM_INVOKE_FAILED: return "a kernel failed while running the model (see the DebugLog output)";
    case DMSKD_TFLM_NOT_INITIALISED: return "not initialised: call dmskd_tflm_shard_init / dmskd_tflm_student_init (and bind a weight buffer) first";
    case DMSKD_TFLM_NOT_FINITE:
      return "the train step produced NaN or inf: weights kept; lower lr or check the inputs";
  }
  return "unknown dmskd_tflm_status";
}
