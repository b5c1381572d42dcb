// Host test driver for the glue: runs the configured shard or train step on inputs read from a
// file and writes the outputs, so tests compare them with the TFLite-Micro Python interpreter.
//
//   dmskd_tflm_driver info                 one line: shard and student shapes, arenas
//   dmskd_tflm_driver errors               each misuse the glue refuses, and the status it returns
//   dmskd_tflm_driver shard IN OUT         IN: N * input_len int8; OUT: N * num_classes int8
//   dmskd_tflm_driver train IN OUT STEPS   IN: weights[num_weights] then per step x[B*D] y[B*C]
//                                          t[B*C] alpha tau lr (float32); OUT: STEPS losses, weights
//                                          (exit 3: a step was not finite, its loss NaN, weights kept)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "dmskd/tflm_glue.h"
#include "dmskd_device_config.h"

namespace {

alignas(16) uint8_t shard_arena[DMSKD_SHARD_ARENA_BYTES];
alignas(16) uint8_t student_arena[DMSKD_STUDENT_ARENA_BYTES];
float weights[DMSKD_STUDENT_NUM_WEIGHTS];

int fail(const char* what, dmskd_tflm_status st) {
  fprintf(stderr, "dmskd_tflm_driver: %s: %s\n", what, dmskd_tflm_status_text(st));
  return 1;
}

bool read_all(const char* path, std::vector<unsigned char>* out) {
  FILE* f = fopen(path, "rb");
  if (f == nullptr) return false;
  unsigned char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out->insert(out->end(), buf, buf + n);
  fclose(f);
  return true;
}

bool write_all(const char* path, const void* data, size_t len) {
  FILE* f = fopen(path, "wb");
  if (f == nullptr) return false;
  const bool ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

int run_shard(const char* in_path, const char* out_path) {
  dmskd_tflm_status st = dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena,
                                               sizeof shard_arena);
  if (st != DMSKD_TFLM_OK) return fail("shard init", st);
  dmskd_tflm_shard_info info;
  dmskd_tflm_shard_get_info(&info);
  std::vector<unsigned char> in;
  if (!read_all(in_path, &in) || in.size() % info.input_len != 0) {
    fprintf(stderr, "dmskd_tflm_driver: %s must hold a whole number of %zu-byte int8 inputs\n", in_path,
            info.input_len);
    return 2;
  }
  const size_t n = in.size() / info.input_len;
  std::vector<int8_t> out(n * info.num_classes);
  for (size_t i = 0; i < n; ++i) {
    st = dmskd_tflm_shard_run_int8(reinterpret_cast<const int8_t*>(in.data()) + i * info.input_len,
                                   info.input_len, out.data() + i * info.num_classes, info.num_classes);
    if (st != DMSKD_TFLM_OK) return fail("shard run", st);
  }
  return write_all(out_path, out.data(), out.size()) ? 0 : 2;
}

int run_train(const char* in_path, const char* out_path, long steps) {
  dmskd_tflm_status st = dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena,
                                                 sizeof student_arena, weights, DMSKD_STUDENT_NUM_WEIGHTS, 0);
  if (st != DMSKD_TFLM_OK) return fail("student init", st);
  dmskd_tflm_student_info info;
  dmskd_tflm_student_get_info(&info);
  const size_t bd = info.batch * info.input_dim, bc = info.batch * info.num_classes;
  const size_t per_step = bd + 2 * bc + 3;
  std::vector<unsigned char> raw;
  if (steps < 1 || !read_all(in_path, &raw) ||
      raw.size() != (info.num_weights + static_cast<size_t>(steps) * per_step) * sizeof(float)) {
    fprintf(stderr, "dmskd_tflm_driver: %s must hold %zu weights and %ld steps of %zu floats\n", in_path,
            info.num_weights, steps, per_step);
    return 2;
  }
  std::vector<float> in(raw.size() / sizeof(float));
  memcpy(in.data(), raw.data(), raw.size());
  memcpy(weights, in.data(), info.num_weights * sizeof(float));
  std::vector<float> out;
  const float* p = in.data() + info.num_weights;
  bool refused = false;  // a non-finite step: its loss is written as NaN, the weights stay (exit 3)
  for (long s = 0; s < steps; ++s, p += per_step) {
    float loss = 0.0f;
    const float* hp = p + bd + 2 * bc;
    st = dmskd_tflm_student_train_step(p, p + bd, p + bd + bc, hp[0], hp[1], hp[2], &loss);
    if (st == DMSKD_TFLM_NOT_FINITE) {
      fprintf(stderr, "dmskd_tflm_driver: step %ld: %s\n", s, dmskd_tflm_status_text(st));
      refused = true;
      loss = NAN;
    } else if (st != DMSKD_TFLM_OK) {
      return fail("train step", st);
    }
    out.push_back(loss);
  }
  const float* w = dmskd_tflm_student_weights();
  out.insert(out.end(), w, w + info.num_weights);
  if (!write_all(out_path, out.data(), out.size() * sizeof(float))) return 2;
  return refused ? 3 : 0;
}

const char* status_name(dmskd_tflm_status st) {
  static const char* const names[] = {"OK", "BAD_ARGUMENT", "BAD_MODEL", "MISSING_OP", "ARENA_TOO_SMALL",
                                      "BAD_SIGNATURE", "INVOKE_FAILED", "NOT_INITIALISED", "NOT_FINITE"};
  return static_cast<unsigned>(st) < sizeof names / sizeof names[0] ? names[st] : "?";
}

void report(const char* what, dmskd_tflm_status st) { printf("%s %s\n", what, status_name(st)); }

// Each misuse the glue must refuse, one line each: "<case> <STATUS>" (tests/firmware/test_tflm_shard.py).
int run_errors() {
  alignas(16) static uint8_t garbage[64] = {1, 2, 3};
  alignas(16) static uint8_t copy[DMSKD_SHARD_MODEL_LEN + 16];
  int8_t q[1] = {0};
  float f[1] = {0.0f};
  report("shard-run-before-init", dmskd_tflm_shard_run_int8(q, 1, q, 1));
  report("student-step-before-init", dmskd_tflm_student_train_step(f, f, f, 0.5f, 1.0f, 0.1f, nullptr));
  report("shard-not-a-model", dmskd_tflm_shard_init(garbage, sizeof garbage, shard_arena, sizeof shard_arena));
  memcpy(copy + 1, DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN);
  report("shard-unaligned", dmskd_tflm_shard_init(copy + 1, DMSKD_SHARD_MODEL_LEN, shard_arena, sizeof shard_arena));
  report("shard-arena-too-small", dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena, 256));
  report("shard-given-the-train-step", dmskd_tflm_shard_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN,
                                                             student_arena, sizeof student_arena));
  report("student-given-the-shard", dmskd_tflm_student_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, student_arena,
                                                            sizeof student_arena, weights,
                                                            DMSKD_STUDENT_NUM_WEIGHTS, 0));
  report("student-wrong-weight-count", dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN,
                                                               student_arena, sizeof student_arena, weights,
                                                               DMSKD_STUDENT_NUM_WEIGHTS - 1, 0));
  report("student-initial-weights-absent", dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN,
                                                                   student_arena, sizeof student_arena, weights,
                                                                   DMSKD_STUDENT_NUM_WEIGHTS, 1));
  report("student-unbound-ok", dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena,
                                                       sizeof student_arena, nullptr, DMSKD_STUDENT_NUM_WEIGHTS, 0));
  report("student-step-unbound", dmskd_tflm_student_train_step(f, f, f, 0.5f, 1.0f, 0.1f, nullptr));
  static const size_t same_offset[16] = {0};
  report("student-bind-overlapping", dmskd_tflm_student_bind(weights, DMSKD_STUDENT_NUM_WEIGHTS, same_offset));
  report("student-bind-short", dmskd_tflm_student_bind(weights, DMSKD_STUDENT_NUM_WEIGHTS - 1, nullptr));
  report("student-bind-packed", dmskd_tflm_student_bind(weights, DMSKD_STUDENT_NUM_WEIGHTS, nullptr));
  report("shard-ok", dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena,
                                           sizeof shard_arena));
  report("shard-wrong-input-length", dmskd_tflm_shard_run_int8(q, 1, q, 1));
  return 0;
}

int run_info() {
  dmskd_tflm_status st = dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena,
                                               sizeof shard_arena);
  if (st != DMSKD_TFLM_OK) return fail("shard init", st);
  st = dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena, sizeof student_arena,
                               weights, DMSKD_STUDENT_NUM_WEIGHTS, 0);
  if (st != DMSKD_TFLM_OK) return fail("student init", st);
  dmskd_tflm_shard_info si;
  dmskd_tflm_student_info ti;
  dmskd_tflm_shard_get_info(&si);
  dmskd_tflm_student_get_info(&ti);
  printf("shard input_len=%zu num_classes=%zu arena_used=%zu arena=%u student batch=%zu input_dim=%zu "
         "num_classes=%zu tensors=%zu weights=%zu arena_used=%zu arena=%u\n",
         si.input_len, si.num_classes, si.arena_used_bytes, (unsigned)DMSKD_SHARD_ARENA_BYTES, ti.batch,
         ti.input_dim, ti.num_classes, ti.num_tensors, ti.num_weights, ti.arena_used_bytes,
         (unsigned)DMSKD_STUDENT_ARENA_BYTES);
  for (size_t i = 0; i < ti.num_tensors; ++i) {
    const char* name;
    size_t offset, count;
    dmskd_tflm_student_tensor(i, &name, &offset, &count);
    printf("tensor %s offset=%zu count=%zu\n", name, offset, count);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "info") == 0) return run_info();
  if (argc == 2 && strcmp(argv[1], "errors") == 0) return run_errors();
  if (argc == 4 && strcmp(argv[1], "shard") == 0) return run_shard(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "train") == 0) return run_train(argv[2], argv[3], strtol(argv[4], nullptr, 10));
  fprintf(stderr, "usage: %s info | errors | shard IN OUT | train IN OUT STEPS\n", argv[0]);
  return 2;
}
