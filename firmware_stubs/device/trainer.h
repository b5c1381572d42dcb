/* Local training of the student from the global weights: the seam between the device loop and the
 * TFLite-Micro glue (trainer_tflm.c), or its absence in a build without TFLM_DIR (trainer_absent.c). */
#ifndef DMSKD_TRAINER_H
#define DMSKD_TRAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmskd/entropy.h"
#include "dmskd/tensor.h"

/* One local round: the plan's settings, the samples and the global model (flat, in template order). */
typedef struct {
    const float *x;          /* n * dim features */
    const int32_t *labels;   /* n labels (-1 unlabelled) or NULL */
    size_t n, dim;
    double labelled_fraction;
    double alpha, tau, lr;
    int64_t local_epochs;
    int64_t batch_size;
    const dmskd_template *tmpl;  /* the global model's tensors, by name */
    const float *global;         /* template-order weights */
    size_t count;                /* parameters */
    const dmskd_entropy *shuffle; /* the order of the samples, epoch after epoch */
} dmskd_train_job;

/* True when this build can train (it was configured with TFLM_DIR). */
bool dmskd_trainer_available(void);

/* Prepare the trainer once (the configuration's shard and train step in their arenas); false with `why`. */
bool dmskd_trainer_init(char *why, size_t why_cap);

/* Train the job's local epochs in local_out[count] (template order; it starts as a copy of the global
 * weights and is the train step's own buffer, so there is no second copy); *mean_loss gets the last
 * epoch's mean loss. false with `why` naming the problem (local_out is then undefined). */
bool dmskd_trainer_run(const dmskd_train_job *job, float *local_out, float *mean_loss, char *why, size_t why_cap);

/* The content hash (sha256, first 16 hex) of the shard this device runs, "" when it holds none. */
const char *dmskd_trainer_shard_hash(void);

#endif
