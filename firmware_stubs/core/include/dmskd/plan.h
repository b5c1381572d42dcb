/* The device plan (edge/plan.py DevicePlan as JSON on plan/<device>): what the firmware needs of it. */
#ifndef DMSKD_PLAN_H
#define DMSKD_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/blob.h"
#include "dmskd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Local training settings (edge.plan.TrainingSettings). */
typedef struct {
    double alpha;
    double tau;
    double lr;
    int64_t local_epochs;
    int64_t batch_size;
    double clip;
} dmskd_training;

/* A parsed plan; training_digest is edge.wire.training_digest(TrainingSettings.declaration()), and
   clip_text the clip as the update's "c" metadata states it. */
typedef struct {
    char fleet[DMSKD_MAX_TEXT];
    char device[DMSKD_MAX_TEXT];
    char shard_id[DMSKD_MAX_TEXT];
    char shard_hash[DMSKD_MAX_TEXT];
    char student_hash[DMSKD_MAX_TEXT];
    int64_t rounds;
    char dp_mode[16];
    double noise_multiplier;
    dmskd_training training;
    double labelled_fraction;
    int64_t max_examples;
    unsigned update_bits;
    unsigned model_bits;
    char training_digest[DMSKD_TRAINING_DIGEST_CHARS + 1];
} dmskd_plan;

/* Parse and validate a plan as DevicePlan.from_json does (unknown or missing fields, ranges);
   DMSKD_PLAN_REJECTED names the field. */
dmskd_status dmskd_plan_parse(const uint8_t *json, size_t len, dmskd_plan *plan, dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
