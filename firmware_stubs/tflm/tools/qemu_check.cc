// The glue on an emulated Cortex-M4F (QEMU mps2-an386, semihosting): runs the configured shard on
// 4 fixed int8 samples and one train step on a fixed batch, prints the int8 logits, the loss and
// the new weights as float32 bit patterns, then exits through semihosting. tests/firmware/
// test_tflm_m4f_qemu.py feeds the same inputs (the formulas of fill_inputs) to the host build.
#include <stdint.h>
#include <string.h>

#include "dmskd/tflm_glue.h"
#include "dmskd_device_config.h"

extern "C" {
extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
void __libc_init_array(void);
void Reset_Handler(void);
__attribute__((section(".isr_vector"), used)) const void* const dmskd_vectors[2] = {&_estack,
                                                                                     (void*)Reset_Handler};
}

namespace {

constexpr unsigned kSamples = 4;
alignas(16) uint8_t shard_arena[DMSKD_SHARD_ARENA_BYTES];
alignas(16) uint8_t student_arena[DMSKD_STUDENT_ARENA_BYTES];
float weights[DMSKD_STUDENT_NUM_WEIGHTS];
int8_t samples[kSamples][DMSKD_STUDENT_INPUT_DIM];
float x[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_INPUT_DIM];
float y[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES];
float teacher[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES];

int semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void put(const char* s) { semihost(0x04, s); }  // SYS_WRITE0

void put_hex(uint32_t v, int digits) {
  char buf[12];
  for (int i = 0; i < digits; ++i) buf[i] = "0123456789abcdef"[(v >> (4 * (digits - 1 - i))) & 15u];
  buf[digits] = ' ';
  buf[digits + 1] = '\0';
  put(buf);
}

void put_floats(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    put_hex(bits, 8);
    if (i % 16 == 15 || i + 1 == n) put("\n");
  }
}

// Inputs from integer formulas only, so the host side (numpy) rebuilds them bit for bit.
void fill_inputs() {
  for (unsigned k = 0; k < kSamples; ++k) {
    for (unsigned i = 0; i < DMSKD_STUDENT_INPUT_DIM; ++i) samples[k][i] = (int8_t)((i * 37u + k * 11u) % 256u - 128);
  }
  for (unsigned i = 0; i < DMSKD_STUDENT_BATCH * DMSKD_STUDENT_INPUT_DIM; ++i) x[i] = (float)((i * 13u) % 17u) / 17.0f;
  for (unsigned i = 0; i < DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES; ++i) {
    y[i] = (i % DMSKD_STUDENT_NUM_CLASSES) == ((i / DMSKD_STUDENT_NUM_CLASSES) % DMSKD_STUDENT_NUM_CLASSES) ? 1.0f : 0.0f;
    teacher[i] = (float)((i * 7u) % 11u) / 11.0f * 4.0f - 2.0f;
  }
  for (unsigned i = 0; i < DMSKD_STUDENT_NUM_WEIGHTS; ++i) weights[i] = (float)((i * 29u) % 23u) / 23.0f * 0.2f - 0.1f;
}

int run() {
  fill_inputs();
  if (dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena, sizeof shard_arena) != DMSKD_TFLM_OK ||
      dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena, sizeof student_arena, weights,
                              DMSKD_STUDENT_NUM_WEIGHTS, 0) != DMSKD_TFLM_OK) {
    put("init failed\n");
    return 1;
  }
  dmskd_tflm_shard_info info;
  dmskd_tflm_shard_get_info(&info);
  int8_t logits[64];
  for (unsigned k = 0; k < kSamples; ++k) {
    if (info.num_classes > sizeof logits ||
        dmskd_tflm_shard_run_int8(samples[k], info.input_len, logits, info.num_classes) != DMSKD_TFLM_OK) {
      put("shard failed\n");
      return 1;
    }
    put("shard ");
    for (size_t i = 0; i < info.num_classes; ++i) put_hex((uint8_t)logits[i], 2);
    put("\n");
  }
  dmskd_tflm_student_info student;
  dmskd_tflm_student_get_info(&student);
  put("arena shard ");  // used on this 32-bit target, declared (the host's measurement + the export's headroom)
  put_hex((uint32_t)info.arena_used_bytes, 8);
  put_hex((uint32_t)sizeof shard_arena, 8);
  put("\narena student ");
  put_hex((uint32_t)student.arena_used_bytes, 8);
  put_hex((uint32_t)sizeof student_arena, 8);
  put("\n");
  float loss = 0.0f;
  if (dmskd_tflm_student_train_step(x, y, teacher, 0.7f, 2.0f, 0.05f, &loss) != DMSKD_TFLM_OK) {
    put("train failed\n");
    return 1;
  }
  put("loss ");
  put_floats(&loss, 1);
  put("weights\n");
  put_floats(dmskd_tflm_student_weights(), DMSKD_STUDENT_NUM_WEIGHTS);
  put("done\n");
  return 0;
}

}  // namespace

extern "C" void Reset_Handler(void) {
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;  // CP10 and CP11: the FPU, before any floating-point instruction
  __asm__ volatile("dsb\n\tisb");
  memcpy(&_sdata, &_sidata, (size_t)((char*)&_edata - (char*)&_sdata));
  memset(&_sbss, 0, (size_t)((char*)&_ebss - (char*)&_sbss));
  __libc_init_array();  // the resolvers are C++ objects with constructors
  const int failed = run();
  semihost(0x18, (const void*)(uintptr_t)(failed == 0 ? 0x20026u : 0x20023u));  // SYS_EXIT
  for (;;) {
  }
}

int main(void) { return 0; }  // newlib's start files want one; Reset_Handler is the entry
