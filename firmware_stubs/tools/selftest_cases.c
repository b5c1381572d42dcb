/* The self-test's cases. Inputs come from splitmix64 (values v = ((w >> 40) - 2^23) / 2^26, exact in float32;
   entropy bytes = the words little-endian), so tests/firmware/test_core_selftest.py can rebuild them in Python. */
#include "selftest_cases.h"

#include <string.h>

#include "dmskd/format.h"
#include "dmskd/blob.h"
#include "dmskd/chunk.h"
#include "dmskd/plan.h"
#include "dmskd/privacy.h"
#include "dmskd/sha256.h"
#include "dmskd/signed.h"

#define N_KERNEL 35
#define N_BIAS 5
#define N_ALL (N_KERNEL + N_BIAS)

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int splitmix_fill(void *ctx, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = splitmix(ctx);
        for (size_t b = 0; b < 8 && i + b < n; b++) out[i + b] = (uint8_t)(w >> (8 * b));
    }
    return 0;
}

static void fill_values(float *v, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) v[i] = (float)((int32_t)(splitmix(&seed) >> 40) - 8388608) / 67108864.0f;
}

static float values_a[N_ALL], values_b[N_ALL], scratch[N_ALL];
static uint8_t blob[4096], chunk[600], memory[8192];
static dmskd_blob parsed;
static dmskd_reassembly_slot slots[2];

static void digest_line(selftest_emit emit, const char *name, const void *data, size_t len) {
    uint8_t d[32];
    char hex[65], line[160];
    dmskd_sha256(data, len, d);
    dmskd_hex(d, 32, hex);
    dmskd_format(line, sizeof line, "%s: %lu bytes sha256 %s", name, (unsigned long)len, hex);
    emit(line);
}

static void tensors_of(float *v, dmskd_tensor t[2]) {
    dmskd_tensor k = {"dense/kernel", DMSKD_F32, 2, {7, 5, 0, 0}, v};
    dmskd_tensor b = {"dense/bias", DMSKD_F32, 1, {5, 0, 0, 0}, v + N_KERNEL};
    t[0] = k;
    t[1] = b;
}

int selftest_run(selftest_emit emit) {
    int failures = 0;
    char line[200];
    dmskd_error err;
    size_t len = 0;
    dmskd_tensor ta[2], tb[2];
    fill_values(values_a, N_ALL, 1);
    fill_values(values_b, N_ALL, 2);
    tensors_of(values_a, ta);
    tensors_of(values_b, tb);
    static const dmskd_tensor_spec specs[2] = {{"dense/bias", 1, {5, 0, 0, 0}}, {"dense/kernel", 2, {7, 5, 0, 0}}};
    dmskd_template tmpl = {2, specs};

    static const dmskd_encoding encodings[4] = {DMSKD_ENC_FLOAT32_DELTA, DMSKD_ENC_SQ8_DELTA, DMSKD_ENC_SQ4_DELTA,
                                                DMSKD_ENC_SQ2_DELTA};
    for (int e = 0; e < 4; e++) {
        uint64_t seed = 100 + (uint64_t)e;
        dmskd_entropy_pool pool; /* as the device draws: the pool must hand out the words in their order */
        dmskd_entropy rng = dmskd_entropy_pooled(&pool, (dmskd_entropy){splitmix_fill, &seed});
        dmskd_update_meta m = {"demo", "dev000", 29, 28, 100, 1.0, 0.0, "none", encodings[e], "f1731cfd17effbfa"};
        if (dmskd_encode_update(ta, 2, &m, &rng, blob, sizeof blob, &len, &err) != DMSKD_OK) failures++;
        dmskd_format(line, sizeof line, "update %s", dmskd_encoding_name(encodings[e]));
        digest_line(emit, line, blob, len);
        dmskd_update_meta back;
        if (dmskd_decode_update(blob, len, encodings, 4, &parsed, &back, &err) != DMSKD_OK ||
            dmskd_blob_values(&parsed, back.encoding, &tmpl, scratch, N_ALL, &err) != DMSKD_OK) {
            failures++;
        }
        dmskd_format(line, sizeof line, "decoded %s", dmskd_encoding_name(encodings[e]));
        digest_line(emit, line, scratch, sizeof scratch);
    }
    dmskd_weights_meta wm = {"demo", 7, 8, DMSKD_ENC_FLOAT32_WEIGHTS};
    if (dmskd_encode_weights(ta, 2, &wm, blob, sizeof blob, &len, &err) != DMSKD_OK) failures++;
    digest_line(emit, "weights", blob, len);

    uint64_t seed = 200;
    dmskd_entropy rng = {splitmix_fill, &seed};
    dmskd_step_meta sm = {"demo", 9, 9, 8, DMSKD_ENC_SQ4_DELTA};
    if (dmskd_encode_model_step(ta, tb, 2, &sm, &rng, blob, sizeof blob, &len, &err) != DMSKD_OK) failures++;
    digest_line(emit, "step sq4", blob, len);
    dmskd_step_meta got;
    memcpy(scratch, values_b + N_KERNEL, N_BIAS * sizeof(float));  /* template order: bias, then kernel */
    memcpy(scratch + N_BIAS, values_b, N_KERNEL * sizeof(float));
    if (dmskd_decode_model_step(blob, len, &parsed, &got, &err) != DMSKD_OK ||
        dmskd_apply_model_step(&parsed, &got, &tmpl, scratch, N_ALL, &err) != DMSKD_OK) {
        failures++;
    }
    digest_line(emit, "step applied", scratch, sizeof scratch);

    memcpy(scratch, values_a, sizeof scratch);
    float *ptrs[2] = {scratch, scratch + N_KERNEL};
    size_t sizes[2] = {N_KERNEL, N_BIAS};
    double norm = 0;
    char norm_text[40];
    dmskd_clip_update(ptrs, sizes, 2, 0.25, &norm, &err);
    dmskd_format_python_float(norm, norm_text, sizeof norm_text);
    dmskd_format(line, sizeof line, "clip norm %s", norm_text);
    digest_line(emit, line, scratch, sizeof scratch);
    seed = 300;
    dmskd_privatise_local(ptrs, sizes, 2, 0.25, 1.1, &rng, &err);
    digest_line(emit, "local release", scratch, sizeof scratch);
    long long sum = 0, squares = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t x;
        dmskd_discrete_gaussian(25.0, &rng, &x);
        sum += x;
        squares += x * x;
    }
    dmskd_format(line, sizeof line, "discrete gaussian sum %lld squares %lld", sum, squares);
    emit(line);

    static const double floats[6] = {1.0, 0.1, 1e-05, 1e16, 123456789.125, 3.0e38};
    size_t n = (size_t)dmskd_format(line, sizeof line, "repr");
    for (int i = 0; i < 6; i++) {
        char text[40];
        dmskd_format_python_float(floats[i], text, sizeof text);
        n += dmskd_format(line + n, sizeof line - n, " %s", text);
    }
    emit(line);

    static const char plan_json[] = "{\"device\": \"d\", \"fleet\": \"f\", \"rounds\": 3, \"shard_hash\": \"h\", "
                                    "\"shard_id\": \"s\", \"student_hash\": \"h\", \"training\": {\"alpha\": 0.5, "
                                    "\"lr\": 0.05, \"clip\": 2}}";
    dmskd_plan plan;
    if (dmskd_plan_parse((const uint8_t *)plan_json, sizeof plan_json - 1, &plan, &err) != DMSKD_OK) failures++;
    dmskd_format(line, sizeof line, "plan digest %s", plan.training_digest);
    emit(line);

    uint8_t key[8];
    dmskd_message_key("selftest", key);
    dmskd_assembler a;
    dmskd_assembler_init(&a, slots, 2, memory, sizeof memory, 3000, 512, 1, &err);
    uint16_t count = 0;
    dmskd_chunk_count(len, 512, &count, &err);
    const uint8_t *message = NULL;
    size_t message_len = 0;
    dmskd_sha256_ctx all;
    dmskd_sha256_init(&all);
    for (uint16_t i = count; i-- > 0;) {  /* last chunk first */
        size_t c;
        dmskd_chunk_write(blob, len, key, 512, i, chunk, sizeof chunk, &c, &err);
        dmskd_sha256_update(&all, chunk, c);
        if (dmskd_assembler_add(&a, "t", chunk, c, &message, &message_len, &err) != DMSKD_OK) failures++;
    }
    uint8_t d[32];
    char hex[65];
    dmskd_sha256_final(&all, d);
    dmskd_hex(d, 32, hex);
    int joined = message != NULL && message_len == len && memcmp(message, blob, len) == 0;
    dmskd_format(line, sizeof line, "chunks %u sha256 %s rejoined %s", count, hex, joined ? "yes" : "no");
    emit(line);

    /* RFC 8032 section 7.1, test 2: a one-byte message */
    static const uint8_t pk[32] = {0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b,
                                   0x7e, 0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1,
                                   0x2a, 0xf4, 0x66, 0x0c};
    static const uint8_t sig[64] = {
        0x92, 0xa0, 0x09, 0xa9, 0xf0, 0xd4, 0xca, 0xb8, 0x72, 0x0e, 0x82, 0x0b, 0x5f, 0x64, 0x25, 0x40,
        0xa2, 0xb2, 0x7b, 0x54, 0x16, 0x50, 0x3f, 0x8f, 0xb3, 0x76, 0x22, 0x23, 0xeb, 0xdb, 0x69, 0xda,
        0x08, 0x5a, 0xc1, 0xe4, 0x3e, 0x15, 0x99, 0x6e, 0x45, 0x8f, 0x36, 0x13, 0xd0, 0xf1, 0x1d, 0x8c,
        0x38, 0x7b, 0x2e, 0xae, 0xb4, 0x30, 0x2a, 0xee, 0xb0, 0x0d, 0x29, 0x16, 0x12, 0xbb, 0x0c, 0x00};
    static const uint8_t msg[1] = {0x72};
    uint8_t forged[1] = {0x73};
    int genuine = dmskd_ed25519_verify(sig, msg, 1, pk) == 0;
    int refused = dmskd_ed25519_verify(sig, forged, 1, pk) != 0;
    dmskd_format(line, sizeof line, "ed25519 %s genuine %s forged %s", dmskd_ed25519_backend(),
                 genuine ? "verifies" : "FAILS", refused ? "refused" : "ACCEPTED");
    emit(line);
    dmskd_format(line, sizeof line, "internal failures %d", failures);
    emit(line);
    return failures;
}
