/* The device loop (edge/agent.py's protocol, firmware subset: firmware_stubs/device/README.md).
 *
 * Single-threaded: dmskd_mqtt_poll delivers each chunk to on_chunk, which reassembles it, verifies the
 * fleet's signature and replay counter, and acts on it; between polls the loop resends what is not yet
 * acknowledged. All memory is static (device_limits.h); nothing is allocated. */
#include "device.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cohort_notice.h"
#include "device_limits.h"
#include "dmskd/blob.h"
#include "dmskd/compact_update.h"
#include "dmskd/chunk.h"
#include "dmskd/plan.h"
#include "dmskd/privacy.h"
#include "dmskd/sha256.h"
#include "outbox.h"
#include "trainer.h"

#define POLL_MS 100
#define PLAN_GRACE_MS 5000      /* after the manifest, a plan missing this long: not in the fleet's plan */
#define PLAN_WARNING_MS 30000   /* a device still without a plan says so this often */
#define MAX_IDLE_DOUBLINGS 3    /* the idle resend backs off to 8 x the resend interval */
#define REASSEMBLY_TTL_MS 600000u /* edge.chunking.ChunkAssembler's ttl_s */

typedef enum { STREAM_PLAN, STREAM_MODEL, STREAM_STEP, STREAM_COHORT, STREAM_MANIFEST, STREAM_NONE } stream_kind;
static const char *const STREAM_NAMES[] = {"plan", "model", "model-step", "cohort", "manifest"};

typedef struct {
    int64_t round;
    bool selected;
} cohort_decision;

static struct {
    dmskd_port *port;
    const dmskd_device_config *config;
    dmskd_entropy_pool entropy_pool; /* the port's entropy, read 256 bytes at a time */
    dmskd_entropy entropy;
    char prefix[96];
    char plan_topic[DMSKD_TOPIC_BYTES], status_topic[DMSKD_TOPIC_BYTES], will_topic[DMSKD_TOPIC_BYTES + 4];
    uint8_t will_chunk[64];
    char plan_filter[DMSKD_TOPIC_BYTES], models_filter[DMSKD_TOPIC_BYTES], steps_filter[DMSKD_TOPIC_BYTES];
    char cohort_filter[DMSKD_TOPIC_BYTES], manifest_filter[DMSKD_TOPIC_BYTES];
    dmskd_replay_entry guard_entries[8];
    dmskd_replay_guard guard;
    dmskd_assembler assembler;
    dmskd_reassembly_slot slots[DMSKD_REASSEMBLY_SLOTS];
    bool has_plan;
    dmskd_plan plan;
    bool has_model;
    int64_t version, round;
    size_t count;
    dmskd_tensor_spec specs[DMSKD_MAX_TENSORS];
    char names[DMSKD_MAX_TENSORS][DMSKD_MAX_NAME];
    dmskd_template tmpl;
    int64_t full_model_needed; /* -1: the steps serve */
    bool full_model_subscribed;
    cohort_decision decisions[DMSKD_NOTICES_HELD];
    size_t decisions_next;
    int64_t trained[DMSKD_ROUNDS_LISTED];
    size_t trained_count;
    int64_t last_trained_round;
    dmskd_outbox outbox;
    uint64_t round_opened_ms, last_heard_ms, manifest_ms, plan_warned_ms, started_ms;
    unsigned idles;
    bool finished;
    uint64_t up_bytes, down_bytes, up_messages, down_messages;
    uint64_t down_by_stream[STREAM_NONE + 1]; /* chunk bytes received per stream (STREAM_NONE: other) */
    uint32_t refused, ignored;
} dev;

static float global_w[DMSKD_MAX_PARAMS], local_w[DMSKD_MAX_PARAMS];
/* each slot: the message and one bit per chunk of at least DMSKD_CHUNK_MIN_LIMIT bytes */
#define SLOT_BYTES (DMSKD_MAX_MESSAGE_BYTES + DMSKD_MAX_MESSAGE_BYTES / 2048 + 64)
static uint8_t reassembly_memory[DMSKD_REASSEMBLY_SLOTS * SLOT_BYTES];
static uint8_t chunk_buf[DMSKD_MAX_CHUNK_BYTES];

static int port_entropy(void *ctx, uint8_t *out, size_t n) { return dmskd_port_entropy((dmskd_port *)ctx, out, n); }

#define LOG(level, ...) dmskd_port_log(dev.port, level, __VA_ARGS__)

static void refuse(const char *topic, const char *reason) {
    dev.refused++;
    LOG(DMSKD_LOG_ERROR, "%s: refused: %s on %.200s (%" PRIu32 " refused so far)", dev.config->device_id, reason, topic,
        dev.refused);
}

static void ignore(const char *topic, const char *reason) {
    dev.ignored++;
    LOG(DMSKD_LOG_ERROR, "%s: ignored: %s on %.200s (%" PRIu32 " ignored so far)", dev.config->device_id, reason, topic,
        dev.ignored);
}

/* --- publishing --- */

/* Publish a logical message as chunks on <topic>/<index>; false if the broker did not take every chunk. */
static bool publish_chunked(const char *topic, const uint8_t *payload, size_t len, bool retain, uint16_t *chunks) {
    dmskd_error err;
    uint16_t count = 0;
    if (dmskd_chunk_count(len, dev.config->chunk_limit, &count, &err) != DMSKD_OK) {
        LOG(DMSKD_LOG_ERROR, "cannot chunk %zu bytes for %s: %s", len, topic, err.message);
        return false;
    }
    uint8_t random_id[8];
    char id_text[17], key_topic[DMSKD_TOPIC_BYTES + 8];
    uint8_t key[8];
    if (dmskd_port_entropy(dev.port, random_id, sizeof random_id) != DMSKD_PORT_OK) return false;
    dmskd_hex(random_id, sizeof random_id, id_text);
    dmskd_message_key(id_text, key);
    for (uint16_t i = 0; i < count; i++) {
        size_t chunk_len = 0;
        if (dmskd_chunk_write(payload, len, key, dev.config->chunk_limit, i, chunk_buf, sizeof chunk_buf, &chunk_len,
                              &err) != DMSKD_OK) {
            LOG(DMSKD_LOG_ERROR, "cannot write chunk %u of %s: %s", (unsigned)i, topic, err.message);
            return false;
        }
        snprintf(key_topic, sizeof key_topic, "%s/%u", topic, (unsigned)i);
        if (dmskd_mqtt_publish(dev.port, key_topic, chunk_buf, chunk_len, retain) != DMSKD_PORT_OK) return false;
        dev.up_bytes += chunk_len;
        dev.up_messages++;
    }
    if (chunks != NULL) *chunks = count;
    return true;
}

static void update_topic(int64_t round, char *out, size_t cap) {
    snprintf(out, cap, "%s/round/%" PRId64 "/update/%.63s", dev.prefix, round, dev.config->device_id);
}

static void forget_update(const char *problem) {
    int64_t round = dev.outbox.round;
    dmskd_outbox_clear(&dev.outbox, dev.port);
    if (problem != NULL) {
        LOG(DMSKD_LOG_WARNING, "%s: round %" PRId64 " update dropped from the outbox: %s", dev.config->device_id,
            round, problem);
    }
}

/* Send the unacknowledged update again, unless its round closed before this device heard its fate. */
static void resend(void) {
    if (!dev.outbox.held) return;
    if (dev.has_model && dev.outbox.round < dev.round) {
        forget_update("its round closed before this device saw an acknowledgement");
        return;
    }
    char topic[DMSKD_TOPIC_BYTES];
    update_topic(dev.outbox.round, topic, sizeof topic);
    LOG(DMSKD_LOG_INFO, "%s: resending the round %" PRId64 " update (%zu bytes, not yet acknowledged)",
        dev.config->device_id, dev.outbox.round, dev.outbox.len);
    publish_chunked(topic, dev.outbox.blob, dev.outbox.len, false, NULL);
}

/* --- the global model --- */

static bool full_model_wanted(void) {
    return !dev.has_plan || dev.plan.model_bits == 32 || !dev.has_model || dev.full_model_needed >= 0;
}

static void sync_full_model_subscription(void) {
    bool wanted = full_model_wanted();
    if (wanted != dev.full_model_subscribed) {
        LOG(DMSKD_LOG_DEBUG, "%s: %s the full model's topic", dev.config->device_id,
            wanted ? "subscribing to" : "leaving");
    }
    if (wanted && !dev.full_model_subscribed) dmskd_mqtt_subscribe(dev.port, dev.models_filter);
    if (!wanted && dev.full_model_subscribed) dmskd_mqtt_unsubscribe(dev.port, dev.models_filter);
    dev.full_model_subscribed = wanted;
}

static void need_full_model(int64_t version) {
    if (dev.full_model_needed < version) dev.full_model_needed = version;
}

static void opened_round(int64_t version, int64_t round, const char *how) {
    bool new_round = !dev.has_model || round != dev.round;
    dev.has_model = true;
    dev.version = version;
    dev.round = round;
    if (new_round) dev.round_opened_ms = dmskd_port_clock_ms(dev.port);
    LOG(DMSKD_LOG_INFO, "%s: global model v%" PRId64 " (round %" PRId64 ", %zu parameters) %s", dev.config->device_id,
        version, round, dev.count, how);
}

/* Hold a full model: its tensors become the template every step and update is laid out by. */
static bool hold_weights(const dmskd_blob *blob, const char *topic) {
    size_t total = 0;
    for (size_t t = 0; t < blob->ntensors; t++) {
        const dmskd_tensor_view *view = &blob->tensors[t];
        total += dmskd_shape_elements(view->ndim, view->shape);
    }
    if (total > DMSKD_MAX_PARAMS || blob->ntensors > DMSKD_MAX_TENSORS) {
        char why[160];
        snprintf(why, sizeof why, "global model of %zu parameters exceeds this build's %d (rebuild with a larger "
                 "DMSKD_MAX_PARAMS)", total, DMSKD_MAX_PARAMS);
        ignore(topic, why);
        return false;
    }
    size_t at = 0;
    for (size_t t = 0; t < blob->ntensors; t++) {
        const dmskd_tensor_view *view = &blob->tensors[t];
        snprintf(dev.names[t], DMSKD_MAX_NAME, "%s", view->name);
        dev.specs[t].name = dev.names[t];
        dev.specs[t].ndim = view->ndim;
        memcpy(dev.specs[t].shape, view->shape, sizeof view->shape);
        size_t elements = dmskd_shape_elements(view->ndim, view->shape);
        for (size_t i = 0; i < elements; i++) global_w[at + i] = dmskd_view_f32(view, i);
        at += elements;
    }
    dev.tmpl.count = blob->ntensors;
    dev.tmpl.tensors = dev.specs;
    dev.count = total;
    return true;
}

static void on_model(const char *topic, const uint8_t *payload, size_t len) {
    dmskd_blob blob;
    dmskd_weights_meta meta;
    dmskd_error err;
    if (dmskd_decode_weights(payload, len, &blob, &meta, &err) != DMSKD_OK) {
        char why[DMSKD_ERROR_MESSAGE_BYTES + 32];
        snprintf(why, sizeof why, "invalid global model ignored: %s", err.message);
        ignore(topic, why);
        return;
    }
    if (strcmp(meta.fleet, dev.config->fleet) != 0) {
        ignore(topic, "global model of another fleet");
        return;
    }
    if (dev.full_model_needed >= 0 && meta.version >= dev.full_model_needed) dev.full_model_needed = -1;
    if (dev.has_model && meta.version == dev.version) {
        resend(); /* the aggregator (or a restarted broker) republished this round's model */
    } else if (!dev.has_model || meta.version > dev.version) {
        if (hold_weights(&blob, topic)) opened_round(meta.version, meta.round, "held (full model)");
    }
}

static void on_step(const char *topic, const uint8_t *payload, size_t len) {
    dmskd_blob blob;
    dmskd_step_meta meta;
    dmskd_error err;
    if (dmskd_decode_model_step(payload, len, &blob, &meta, &err) != DMSKD_OK) {
        char why[DMSKD_ERROR_MESSAGE_BYTES + 32];
        snprintf(why, sizeof why, "invalid model step ignored: %s", err.message);
        ignore(topic, why);
        return;
    }
    if (strcmp(meta.fleet, dev.config->fleet) != 0) {
        ignore(topic, "model step of another fleet");
        return;
    }
    if (dev.has_model && meta.version == dev.version) {
        resend(); /* this round's step again */
        return;
    }
    if (dev.has_model && meta.version < dev.version) return; /* an older step, retained before this device caught up */
    if (!dev.has_model || meta.base_version != dev.version) {
        need_full_model(meta.version); /* it missed a version (or holds none): the full one is retained */
        return;
    }
    if (dmskd_apply_model_step(&blob, &meta, &dev.tmpl, global_w, dev.count, &err) != DMSKD_OK) {
        char why[DMSKD_ERROR_MESSAGE_BYTES + 32];
        snprintf(why, sizeof why, "model step ignored: %s", err.message);
        ignore(topic, why);
        need_full_model(meta.version);
        return;
    }
    opened_round(meta.version, meta.round, "rebuilt from its step");
}

/* --- plan, cohort, manifest --- */

static void on_plan(const char *topic, const uint8_t *payload, size_t len) {
    dmskd_plan plan;
    dmskd_error err;
    if (dmskd_plan_parse(payload, len, &plan, &err) != DMSKD_OK) {
        char why[DMSKD_ERROR_MESSAGE_BYTES + 32];
        snprintf(why, sizeof why, "unreadable plan ignored: %s", err.message);
        ignore(topic, why);
        return;
    }
    if (strcmp(plan.device, dev.config->device_id) != 0 || strcmp(plan.fleet, dev.config->fleet) != 0) {
        ignore(topic, "plan for another device or fleet");
        return;
    }
    dev.plan = plan;
    dev.has_plan = true;
    LOG(DMSKD_LOG_INFO, "%s: plan accepted: shard %s (%s), %" PRId64 " rounds, dp %s, clip %g, update bits %u, "
        "model bits %u", dev.config->device_id, plan.shard_id, plan.shard_hash, plan.rounds, plan.dp_mode,
        plan.training.clip, plan.update_bits, plan.model_bits);
}

static void on_round_result(const dmskd_cohort_notice *notice) {
    if (!dev.outbox.held || notice->ack_round != dev.outbox.round) return;
    uint8_t digest[DMSKD_SHA256_BYTES];
    char hex[2 * DMSKD_SHA256_BYTES + 1];
    dmskd_sha256(dev.outbox.blob, dev.outbox.len, digest);
    dmskd_hex(digest, DMSKD_ACK_DIGEST_CHARS / 2, hex);
    if (notice->ack_accepted && strcmp(hex, notice->ack_digest) == 0) {
        int64_t round = dev.outbox.round;
        forget_update(NULL);
        LOG(DMSKD_LOG_INFO, "%s: round %" PRId64 " update acknowledged (accepted by the aggregator)",
            dev.config->device_id, round);
    } else {
        forget_update("the round closed without it (late, or rejected: see the aggregator's log)");
    }
}

static void on_cohort(const char *topic, const uint8_t *payload, size_t len) {
    dmskd_cohort_notice notice;
    const char *why = NULL;
    if (!dmskd_cohort_notice_parse(payload, len, &notice, &why)) {
        char text[160];
        snprintf(text, sizeof text, "unreadable cohort message ignored: %s", why);
        ignore(topic, text);
        return;
    }
    dev.decisions[dev.decisions_next] = (cohort_decision){notice.round, notice.selected};
    dev.decisions_next = (dev.decisions_next + 1) % DMSKD_NOTICES_HELD;
    LOG(DMSKD_LOG_INFO, "%s: round %" PRId64 ": %s", dev.config->device_id, notice.round,
        notice.selected ? "sampled" : "not sampled");
    if (notice.has_ack) on_round_result(&notice);
}

static bool sampled_for(int64_t round) {
    for (size_t i = 0; i < DMSKD_NOTICES_HELD; i++) {
        if (dev.decisions[i].round == round) return dev.decisions[i].selected;
    }
    return false;
}

/* --- local training and the update --- */

static void send_update(int64_t round, const float *delta, float loss) {
    const dmskd_plan *p = &dev.plan;
    dmskd_update_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.fleet, sizeof meta.fleet, "%s", p->fleet);
    snprintf(meta.device, sizeof meta.device, "%s", p->device);
    meta.round = round;
    meta.base_version = dev.version;
    meta.num_examples = (int64_t)dev.config->n < p->max_examples ? (int64_t)dev.config->n : p->max_examples;
    meta.clip = p->training.clip;
    meta.noise_multiplier = strcmp(p->dp_mode, "local") == 0 ? p->noise_multiplier : 0.0;
    snprintf(meta.dp_mode, sizeof meta.dp_mode, "%s", p->dp_mode);
    meta.encoding = dmskd_encoding_for_bits(p->update_bits);
    snprintf(meta.training, sizeof meta.training, "%s", p->training_digest);
    dmskd_tensor tensors[DMSKD_MAX_TENSORS];
    size_t at = 0;
    for (size_t t = 0; t < dev.tmpl.count; t++) {
        const dmskd_tensor_spec *s = &dev.specs[t];
        tensors[t] = (dmskd_tensor){s->name, DMSKD_F32, s->ndim, {0}, delta + at};
        memcpy(tensors[t].shape, s->shape, sizeof s->shape);
        at += dmskd_shape_elements(s->ndim, s->shape);
    }
    dmskd_error err;
    size_t len = 0;
    unsigned bits = dmskd_encoding_bits(meta.encoding); /* quantised: protocol 3's compact container, as edge/ */
    dmskd_status st = bits == 32 ? dmskd_encode_update(tensors, dev.tmpl.count, &meta, &dev.entropy, dev.outbox.blob,
                                                       sizeof dev.outbox.blob, &len, &err)
                                 : dmskd_encode_compact_update(tensors, dev.tmpl.count, &meta, &dev.entropy,
                                                               dev.outbox.blob, sizeof dev.outbox.blob, &len, &err);
    if (st != DMSKD_OK) {
        LOG(DMSKD_LOG_ERROR, "%s: cannot encode the round %" PRId64 " update: %s", dev.config->device_id, round,
            err.message);
        return;
    }
    if (dmskd_outbox_store(&dev.outbox, dev.port, round, len) != DMSKD_PORT_OK) {
        LOG(DMSKD_LOG_ERROR, "%s: the round %" PRId64 " update could not be stored in the outbox; sending it anyway",
            dev.config->device_id, round);
    }
    if (dev.trained_count < DMSKD_ROUNDS_LISTED) dev.trained[dev.trained_count++] = round;
    char topic[DMSKD_TOPIC_BYTES];
    update_topic(round, topic, sizeof topic);
    uint16_t chunks = 0;
    bool sent = publish_chunked(topic, dev.outbox.blob, len, false, &chunks);
    double seconds = (double)(dmskd_port_clock_ms(dev.port) - dev.round_opened_ms) / 1000.0;
    LOG(DMSKD_LOG_INFO, "%s: round %" PRId64 " update %s: %zu bytes in %u chunks, %s, loss %.4f, %.3f s after the "
        "round's model; traffic so far up %" PRIu64 " bytes, down %" PRIu64 " bytes", dev.config->device_id, round,
        sent ? "published" : "stored (publish failed: resent later)", len, (unsigned)chunks,
        dmskd_encoding_name(meta.encoding), (double)loss, seconds, dev.up_bytes, dev.down_bytes);
}

static void train_round(int64_t round) {
    dev.last_trained_round = round; /* attempted: a round that cannot be trained is not retried */
    const char *held = dmskd_trainer_shard_hash();
    if (held[0] != '\0' && strcmp(held, dev.plan.shard_hash) != 0) {
        LOG(DMSKD_LOG_ERROR, "%s: round %" PRId64 ": the plan names shard %s (hash %s) but this firmware runs shard "
            "hash %s; build it with that shard (python -m export)", dev.config->device_id, round, dev.plan.shard_id,
            dev.plan.shard_hash, held);
        return;
    }
    const dmskd_training *t = &dev.plan.training;
    dmskd_train_job job = {dev.config->x, dev.config->labels, dev.config->n, dev.config->dim,
                           dev.plan.labelled_fraction, t->alpha, t->tau, t->lr, t->local_epochs, t->batch_size,
                           &dev.tmpl, global_w, dev.count, &dev.entropy};
    char why[256];
    float loss = 0.0f;
    if (!dmskd_trainer_run(&job, local_w, &loss, why, sizeof why)) {
        LOG(DMSKD_LOG_ERROR, "%s: sampled for round %" PRId64 " but not training: %s", dev.config->device_id, round,
            why);
        return;
    }
    float *tensors[DMSKD_MAX_TENSORS];
    size_t sizes[DMSKD_MAX_TENSORS], at = 0;
    for (size_t i = 0; i < dev.count; i++) local_w[i] -= global_w[i]; /* the delta, in float32 as edge/ */
    for (size_t k = 0; k < dev.tmpl.count; k++) {
        sizes[k] = dmskd_shape_elements(dev.specs[k].ndim, dev.specs[k].shape);
        tensors[k] = local_w + at;
        at += sizes[k];
    }
    dmskd_error err;
    double norm = 0.0;
    if (dmskd_clip_update(tensors, sizes, dev.tmpl.count, t->clip, &norm, &err) != DMSKD_OK ||
        (strcmp(dev.plan.dp_mode, "local") == 0 &&
         dmskd_privatise_local(tensors, sizes, dev.tmpl.count, t->clip, dev.plan.noise_multiplier, &dev.entropy,
                               &err) != DMSKD_OK)) {
        LOG(DMSKD_LOG_ERROR, "%s: round %" PRId64 " update not privatised: %s", dev.config->device_id, round,
            err.message);
        return;
    }
    send_update(round, local_w, loss);
}

/* Train when everything the round needs is held and the aggregator said this device was sampled. */
static void maybe_train(void) {
    if (!dev.has_plan || !dev.has_model || dev.finished) return;
    if (dev.round >= dev.plan.rounds) {
        dev.finished = true; /* the signed final model: the run is over */
        return;
    }
    if (dev.round <= dev.last_trained_round || !sampled_for(dev.round)) return;
    train_round(dev.round);
}

/* --- dispatch --- */

static stream_kind stream_of(const char *base) {
    size_t n = strlen(dev.prefix);
    if (strncmp(base, dev.prefix, n) != 0 || base[n] != '/') return STREAM_NONE;
    const char *rest = base + n + 1;
    if (strcmp(base, dev.plan_topic) == 0) return STREAM_PLAN;
    if (strncmp(rest, "model/", 6) == 0) return STREAM_MODEL;
    if (strcmp(rest, "step") == 0) return STREAM_STEP;
    if (strncmp(rest, "cohort/", 7) == 0) return STREAM_COHORT;
    if (strcmp(rest, "fleet") == 0) return STREAM_MANIFEST;
    return STREAM_NONE;
}

static void on_message(const char *base, const uint8_t *message, size_t len) {
    stream_kind kind = stream_of(base);
    if (kind == STREAM_NONE) return;
    dmskd_opened opened;
    dmskd_error err;
    int is_new = 0;
    if (dmskd_open_envelope(dev.config->fleet_key, base, message, len, &opened, &err) != DMSKD_OK ||
        dmskd_replay_admit(&dev.guard, STREAM_NAMES[kind], &opened, &is_new, &err) != DMSKD_OK) {
        refuse(base, err.message);
        return;
    }
    dev.last_heard_ms = dmskd_port_clock_ms(dev.port);
    dev.idles = 0;
    switch (kind) {
    case STREAM_PLAN: on_plan(base, opened.payload, opened.payload_len); break;
    case STREAM_MODEL: on_model(base, opened.payload, opened.payload_len); break;
    case STREAM_STEP: on_step(base, opened.payload, opened.payload_len); break;
    case STREAM_COHORT: on_cohort(base, opened.payload, opened.payload_len); break;
    case STREAM_MANIFEST:
        if (dev.manifest_ms == 0) dev.manifest_ms = dmskd_port_clock_ms(dev.port);
        break;
    case STREAM_NONE: break;
    }
    sync_full_model_subscription(); /* before training: a full model published meanwhile is not wanted */
    maybe_train();
}

static void on_chunk(void *ctx, const char *topic, const uint8_t *payload, size_t len) {
    (void)ctx;
    if (len == 0) return; /* a cleared retained message */
    if (len > DMSKD_MAX_CHUNK_BYTES) { /* more than an MCU's network buffer receives: the host port does the same */
        LOG(DMSKD_LOG_WARNING, "%s: dropped a %zu-byte chunk on %.120s: this build receives chunks of at most "
            "DMSKD_MAX_CHUNK_BYTES=%d bytes; run the fleet with a chunk limit of at most that (chunk_limit in the "
            "bundle's bundle.json)", dev.config->device_id, len, topic, DMSKD_MAX_CHUNK_BYTES);
        return;
    }
    dev.down_bytes += len;
    dev.down_messages++;
    char base[DMSKD_MAX_STREAM];
    const char *slash = strrchr(topic, '/');
    size_t base_len = slash == NULL ? 0 : (size_t)(slash - topic);
    if (base_len == 0 || base_len >= sizeof base) return;
    memcpy(base, topic, base_len);
    base[base_len] = '\0';
    dev.down_by_stream[stream_of(base)] += len;
    const uint8_t *message = NULL;
    size_t message_len = 0;
    dmskd_error err;
    if (dmskd_assembler_add_at(&dev.assembler, dmskd_port_clock_ms(dev.port), base, payload, len, &message,
                               &message_len, &err) != DMSKD_OK) {
        LOG(DMSKD_LOG_WARNING, "%s: dropped chunk on %.120s: %s", dev.config->device_id, topic, err.message);
        return;
    }
    if (message != NULL) on_message(base, message, message_len);
}

static void on_connected(void *ctx, bool reconnected) {
    (void)ctx;
    publish_chunked(dev.status_topic, (const uint8_t *)"online", 6, true, NULL);
    if (reconnected) resend();
}

/* The Last Will: "offline" framed as a one-chunk message on status/<device>/0, as edge.mqtt_session does. */
static bool frame_will(dmskd_mqtt_config *mqtt) {
    uint8_t key[8];
    dmskd_error err;
    size_t len = 0;
    dmskd_message_key("will", key);
    if (dmskd_chunk_write((const uint8_t *)"offline", 7, key, DMSKD_CHUNK_MIN_LIMIT, 0, dev.will_chunk,
                          sizeof dev.will_chunk, &len, &err) != DMSKD_OK) {
        LOG(DMSKD_LOG_ERROR, "cannot frame the Last Will: %s", err.message);
        return false;
    }
    snprintf(dev.will_topic, sizeof dev.will_topic, "%s/0", dev.status_topic);
    mqtt->will_topic = dev.will_topic;
    mqtt->will_payload = dev.will_chunk;
    mqtt->will_len = len;
    return true;
}

/* --- the loop --- */

/* After a silence: resend what is unacknowledged, or ask the broker again for the retained model and notices. */
static void resync(void) {
    if (dev.outbox.held) {
        resend();
        dmskd_mqtt_subscribe(dev.port, dev.cohort_filter); /* its acknowledgement comes there */
    } else {
        dmskd_mqtt_subscribe(dev.port, dev.steps_filter);
        need_full_model(dev.has_model ? dev.version : 0);
        sync_full_model_subscription();
        dmskd_mqtt_subscribe(dev.port, dev.models_filter);
        dmskd_mqtt_subscribe(dev.port, dev.cohort_filter);
    }
}

static bool setup(dmskd_port *port, const dmskd_device_config *config) {
    memset(&dev, 0, sizeof dev);
    dev.port = port;
    dev.config = config;
    dev.entropy = dmskd_entropy_pooled(&dev.entropy_pool, (dmskd_entropy){port_entropy, port});
    dev.guard = (dmskd_replay_guard){dev.guard_entries, sizeof dev.guard_entries / sizeof dev.guard_entries[0]};
    dev.full_model_needed = -1;
    dev.last_trained_round = -1;
    for (size_t i = 0; i < DMSKD_NOTICES_HELD; i++) dev.decisions[i].round = -1;
    const char *d = config->device_id;
    snprintf(dev.prefix, sizeof dev.prefix, "dmskd/%.63s", config->fleet);
    snprintf(dev.plan_topic, sizeof dev.plan_topic, "%s/plan/%.63s", dev.prefix, d);
    snprintf(dev.plan_filter, sizeof dev.plan_filter, "%s/plan/%.63s/+", dev.prefix, d);
    snprintf(dev.models_filter, sizeof dev.models_filter, "%s/model/+/+", dev.prefix);
    snprintf(dev.steps_filter, sizeof dev.steps_filter, "%s/step/+", dev.prefix);
    snprintf(dev.cohort_filter, sizeof dev.cohort_filter, "%s/cohort/%.63s/+", dev.prefix, d);
    snprintf(dev.manifest_filter, sizeof dev.manifest_filter, "%s/fleet/+", dev.prefix);
    snprintf(dev.status_topic, sizeof dev.status_topic, "%s/status/%.63s", dev.prefix, d);
    dmskd_error err;
    size_t needed = dmskd_assembler_memory(DMSKD_REASSEMBLY_SLOTS, DMSKD_MAX_MESSAGE_BYTES, DMSKD_CHUNK_MIN_LIMIT);
    if (needed > sizeof reassembly_memory ||
        dmskd_assembler_init(&dev.assembler, dev.slots, DMSKD_REASSEMBLY_SLOTS, reassembly_memory,
                             sizeof reassembly_memory, DMSKD_MAX_MESSAGE_BYTES, DMSKD_CHUNK_MIN_LIMIT, 2,
                             &err) != DMSKD_OK) {
        LOG(DMSKD_LOG_ERROR, "reassembly needs %zu bytes, this build reserves %zu", needed, sizeof reassembly_memory);
        return false;
    }
    dmskd_assembler_set_ttl(&dev.assembler, REASSEMBLY_TTL_MS); /* a message that never completes is dropped */
    if (config->chunk_limit < DMSKD_CHUNK_MIN_LIMIT || config->chunk_limit > sizeof chunk_buf) {
        LOG(DMSKD_LOG_ERROR, "chunk limit %zu outside %d..%zu; pass --chunk-limit in that range", config->chunk_limit,
            DMSKD_CHUNK_MIN_LIMIT, sizeof chunk_buf);
        return false;
    }
    if (dmskd_outbox_load(&dev.outbox, port)) {
        dev.last_trained_round = dev.outbox.round; /* resent, not retrained */
        if (dev.trained_count < DMSKD_ROUNDS_LISTED) dev.trained[dev.trained_count++] = dev.outbox.round;
        LOG(DMSKD_LOG_INFO, "%s: outbox holds the round %" PRId64 " update (%zu bytes), not yet acknowledged",
            d, dev.outbox.round, dev.outbox.len);
    }
    return true;
}

static void report_finish(void) {
    printf("%s: rounds done [", dev.config->device_id);
    for (size_t i = 0; i < dev.trained_count; i++) printf(i ? ", %" PRId64 : "%" PRId64, dev.trained[i]);
    printf("]\n");
    printf("%s: traffic up %" PRIu64 " bytes in %" PRIu64 " messages, down %" PRIu64 " bytes in %" PRIu64
           " messages\n", dev.config->device_id, dev.up_bytes, dev.up_messages, dev.down_bytes, dev.down_messages);
    printf("%s: reassembly peak %zu of %d slots, %u evictions (%u for age)\n", dev.config->device_id,
           dev.assembler.peak_pending, DMSKD_REASSEMBLY_SLOTS, (unsigned)dev.assembler.evictions,
           (unsigned)dev.assembler.expirations);
    printf("%s: traffic down by stream:", dev.config->device_id);
    for (int k = 0; k <= STREAM_NONE; k++) {
        printf(" %s %" PRIu64, k == STREAM_NONE ? "other" : STREAM_NAMES[k], dev.down_by_stream[k]);
    }
    printf("\n");
    fflush(stdout);
}

static bool idle_due(uint64_t now) {
    uint64_t interval = (uint64_t)dev.config->resend_interval_ms << (dev.idles < MAX_IDLE_DOUBLINGS ? dev.idles
                                                                                                     : MAX_IDLE_DOUBLINGS);
    return now - dev.last_heard_ms >= interval;
}

int dmskd_device_run(dmskd_port *port, const dmskd_mqtt_config *mqtt, const dmskd_device_config *config,
                     volatile sig_atomic_t *stop) {
    if (!setup(port, config)) return 1;
    dmskd_mqtt_config session = *mqtt;
    if (!frame_will(&session)) return 1;
    dmskd_mqtt_subscribe(port, dev.plan_filter);
    dmskd_mqtt_subscribe(port, dev.manifest_filter);
    dmskd_mqtt_subscribe(port, dev.models_filter);
    dev.full_model_subscribed = true;
    dmskd_mqtt_subscribe(port, dev.steps_filter);
    dmskd_mqtt_subscribe(port, dev.cohort_filter);
    if (dmskd_mqtt_connect(port, &session, on_chunk, on_connected, NULL) != DMSKD_PORT_OK) return 1;
    dev.started_ms = dev.last_heard_ms = dmskd_port_clock_ms(port);
    LOG(DMSKD_LOG_INFO, "%s: connected to %s:%u as %s; fleet %s; %zu local samples of %zu features; training %s",
        config->device_id, mqtt->host, (unsigned)mqtt->port, mqtt->client_id, config->fleet, config->n, config->dim,
        dmskd_trainer_available() ? "through TFLite-Micro" : "unavailable (built without TFLM_DIR)");
    resend();
    while (!dev.finished && !*stop) {
        dmskd_mqtt_poll(port, POLL_MS);
        uint64_t now = dmskd_port_clock_ms(port);
        if (idle_due(now)) {
            dev.idles++;
            dev.last_heard_ms = now;
            resync();
        }
        if (!dev.has_plan && dev.manifest_ms != 0 && now - dev.manifest_ms >= PLAN_GRACE_MS) {
            LOG(DMSKD_LOG_ERROR, "device '%s' is not in fleet '%s''s plan: the aggregator published its manifest but "
                "no plan for this id; check --device against the bundle's plans.json (and --fleet)", config->device_id,
                config->fleet);
            dmskd_mqtt_disconnect(port);
            return 1;
        }
        if (!dev.has_plan && now - dev.started_ms - dev.plan_warned_ms >= PLAN_WARNING_MS) {
            dev.plan_warned_ms = now - dev.started_ms;
            LOG(DMSKD_LOG_WARNING, "%s: no plan after %.0f s on %s at %s:%u: is the aggregator running (python -m "
                "cloud aggregate), and are --fleet and --broker its?", config->device_id,
                (double)dev.plan_warned_ms / 1000.0, dev.prefix, mqtt->host, (unsigned)mqtt->port);
        }
    }
    if (dev.finished) {
        LOG(DMSKD_LOG_INFO, "%s: final model v%" PRId64 " (round %" PRId64 ") received: the run is over",
            config->device_id, dev.version, dev.round);
    }
    publish_chunked(dev.status_topic, (const uint8_t *)"offline", 7, true, NULL);
    report_finish();
    dmskd_mqtt_disconnect(port);
    return 0;
}
