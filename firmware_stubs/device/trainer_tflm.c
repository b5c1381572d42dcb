/* The trainer of a TFLite-Micro build: the exported shard labels the local samples (its exit logits are
 * the distillation targets), and the student's functional train step runs the local epochs as
 * edge/local_training.py's train_round does (shuffled passes, the last batch topped up by resampling,
 * hard targets: the local label where the plan lets the device use it, else the shard's arg-max).
 * The models, arenas and shapes come from the device configuration `python -m export` wrote. The train
 * step runs in the caller's local-weight buffer, in template order (dmskd_tflm_student_bind): no copy. */
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "device_limits.h"
#include "dmskd/sha256.h"
#include "dmskd/tflm_glue.h"
#include "dmskd_device_config.h"
#include "trainer.h"

#ifndef DMSKD_MAX_LOGITS
#define DMSKD_MAX_LOGITS (1u << 20) /* samples x classes of shard logits kept */
#endif
#define BATCH_FLOATS (DMSKD_STUDENT_BATCH * DMSKD_STUDENT_INPUT_DIM)
#define BATCH_CLASSES (DMSKD_STUDENT_BATCH * DMSKD_STUDENT_NUM_CLASSES)

alignas(16) static uint8_t shard_arena[DMSKD_SHARD_ARENA_BYTES];
alignas(16) static uint8_t student_arena[DMSKD_STUDENT_ARENA_BYTES];
static float logits[DMSKD_MAX_LOGITS];
static float batch_x[BATCH_FLOATS], batch_y[BATCH_CLASSES], batch_t[BATCH_CLASSES];
static size_t order[DMSKD_MAX_LOGITS / DMSKD_STUDENT_NUM_CLASSES + DMSKD_STUDENT_BATCH];
static int32_t targets[DMSKD_MAX_LOGITS / DMSKD_STUDENT_NUM_CLASSES];
static const float *labelled_x; /* the samples the logits were computed for */
static size_t labelled_n;
static char shard_hash[2 * 8 + 1];
static bool ready;

bool dmskd_trainer_available(void) { return true; }

const char *dmskd_trainer_shard_hash(void) { return shard_hash; }

bool dmskd_trainer_init(char *why, size_t why_cap) {
    dmskd_tflm_status s = dmskd_tflm_shard_init(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, shard_arena,
                                                sizeof shard_arena);
    if (s == DMSKD_TFLM_OK) {
        s = dmskd_tflm_student_init(DMSKD_STUDENT_MODEL, DMSKD_STUDENT_MODEL_LEN, student_arena, sizeof student_arena,
                                    NULL, DMSKD_STUDENT_NUM_WEIGHTS, 0); /* each run binds the local weights */
    }
    if (s != DMSKD_TFLM_OK) {
        snprintf(why, why_cap, "TFLite-Micro could not load the device configuration's models: %s",
                 dmskd_tflm_status_text(s));
        return false;
    }
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(DMSKD_SHARD_MODEL, DMSKD_SHARD_MODEL_LEN, digest);
    dmskd_hex(digest, 8, shard_hash); /* edge.wire.content_hash: the plan names the shard by it */
    ready = true;
    return true;
}

/* A uniform index in 0..n-1 from the entropy source (rejection sampling: no modulo bias). */
static bool draw_index(const dmskd_entropy *src, size_t n, size_t *out) {
    uint64_t word = 0, bound = (uint64_t)n, reject_below = (0 - bound) % bound; /* 2^64 mod n: unbiased */
    do {
        if (dmskd_entropy_u64(src, &word) != DMSKD_OK) return false;
    } while (word < reject_below);
    *out = (size_t)(word % bound);
    return true;
}

/* Shard logits of every sample, once per data set; the hard targets from them and the usable labels. */
static bool label_samples(const dmskd_train_job *job, char *why, size_t why_cap) {
    size_t classes = DMSKD_STUDENT_NUM_CLASSES;
    if (job->n * classes > DMSKD_MAX_LOGITS) {
        snprintf(why, why_cap, "%zu samples need %zu logits, this build keeps %u (raise DMSKD_MAX_LOGITS)", job->n,
                 job->n * classes, DMSKD_MAX_LOGITS);
        return false;
    }
    if (labelled_x != job->x || labelled_n != job->n) {
        for (size_t i = 0; i < job->n; i++) {
            dmskd_tflm_status s = dmskd_tflm_shard_run_float(job->x + i * job->dim, job->dim, logits + i * classes,
                                                             classes);
            if (s != DMSKD_TFLM_OK) {
                snprintf(why, why_cap, "the shard failed on sample %zu: %s", i, dmskd_tflm_status_text(s));
                return false;
            }
        }
        labelled_x = job->x;
        labelled_n = job->n;
    }
    /* edge.local_training.labels_in_use: the first round(fraction * n) labelled samples keep their label. */
    size_t keep = job->labels == NULL ? 0 : (size_t)nearbyint(job->labelled_fraction * (double)job->n);
    if (job->labelled_fraction >= 1.0) keep = job->n;
    size_t kept = 0;
    for (size_t i = 0; i < job->n; i++) {
        int32_t label = job->labels == NULL ? -1 : job->labels[i];
        if (label >= (int32_t)classes) {
            snprintf(why, why_cap, "sample %zu has label %d; labels must be 0..%zu or -1 (re-export the data)", i,
                     (int)label, classes - 1);
            return false;
        }
        if (label >= 0 && kept < keep) {
            targets[i] = label;
            kept++;
            continue;
        }
        size_t best = 0;
        for (size_t c = 1; c < classes; c++) {
            if (logits[i * classes + c] > logits[i * classes + best]) best = c;
        }
        targets[i] = (int32_t)best;
    }
    return true;
}

/* Bind the train step to local_out in template order: each of its tensors at that tensor's offset (by name). */
static bool bind_local(const dmskd_train_job *job, float *local_out, char *why, size_t why_cap) {
    dmskd_tflm_student_info info;
    dmskd_tflm_student_get_info(&info);
    if (info.num_weights != job->count || info.num_tensors != job->tmpl->count) {
        snprintf(why, why_cap, "the global model has %zu parameters in %zu tensors, this firmware's student %zu in "
                 "%zu: build the firmware for this fleet's student (python -m export)", job->count, job->tmpl->count,
                 info.num_weights, info.num_tensors);
        return false;
    }
    size_t offsets[DMSKD_MAX_TENSORS];
    if (info.num_tensors > DMSKD_MAX_TENSORS) {
        snprintf(why, why_cap, "the student has %zu weight tensors, this build binds %d (raise DMSKD_MAX_TENSORS)",
                 info.num_tensors, DMSKD_MAX_TENSORS);
        return false;
    }
    for (size_t i = 0; i < info.num_tensors; i++) {
        const char *name = NULL;
        size_t count = 0, at = 0;
        dmskd_tflm_student_tensor(i, &name, NULL, &count);
        bool found = false;
        for (size_t t = 0; t < job->tmpl->count && !found; t++) {
            const dmskd_tensor_spec *spec = &job->tmpl->tensors[t];
            size_t elements = dmskd_shape_elements(spec->ndim, spec->shape);
            if (strcmp(spec->name, name) == 0 && elements == count) {
                offsets[i] = at;
                found = true;
            }
            at += elements;
        }
        if (!found) {
            snprintf(why, why_cap, "the global model has no tensor %s of %zu values the student's train step needs",
                     name, count);
            return false;
        }
    }
    dmskd_tflm_status s = dmskd_tflm_student_bind(local_out, job->count, offsets);
    if (s != DMSKD_TFLM_OK) {
        snprintf(why, why_cap, "the global model's tensors do not tile the student's weights: %s",
                 dmskd_tflm_status_text(s));
        return false;
    }
    memcpy(local_out, job->global, job->count * sizeof(float)); /* training starts from the global model */
    return true;
}

bool dmskd_trainer_run(const dmskd_train_job *job, float *local_out, float *mean_loss, char *why, size_t why_cap) {
    size_t b = DMSKD_STUDENT_BATCH, d = DMSKD_STUDENT_INPUT_DIM, classes = DMSKD_STUDENT_NUM_CLASSES;
    if (!ready) return snprintf(why, why_cap, "the trainer was not initialised"), false;
    if ((size_t)job->batch_size != b) {
        snprintf(why, why_cap, "the plan trains with batch_size %lld but the firmware's train step has a fixed "
                 "batch of %zu; re-export the firmware or fix the plan", (long long)job->batch_size, b);
        return false;
    }
    if (job->dim != d) {
        snprintf(why, why_cap, "local samples have %zu features, the student takes %zu", job->dim, d);
        return false;
    }
    if (!label_samples(job, why, why_cap) || !bind_local(job, local_out, why, why_cap)) return false;
    size_t padded = job->n + (b - job->n % b) % b;
    float epoch_loss = 0.0f;
    for (int64_t epoch = 0; epoch < job->local_epochs; epoch++) {
        for (size_t i = 0; i < job->n; i++) order[i] = i;
        for (size_t i = job->n; i-- > 1;) { /* Fisher-Yates */
            size_t j = 0;
            if (!draw_index(job->shuffle, i + 1, &j)) return snprintf(why, why_cap, "entropy failed"), false;
            size_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (size_t i = job->n; i < padded; i++) {
            if (!draw_index(job->shuffle, job->n, &order[i])) return snprintf(why, why_cap, "entropy failed"), false;
        }
        double total = 0.0;
        for (size_t start = 0; start < padded; start += b) {
            memset(batch_y, 0, sizeof batch_y);
            for (size_t k = 0; k < b; k++) {
                size_t s = order[start + k];
                memcpy(batch_x + k * d, job->x + s * d, d * sizeof(float));
                memcpy(batch_t + k * classes, logits + s * classes, classes * sizeof(float));
                batch_y[k * classes + (size_t)targets[s]] = 1.0f;
            }
            float loss = 0.0f;
            dmskd_tflm_status st = dmskd_tflm_student_train_step(batch_x, batch_y, batch_t, (float)job->alpha,
                                                                 (float)job->tau, (float)job->lr, &loss);
            if (st != DMSKD_TFLM_OK) {
                snprintf(why, why_cap, "the train step failed: %s", dmskd_tflm_status_text(st));
                return false;
            }
            total += loss;
        }
        epoch_loss = (float)(total / (double)(padded / b));
    }
    *mean_loss = epoch_loss;
    return true;
}
