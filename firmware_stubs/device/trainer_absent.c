/* The trainer of a build without TFLite-Micro: the device speaks the whole protocol but cannot train. */
#include <stdio.h>

#include "trainer.h"

bool dmskd_trainer_available(void) { return false; }

bool dmskd_trainer_init(char *why, size_t why_cap) {
    (void)why;
    (void)why_cap;
    return true; /* nothing to load: a sampled round is logged as untrainable */
}

bool dmskd_trainer_run(const dmskd_train_job *job, float *local_out, float *mean_loss, char *why, size_t why_cap) {
    (void)job;
    (void)local_out;
    (void)mean_loss;
    snprintf(why, why_cap, "this firmware was built without TFLite-Micro and cannot train; configure with "
             "-DTFLM_DIR=<tflite-micro checkout> (firmware_stubs/README.md)");
    return false;
}

const char *dmskd_trainer_shard_hash(void) { return ""; }
