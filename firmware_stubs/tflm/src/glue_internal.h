// Helpers shared by the shard and student halves of the glue (not part of the public API).
#ifndef DMSKD_TFLM_GLUE_INTERNAL_H_
#define DMSKD_TFLM_GLUE_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include <new>

#include "dmskd/tflm_glue.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace dmskd_glue {

// An interpreter constructed in static storage (placement new: no heap), rebuilt on each init.
class InterpreterSlot {
 public:
  tflite::MicroInterpreter* get() { return live_; }
  // Destroy any previous interpreter and build one over (model, resolver, arena).
  tflite::MicroInterpreter* emplace(const tflite::Model* model, const tflite::MicroOpResolver& resolver,
                                    uint8_t* arena, size_t arena_len) {
    reset();
    live_ = new (storage_) tflite::MicroInterpreter(model, resolver, arena, arena_len);
    return live_;
  }
  void reset() {
    if (live_ != nullptr) live_->~MicroInterpreter();
    live_ = nullptr;
  }

 private:
  alignas(tflite::MicroInterpreter) unsigned char storage_[sizeof(tflite::MicroInterpreter)];
  tflite::MicroInterpreter* live_ = nullptr;
};

// The model at `data`, checked: flatbuffer identifier, schema version, one subgraph to run.
dmskd_tflm_status checked_model(const uint8_t* data, size_t len, const tflite::Model** out);

// DMSKD_TFLM_MISSING_OP unless the resolver has a kernel for every operator the model declares.
dmskd_tflm_status check_ops(const tflite::Model* model, const tflite::MicroOpResolver& resolver);

// Build the interpreter and allocate its tensors (ARENA_TOO_SMALL when allocation fails).
dmskd_tflm_status start(InterpreterSlot& slot, const tflite::Model* model,
                        const tflite::MicroOpResolver& resolver, uint8_t* arena, size_t arena_len);

// Elements of a tensor (product of its dims; 1 for a scalar).
size_t element_count(const TfLiteTensor* t);

}  // namespace dmskd_glue

#endif  // DMSKD_TFLM_GLUE_INTERNAL_H_
