/* dmskd_core_cli's plan, clip, noise and privatise verbs. Seeded runs use splitmix64 words (a test
   harness source, never a device's: a device's entropy is the port's TRNG). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_verbs.h"
#include "dmskd/plan.h"
#include "dmskd/privacy.h"

int cli_plan(int argc, char **argv) {
    if (argc != 1) cli_usage_error("plan takes one JSON file", "plan PLAN.json");
    size_t len;
    uint8_t *json = cli_read_file(argv[0], &len);
    dmskd_plan p;
    dmskd_error err;
    if (dmskd_plan_parse(json, len, &p, &err) != DMSKD_OK) return cli_report_error(&err);
    printf("{\"status\": \"ok\", \"fleet\": ");
    cli_print_json_string(p.fleet);
    printf(", \"device\": ");
    cli_print_json_string(p.device);
    printf(", \"shard_id\": ");
    cli_print_json_string(p.shard_id);
    printf(", \"rounds\": %lld, \"dp_mode\": \"%s\", \"noise_multiplier\": %.17g, \"clip\": %.17g, "
           "\"alpha\": %.17g, \"tau\": %.17g, \"lr\": %.17g, \"local_epochs\": %lld, \"batch_size\": %lld, "
           "\"labelled_fraction\": %.17g, \"max_examples\": %lld, \"update_bits\": %u, \"model_bits\": %u, "
           "\"training_digest\": \"%s\"}\n",
           (long long)p.rounds, p.dp_mode, p.noise_multiplier, p.training.clip, p.training.alpha, p.training.tau,
           p.training.lr, (long long)p.training.local_epochs, (long long)p.training.batch_size, p.labelled_fraction,
           (long long)p.max_examples, p.update_bits, p.model_bits, p.training_digest);
    free(json);
    return 0;
}

static int splitmix_fill(void *ctx, uint8_t *out, size_t n) {
    uint64_t *state = ctx;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            memcpy(out + i, &z, n - i < 8 ? n - i : 8);
        }
    }
    return 0;
}

/* Tensors from --tensor NAME:N and a flat float32 --values file (sizes only matter here). */
typedef struct {
    float *values;
    float *ptrs[16];
    size_t sizes[16];
    size_t count;
} flat_tensors;

static const char USAGE[] = "clip|privatise --size N ... --values F32 --clip C [--noise Z --seed S] --out F32; "
                            "noise --sigma2 S --count N --seed S --out I64";

static int cli_clip_or_privatise(int argc, char **argv, int privatise) {
    flat_tensors t = {0};
    const char *values = NULL, *out = NULL;
    double clip = 1.0, noise = 0.0;
    uint64_t seed = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--size") && t.count < 16) t.sizes[t.count++] = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--values")) values = v;
        else if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--clip")) clip = strtod(v, NULL);
        else if (!strcmp(k, "--noise")) noise = strtod(v, NULL);
        else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
        else cli_usage_error(k, USAGE);
    }
    if (values == NULL || out == NULL) cli_usage_error("--values and --out are required", USAGE);
    size_t len, offset = 0;
    t.values = (float *)cli_read_file(values, &len);
    for (size_t i = 0; i < t.count; i++) {
        t.ptrs[i] = t.values + offset;
        offset += t.sizes[i];
    }
    if (4 * offset != len) cli_usage_error("the sizes do not add up to the values file", USAGE);
    dmskd_error err;
    double norm = 0;
    dmskd_entropy_pool pool; /* as the device draws: through a pool (the same bytes in the same order) */
    dmskd_entropy src = dmskd_entropy_pooled(&pool, (dmskd_entropy){splitmix_fill, &seed});
    dmskd_status st = privatise ? dmskd_privatise_local(t.ptrs, t.sizes, t.count, clip, noise, &src, &err)
                                : dmskd_clip_update(t.ptrs, t.sizes, t.count, clip, &norm, &err);
    if (st != DMSKD_OK) return cli_report_error(&err);
    cli_write_file(out, (const uint8_t *)t.values, len);
    printf("{\"status\": \"ok\", \"norm\": %.17g}\n", norm);
    free(t.values);
    return 0;
}

int cli_clip(int argc, char **argv) { return cli_clip_or_privatise(argc, argv, 0); }
int cli_privatise(int argc, char **argv) { return cli_clip_or_privatise(argc, argv, 1); }

int cli_noise(int argc, char **argv) {
    double sigma2 = 1.0;
    size_t count = 0;
    uint64_t seed = 0;
    const char *out = NULL;
    int round_mode = 0;
    double x = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--sigma2")) sigma2 = strtod(v, NULL);
        else if (!strcmp(k, "--count")) count = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--round")) { round_mode = 1; x = strtod(v, NULL); }
        else cli_usage_error(k, USAGE);
    }
    if (out == NULL) cli_usage_error("--out is required", USAGE);
    int64_t *draws = malloc(8 * (count + 1));
    dmskd_entropy_pool pool;
    dmskd_entropy src = dmskd_entropy_pooled(&pool, (dmskd_entropy){splitmix_fill, &seed});
    for (size_t i = 0; i < count; i++) {
        dmskd_status st = round_mode ? dmskd_randomized_round(x, &src, &draws[i])
                                     : dmskd_discrete_gaussian(sigma2, &src, &draws[i]);
        if (st != DMSKD_OK) {
            dmskd_error err;
            dmskd_fail(&err, st, "the sampler refused sigma2 %g / x %g", sigma2, x);
            return cli_report_error(&err);
        }
    }
    cli_write_file(out, (const uint8_t *)draws, 8 * count);
    printf("{\"status\": \"ok\", \"count\": %zu}\n", count);
    free(draws);
    return 0;
}
