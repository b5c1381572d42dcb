// The TFLM half of a meter's image, for the size report: the configured shard and train step with
// their arenas as static buffers, initialised and run once. Linked for Cortex-M4F; arm-none-eabi-size
// then gives flash (text + rodata) and RAM (data + bss, the arenas included).
#include "dmskd/tflm_glue.h"
#include "dmskd_device_config.h"

alignas(16) static uint8_t shard_arena[DMSKD_SHARD_ARENA_BYTES];
alignas(16) static uint8_t student_arena[DMSKD_STUDENT_ARENA_BYTES];
static float weights[DMSKD_STUDENT_NUM_WEIGHTS];
static float batch_x[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_INPUT_DIM];
static float batch_y[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES];
static float teacher[DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES];
static float sample[DMSKD_STUDENT_INPUT_DIM];

int main(void) {
  if (dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena, sizeof shard_arena) !=
      DMSKD_TFLM_OK) {
    return 1;
  }
  if (dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena, sizeof student_arena,
                              weights, DMSKD_STUDENT_NUM_WEIGHTS, 0) != DMSKD_TFLM_OK) {
    return 2;
  }
  dmskd_tflm_shard_info info;
  dmskd_tflm_shard_get_info(&info);
  for (unsigned i = 0; i < DMSKD_STUDENT_BATCH; ++i) {
    if (dmskd_tflm_shard_run_float(sample, info.input_len, teacher + i * info.num_classes, info.num_classes) !=
        DMSKD_TFLM_OK) {
      return 3;
    }
  }
  float loss = 0.0f;
  return dmskd_tflm_student_train_step(batch_x, batch_y, teacher, 0.7f, 2.0f, 0.05f, &loss) == DMSKD_TFLM_OK ? 0 : 4;
}
