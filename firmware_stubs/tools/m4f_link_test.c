/* The core's link test for a Cortex-M4F: a bare-metal image (vector table, reset handler) that calls every
   entry point of the core once with static buffers, so the linker keeps all of it and the size report
   counts what a meter's firmware carries. Entropy comes from a counter here; a board uses its TRNG. */
#include <stdint.h>
#include <string.h>

#include "dmskd/blob.h"
#include "dmskd/chunk.h"
#include "dmskd/plan.h"
#include "dmskd/privacy.h"
#include "dmskd/signed.h"

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void Reset_Handler(void);

__attribute__((section(".isr_vector"), used)) static const void *const vectors[2] = {&_estack, (void *)Reset_Handler};

void Reset_Handler(void) {
    memcpy(&_sdata, &_sidata, (size_t)((char *)&_edata - (char *)&_sdata));
    memset(&_sbss, 0, (size_t)((char *)&_ebss - (char *)&_sbss));
    main();
    for (;;) {
    }
}

static int counter_fill(void *ctx, uint8_t *out, size_t n) {
    uint32_t *state = ctx;
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)((*state = *state * 1664525u + 1013904223u) >> 24);
    return 0;
}

static float weights[64];
static uint8_t blob[2048];
static uint8_t chunk[600];
static uint8_t reassembly[4096];
static dmskd_reassembly_slot slots[2];
static dmskd_blob parsed;

int main(void) {
    uint32_t seed = 1;
    dmskd_entropy rng = {counter_fill, &seed};
    dmskd_error err;
    size_t len = 0, n = 0;
    dmskd_tensor t = {"w", DMSKD_F32, 1, {64, 0, 0, 0}, weights};
    dmskd_update_meta um = {"fleet", "dev", 1, 0, 10, 1.0, 0.0, "none", DMSKD_ENC_SQ8_DELTA, ""};
    float *ptrs[1] = {weights};
    size_t sizes[1] = {64};
    double norm;
    dmskd_clip_update(ptrs, sizes, 1, 1.0, &norm, &err);
    dmskd_privatise_local(ptrs, sizes, 1, 1.0, 0.5, &rng, &err);
    dmskd_encode_update(&t, 1, &um, &rng, blob, sizeof blob, &len, &err);
    dmskd_weights_meta wm = {"fleet", 1, 1, DMSKD_ENC_FLOAT32_WEIGHTS};
    dmskd_encode_weights(&t, 1, &wm, blob, sizeof blob, &len, &err);
    dmskd_step_meta sm = {"fleet", 2, 2, 1, DMSKD_ENC_SQ8_DELTA};
    dmskd_encode_model_step(&t, &t, 1, &sm, &rng, blob, sizeof blob, &len, &err);
    dmskd_tensor_spec spec = {"w", 1, {64, 0, 0, 0}};
    dmskd_template tmpl = {1, &spec};
    dmskd_step_meta got;
    if (dmskd_decode_model_step(blob, len, &parsed, &got, &err) == DMSKD_OK) {
        dmskd_apply_model_step(&parsed, &got, &tmpl, weights, 64, &err);
    }
    dmskd_encoding accept[1] = {DMSKD_ENC_SQ8_DELTA};
    dmskd_update_meta back;
    if (dmskd_decode_update(blob, len, accept, 1, &parsed, &back, &err) == DMSKD_OK) {
        dmskd_blob_values(&parsed, back.encoding, &tmpl, weights, 64, &err);
    }
    dmskd_weights_meta wback;
    dmskd_decode_weights(blob, len, &parsed, &wback, &err);
    dmskd_check_template(&parsed, &tmpl, &err);
    uint8_t key[8];
    dmskd_message_key("m", key);
    dmskd_assembler a;
    dmskd_assembler_init(&a, slots, 2, reassembly, sizeof reassembly, 1500, 512, 1, &err);
    const uint8_t *message;
    size_t message_len;
    dmskd_chunk_write(blob, len, key, 512, 0, chunk, sizeof chunk, &n, &err);
    dmskd_assembler_add(&a, "t", chunk, n, &message, &message_len, &err);
    static const uint8_t pk[32];
    dmskd_opened opened;
    dmskd_open_envelope(pk, "t", blob, len, &opened, &err);
    dmskd_replay_entry entries[2];
    dmskd_replay_guard guard = {entries, 2};
    int is_new;
    dmskd_replay_admit(&guard, "t", &opened, &is_new, &err);
    uint8_t pinned[32];
    dmskd_public_key_from_pem("", 0, pinned, &err);
    dmskd_plan plan;
    static const char plan_json[] = "{\"fleet\": \"f\", \"device\": \"d\", \"shard_id\": \"s\", \"shard_hash\": "
                                    "\"h\", \"student_hash\": \"h\", \"rounds\": 3}";
    dmskd_plan_parse((const uint8_t *)plan_json, sizeof plan_json - 1, &plan, &err);
    return (int)(len + n + (size_t)is_new);
}
