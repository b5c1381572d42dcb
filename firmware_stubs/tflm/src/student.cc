// The student's functional train step: weights fed in from the caller's buffer, the graph returns
// the loss and the gradients, the glue applies w <- w - lr * g to the buffer (export/student_train_step.py).
// Built with -ffp-contract=off: lr * g and the difference are rounded separately, as TF's assign_sub.
#include <math.h>
#include <string.h>

#include "dmskd_tflm_resolvers.h"
#include "glue_internal.h"

namespace {

constexpr size_t kMaxTensors = 16;  // 8 dense layers
constexpr size_t kNameLen = 32;

enum Hyper { kX, kY, kTeacher, kAlpha, kTau, kNumHyper };
const char* const kHyperNames[kNumHyper] = {"x", "y", "teacher_logits", "alpha", "tau"};

struct WeightTensor {
  char name[kNameLen];  // dense_0/kernel
  int input;            // subgraph input index of its current value
  int output;           // subgraph output index of its gradient
  size_t offset;        // into the caller's packed buffer
  size_t count;
};

struct Student {
  WeightTensor tensors[kMaxTensors];
  size_t num_tensors = 0;
  int hyper[kNumHyper];
  int loss_output = -1;
  float* weights = nullptr;
  size_t num_weights = 0;
};

DMSKD_STUDENT_RESOLVER student_resolver;
bool student_ops_registered = false;
dmskd_glue::InterpreterSlot student_slot;
Student student;

// "dense_<k/2>/kernel" or "dense_<k/2>/bias" into out (kNameLen bytes; no printf on the MCU).
void write_name(char* out, size_t k) {
  char digits[4];
  size_t n = 0, layer = k / 2;
  do {
    digits[n++] = static_cast<char>('0' + layer % 10);
    layer /= 10;
  } while (layer > 0 && n < sizeof digits);
  size_t len = 0;
  for (const char* p = "dense_"; *p; ++p) out[len++] = *p;
  while (n > 0) out[len++] = digits[--n];
  for (const char* p = k % 2 == 0 ? "/kernel" : "/bias"; *p; ++p) out[len++] = *p;
  out[len] = '\0';
}

bool starts_with(const char* s, const char* prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

// "dense_<i>__kernel" -> (i, 0), "dense_<i>__bias" -> (i, 1); false for anything else.
bool weight_key(const char* key, int* layer, int* kind) {
  if (!starts_with(key, "dense_")) return false;
  const char* p = key + 6;
  int n = 0;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') n = n * 10 + (*p++ - '0');
  if (strcmp(p, "__kernel") == 0) *kind = 0;
  else if (strcmp(p, "__bias") == 0) *kind = 1;
  else return false;
  *layer = n;
  return true;
}

// Subgraph position of the tensor index among the subgraph's inputs (or outputs), -1 if absent.
int position(const flatbuffers::Vector<int32_t>* list, uint32_t tensor) {
  for (uint32_t i = 0; i < list->size(); ++i) {
    if (static_cast<uint32_t>(list->Get(i)) == tensor) return static_cast<int>(i);
  }
  return -1;
}

// Map the "train" signature's names to subgraph positions and lay the weights out in buffer order.
dmskd_tflm_status map_signature(const tflite::Model* model, Student* s) {
  const auto* sigs = model->signature_defs();
  const tflite::SignatureDef* sig = nullptr;
  for (uint32_t i = 0; sigs != nullptr && i < sigs->size(); ++i) {
    const auto* key = sigs->Get(i)->signature_key();
    if (key != nullptr && strcmp(key->c_str(), "train") == 0) sig = sigs->Get(i);
  }
  if (sig == nullptr || sig->subgraph_index() != 0 || sig->inputs() == nullptr || sig->outputs() == nullptr) {
    return DMSKD_TFLM_BAD_SIGNATURE;
  }
  const tflite::SubGraph* sub = model->subgraphs()->Get(0);
  s->num_tensors = 0;
  s->loss_output = -1;
  for (int& h : s->hyper) h = -1;
  int slot_of[kMaxTensors];  // (layer*2 + kind) -> subgraph input position
  for (int& v : slot_of) v = -1;
  size_t weight_inputs = 0;
  for (const auto* in : *sig->inputs()) {
    const char* name = in->name()->c_str();
    const int pos = position(sub->inputs(), in->tensor_index());
    if (pos < 0) return DMSKD_TFLM_BAD_SIGNATURE;
    int layer = 0, kind = 0;
    bool known = false;
    for (int h = 0; h < kNumHyper; ++h) {
      if (strcmp(name, kHyperNames[h]) == 0) s->hyper[h] = pos, known = true;
    }
    if (known) continue;
    if (!weight_key(name, &layer, &kind) || layer * 2 + kind >= static_cast<int>(kMaxTensors)) {
      return DMSKD_TFLM_BAD_SIGNATURE;
    }
    slot_of[layer * 2 + kind] = pos;
    ++weight_inputs;
  }
  for (int h = 0; h < kNumHyper; ++h) {
    if (s->hyper[h] < 0) return DMSKD_TFLM_BAD_SIGNATURE;
  }
  for (size_t k = 0; k < kMaxTensors && slot_of[k] >= 0; ++k) {
    WeightTensor& t = s->tensors[s->num_tensors++];
    t.input = slot_of[k];
    t.output = -1;
    write_name(t.name, k);
  }
  if (s->num_tensors == 0 || s->num_tensors % 2 != 0 || s->num_tensors != weight_inputs) {
    return DMSKD_TFLM_BAD_SIGNATURE;  // a layer without its kernel or bias, or a gap in the layers
  }
  for (const auto* out : *sig->outputs()) {
    const char* name = out->name()->c_str();
    const int pos = position(sub->outputs(), out->tensor_index());
    int layer = 0, kind = 0;
    if (pos < 0) return DMSKD_TFLM_BAD_SIGNATURE;
    if (strcmp(name, "loss") == 0) {
      s->loss_output = pos;
    } else if (starts_with(name, "grad_") && weight_key(name + 5, &layer, &kind) &&
               static_cast<size_t>(layer * 2 + kind) < s->num_tensors) {
      s->tensors[layer * 2 + kind].output = pos;
    } else {
      return DMSKD_TFLM_BAD_SIGNATURE;
    }
  }
  if (s->loss_output < 0) return DMSKD_TFLM_BAD_SIGNATURE;
  for (size_t k = 0; k < s->num_tensors; ++k) {
    if (s->tensors[k].output < 0) return DMSKD_TFLM_BAD_SIGNATURE;
  }
  return DMSKD_TFLM_OK;
}

// Sizes from the allocated tensors; every input and output float32, gradients shaped as their weights.
dmskd_tflm_status lay_out(tflite::MicroInterpreter* interp, Student* s) {
  size_t offset = 0;
  for (size_t k = 0; k < s->num_tensors; ++k) {
    WeightTensor& t = s->tensors[k];
    const TfLiteTensor* in = interp->input(t.input);
    const TfLiteTensor* out = interp->output(t.output);
    t.count = dmskd_glue::element_count(in);
    if (in->type != kTfLiteFloat32 || out->type != kTfLiteFloat32 || dmskd_glue::element_count(out) != t.count) {
      return DMSKD_TFLM_BAD_SIGNATURE;
    }
    t.offset = offset;
    offset += t.count;
  }
  for (int h = 0; h < kNumHyper; ++h) {
    if (interp->input(s->hyper[h])->type != kTfLiteFloat32) return DMSKD_TFLM_BAD_SIGNATURE;
  }
  s->num_weights = offset;
  return DMSKD_TFLM_OK;
}

}  // namespace

extern "C" dmskd_tflm_status dmskd_tflm_student_init(const uint8_t* model, size_t model_len, uint8_t* arena,
                                                     size_t arena_len, float* weights, size_t num_weights,
                                                     int init_from_model) {
  student.weights = nullptr;
  const tflite::Model* m = nullptr;
  dmskd_tflm_status st = dmskd_glue::checked_model(model, model_len, &m);
  if (st != DMSKD_TFLM_OK) return st;
  if (weights == nullptr && init_from_model) return DMSKD_TFLM_BAD_ARGUMENT;  // nowhere to put them
  if (!student_ops_registered) {
    if (DMSKD_STUDENT_REGISTER_OPS(student_resolver) != kTfLiteOk) return DMSKD_TFLM_MISSING_OP;
    student_ops_registered = true;
  }
  st = map_signature(m, &student);
  if (st == DMSKD_TFLM_OK) st = dmskd_glue::start(student_slot, m, student_resolver, arena, arena_len);
  if (st == DMSKD_TFLM_OK) st = lay_out(student_slot.get(), &student);
  if (st == DMSKD_TFLM_OK && num_weights != student.num_weights) st = DMSKD_TFLM_BAD_ARGUMENT;
#ifdef DMSKD_STUDENT_INITIAL_WEIGHTS
  if (st == DMSKD_TFLM_OK && init_from_model) {
    if (DMSKD_STUDENT_INITIAL_WEIGHTS_LEN != num_weights) st = DMSKD_TFLM_BAD_ARGUMENT;
    else memcpy(weights, DMSKD_STUDENT_INITIAL_WEIGHTS, num_weights * sizeof(float));
  }
#else
  if (st == DMSKD_TFLM_OK && init_from_model) st = DMSKD_TFLM_BAD_ARGUMENT;  // no initial weights configured
#endif
  if (st != DMSKD_TFLM_OK) {
    student_slot.reset();
    return st;
  }
  student.weights = weights;  // nullptr: unbound until dmskd_tflm_student_bind
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_student_bind(float* weights, size_t num_weights, const size_t* offsets) {
  if (student_slot.get() == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  if (weights == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  size_t at[kMaxTensors], used = 0;
  for (size_t k = 0; k < student.num_tensors; ++k) {
    const size_t count = student.tensors[k].count;
    at[k] = offsets == nullptr ? used : offsets[k];
    if (at[k] > num_weights || count > num_weights - at[k]) return DMSKD_TFLM_BAD_ARGUMENT;
    for (size_t j = 0; j < k; ++j) {  // no two tensors share a float
      if (at[k] < at[j] + student.tensors[j].count && at[j] < at[k] + count) return DMSKD_TFLM_BAD_ARGUMENT;
    }
    used += count;
  }
  if (used != num_weights) return DMSKD_TFLM_BAD_ARGUMENT;  // every float of the buffer is a weight
  for (size_t k = 0; k < student.num_tensors; ++k) student.tensors[k].offset = at[k];
  student.weights = weights;
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_student_get_info(dmskd_tflm_student_info* info) {
  tflite::MicroInterpreter* interp = student_slot.get();
  if (interp == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  if (info == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  const TfLiteTensor* x = interp->input(student.hyper[kX]);
  const TfLiteTensor* y = interp->input(student.hyper[kY]);
  info->batch = static_cast<size_t>(x->dims->data[0]);
  info->input_dim = dmskd_glue::element_count(x) / info->batch;
  info->num_classes = dmskd_glue::element_count(y) / info->batch;
  info->num_tensors = student.num_tensors;
  info->num_weights = student.num_weights;
  info->arena_used_bytes = interp->arena_used_bytes();
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_student_tensor(size_t i, const char** name, size_t* offset,
                                                       size_t* count) {
  if (student_slot.get() == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  if (i >= student.num_tensors) return DMSKD_TFLM_BAD_ARGUMENT;
  if (name != nullptr) *name = student.tensors[i].name;
  if (offset != nullptr) *offset = student.tensors[i].offset;
  if (count != nullptr) *count = student.tensors[i].count;
  return DMSKD_TFLM_OK;
}

extern "C" dmskd_tflm_status dmskd_tflm_student_train_step(const float* x, const float* y,
                                                           const float* teacher_logits, float alpha, float tau,
                                                           float lr, float* loss) {
  tflite::MicroInterpreter* interp = student_slot.get();
  if (interp == nullptr || student.weights == nullptr) return DMSKD_TFLM_NOT_INITIALISED;
  if (x == nullptr || y == nullptr || teacher_logits == nullptr) return DMSKD_TFLM_BAD_ARGUMENT;
  const float* batch[3] = {x, y, teacher_logits};
  for (int h = kX; h <= kTeacher; ++h) {
    TfLiteTensor* t = interp->input(student.hyper[h]);
    memcpy(t->data.f, batch[h], dmskd_glue::element_count(t) * sizeof(float));
  }
  interp->input(student.hyper[kAlpha])->data.f[0] = alpha;
  interp->input(student.hyper[kTau])->data.f[0] = tau;
  for (size_t k = 0; k < student.num_tensors; ++k) {
    const WeightTensor& w = student.tensors[k];
    memcpy(interp->input(w.input)->data.f, student.weights + w.offset, w.count * sizeof(float));
  }
  if (interp->Invoke() != kTfLiteOk) return DMSKD_TFLM_INVOKE_FAILED;
  const float step_loss = interp->output(student.loss_output)->data.f[0];
  if (!isfinite(step_loss) || !isfinite(lr)) return DMSKD_TFLM_NOT_FINITE;
  for (size_t k = 0; k < student.num_tensors; ++k) {  // check every new weight before writing any
    const WeightTensor& w = student.tensors[k];
    const float* g = interp->output(w.output)->data.f;
    for (size_t i = 0; i < w.count; ++i) {
      if (!isfinite(student.weights[w.offset + i] - lr * g[i])) return DMSKD_TFLM_NOT_FINITE;
    }
  }
  for (size_t k = 0; k < student.num_tensors; ++k) {  // the SGD step, into the caller's buffer
    const WeightTensor& w = student.tensors[k];
    const float* g = interp->output(w.output)->data.f;
    float* dst = student.weights + w.offset;
    for (size_t i = 0; i < w.count; ++i) dst[i] = dst[i] - lr * g[i];
  }
  if (loss != nullptr) *loss = step_loss;
  return DMSKD_TFLM_OK;
}

extern "C" const float* dmskd_tflm_student_weights(void) { return student.weights; }
