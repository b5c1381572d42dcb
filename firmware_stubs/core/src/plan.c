/* The device plan (edge.plan.DevicePlan.from_json) and its training declaration digest
   (edge.wire.training_digest of TrainingSettings.declaration(): json.dumps(asdict(...), sort_keys=True)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmskd/plan.h"
#include "dmskd/sha256.h"
#include "json_scan.h"
#include "dmskd/format.h"

#define REJECT(...) dmskd_fail(err, DMSKD_PLAN_REJECTED, __VA_ARGS__)

typedef struct {
    char text[40];  /* the number as Python's json.dumps writes it back (ints bare, floats as repr) */
    double value;
    int is_int;
} number;

/* A JSON number (not a bool, not a string) as Python would hold it. */
static int read_number(js_cursor *c, number *n) {
    const char *s;
    size_t len;
    if (!js_number(c, &s, &len)) return 0;
    char buf[64];
    if (len >= sizeof buf) { c->error = "number too long"; return 0; }
    memcpy(buf, s, len);
    buf[len] = '\0';
    n->is_int = strpbrk(buf, ".eE") == NULL;
    n->value = strtod(buf, NULL);
    if (n->is_int) {
        if (len > 18) { c->error = "integer too large"; return 0; }
        dmskd_format(n->text, sizeof n->text, "%lld", strtoll(buf, NULL, 10));
    } else if (dmskd_format_python_float(n->value, n->text, sizeof n->text) != DMSKD_OK) {
        c->error = "number out of range";
        return 0;
    }
    return 1;
}

typedef struct {
    number alpha, tau, lr, local_epochs, batch_size, clip;
} training_numbers;

static void default_training(training_numbers *t) {
    static const struct { double v; int is_int; } d[6] = {{0.7, 0}, {2.0, 0}, {0.1, 0}, {3, 1}, {16, 1}, {1.0, 0}};
    number *fields[6] = {&t->alpha, &t->tau, &t->lr, &t->local_epochs, &t->batch_size, &t->clip};
    for (int i = 0; i < 6; i++) {
        fields[i]->value = d[i].v;
        fields[i]->is_int = d[i].is_int;
        if (d[i].is_int) dmskd_format(fields[i]->text, sizeof fields[i]->text, "%d", (int)d[i].v);
        else dmskd_format_python_float(d[i].v, fields[i]->text, sizeof fields[i]->text);
    }
}

static dmskd_status parse_training(js_cursor *c, training_numbers *t, const char *device, dmskd_error *err) {
    static const char *const names[6] = {"alpha", "tau", "lr", "local_epochs", "batch_size", "clip"};
    number *fields[6] = {&t->alpha, &t->tau, &t->lr, &t->local_epochs, &t->batch_size, &t->clip};
    if (js_peek(c) != '{') {
        return REJECT("plan field 'training' must be an object of ['alpha', 'tau', 'lr', 'local_epochs', "
                      "'batch_size', 'clip']");
    }
    c->p++;
    if (js_eat(c, '}')) return DMSKD_OK;
    do {
        char key[32];
        int overlong = 0, known = -1;
        if (!js_string(c, key, sizeof key, &overlong) || !js_expect(c, ':')) break;
        for (int i = 0; i < 6 && !overlong; i++) if (strcmp(key, names[i]) == 0) known = i;
        if (known < 0) return REJECT("plan's training settings have unknown fields ['%s']; upgrade the device runtime",
                                     key);
        int ch = js_peek(c);
        if (ch != '-' && (ch < '0' || ch > '9')) {
            return REJECT("plan for %s: training settings: field '%s' must be %s", device, names[known],
                          known == 3 || known == 4 ? "int" : "float");
        }
        if (!read_number(c, fields[known])) break;
        if ((known == 3 || known == 4) && !fields[known]->is_int) {
            return REJECT("plan for %s: training settings: field '%s' must be int, got %s", device, names[known],
                          fields[known]->text);
        }
    } while (js_eat(c, ','));
    if (c->error == NULL) js_expect(c, '}');
    return c->error ? REJECT("plan payload is not JSON: %s", c->error) : DMSKD_OK;
}

static int text_field(js_cursor *c, char *out, size_t cap) {
    int overlong = 0;
    if (js_peek(c) != '"') return 0;
    return js_string(c, out, cap, &overlong) && !overlong;
}

dmskd_status dmskd_plan_parse(const uint8_t *json, size_t len, dmskd_plan *plan, dmskd_error *err) {
    enum { FLEET, DEVICE, SHARD_ID, SHARD_HASH, STUDENT_HASH, ROUNDS, DP_MODE, NOISE, TRAINING, LABELLED, MAX_EX,
           UPDATE_BITS, MODEL_BITS, NFIELDS };
    static const char *const names[NFIELDS] = {"fleet", "device", "shard_id", "shard_hash", "student_hash", "rounds",
                                               "dp_mode", "noise_multiplier", "training", "labelled_fraction",
                                               "max_examples", "update_bits", "model_bits"};
    int seen[NFIELDS] = {0};
    training_numbers t;
    number n;
    dmskd_error_clear(err);
    memset(plan, 0, sizeof *plan);
    dmskd_format(plan->dp_mode, sizeof plan->dp_mode, "none");
    plan->labelled_fraction = 1.0;
    plan->max_examples = 100000;
    plan->update_bits = plan->model_bits = 32;
    dmskd_format(plan->device, sizeof plan->device, "?");
    default_training(&t);
    if (!js_valid_utf8(json, len)) return REJECT("plan payload is not JSON: not UTF-8");
    js_cursor c = js_open(json, len);
    if (js_peek(&c) != '{') return REJECT("plan payload must be a JSON object of plan fields");
    c.p++;
    char unknown[96] = "";
    if (!js_eat(&c, '}')) {
        do {
            char key[32];
            int overlong = 0, f = -1;
            if (!js_string(&c, key, sizeof key, &overlong) || !js_expect(&c, ':')) break;
            for (int i = 0; i < NFIELDS && !overlong; i++) if (strcmp(key, names[i]) == 0) f = i;
            if (f < 0) {
                size_t u = strlen(unknown);
                dmskd_format(unknown + u, sizeof unknown - u, "%s'%.32s'", u ? ", " : "", key);
                if (!js_skip(&c)) break;
                continue;
            }
            seen[f] = 1;
            int ok = 1;
            switch (f) {
            case FLEET: ok = text_field(&c, plan->fleet, sizeof plan->fleet); break;
            case DEVICE: ok = text_field(&c, plan->device, sizeof plan->device); break;
            case SHARD_ID: ok = text_field(&c, plan->shard_id, sizeof plan->shard_id); break;
            case SHARD_HASH: ok = text_field(&c, plan->shard_hash, sizeof plan->shard_hash); break;
            case STUDENT_HASH: ok = text_field(&c, plan->student_hash, sizeof plan->student_hash); break;
            case DP_MODE: ok = text_field(&c, plan->dp_mode, sizeof plan->dp_mode); break;
            case TRAINING: {
                dmskd_status st = parse_training(&c, &t, plan->device, err);
                if (st != DMSKD_OK) return st;
                break;
            }
            default: {
                int ch = js_peek(&c);
                ok = (ch == '-' || (ch >= '0' && ch <= '9')) && read_number(&c, &n);
                int wants_int = f == ROUNDS || f == MAX_EX || f == UPDATE_BITS || f == MODEL_BITS;
                if (ok && wants_int && !n.is_int) ok = 0;
                if (!ok && c.error == NULL) {
                    return REJECT("plan for %s: field '%s' must be %s", plan->device, key, wants_int ? "int" : "float");
                }
                if (f == ROUNDS) plan->rounds = (int64_t)n.value;
                else if (f == MAX_EX) plan->max_examples = (int64_t)n.value;
                else if (f == UPDATE_BITS) plan->update_bits = (unsigned)(n.value >= 0 && n.value < 1e9 ? n.value : 0);
                else if (f == MODEL_BITS) plan->model_bits = (unsigned)(n.value >= 0 && n.value < 1e9 ? n.value : 0);
                else if (f == NOISE) plan->noise_multiplier = n.value;
                else if (f == LABELLED) plan->labelled_fraction = n.value;
            }
            }
            if (!ok && c.error == NULL) {
                return REJECT("plan for %s: field '%s' must be str (at most %d bytes)", plan->device, key,
                              DMSKD_MAX_TEXT - 1);
            }
        } while (c.error == NULL && js_eat(&c, ','));
        if (c.error == NULL) js_expect(&c, '}');
    }
    if (c.error == NULL && js_peek(&c) != -1) c.error = "trailing bytes";
    if (c.error != NULL) return REJECT("plan payload is not JSON: %s", c.error);
    if (unknown[0]) return REJECT("plan has unknown fields [%s]; upgrade the device runtime", unknown);
    char missing[128] = "";
    for (int i = 0; i <= ROUNDS; i++) {
        if (!seen[i]) {
            size_t m = strlen(missing);
            dmskd_format(missing + m, sizeof missing - m, "%s'%s'", m ? ", " : "", names[i]);
        }
    }
    if (missing[0]) return REJECT("plan for %s is missing fields [%s]", plan->device, missing);
    /* TrainingSettings.__post_init__ */
    if (!(t.alpha.value >= 0 && t.alpha.value <= 1)) {
        return REJECT("plan for %s: alpha must be in [0, 1] (--alpha), got %s", plan->device, t.alpha.text);
    }
    const number *positive[3] = {&t.tau, &t.lr, &t.clip};
    static const char *const positive_names[3] = {"tau", "lr", "clip"};
    for (int i = 0; i < 3; i++) {
        if (!(positive[i]->value > 0 && isfinite(positive[i]->value))) {
            return REJECT("plan for %s: %s must be a positive number (--%s), got %s", plan->device, positive_names[i],
                          positive_names[i], positive[i]->text);
        }
    }
    if (t.local_epochs.value < 1 || t.batch_size.value < 1) {
        return REJECT("plan for %s: local_epochs and batch_size must be at least 1 (--local-epochs, --batch-size), got "
                      "%s and %s", plan->device, t.local_epochs.text, t.batch_size.text);
    }
    /* DevicePlan.__post_init__ */
    if (strcmp(plan->dp_mode, "none") && strcmp(plan->dp_mode, "local") && strcmp(plan->dp_mode, "central")) {
        return REJECT("plan for %s: dp_mode '%s' is not one of ('none', 'local', 'central')", plan->device,
                      plan->dp_mode);
    }
    if (!(plan->labelled_fraction >= 0 && plan->labelled_fraction <= 1)) {
        return REJECT("plan for %s: labelled_fraction must be in [0, 1], got %g", plan->device,
                      plan->labelled_fraction);
    }
    unsigned bits[2] = {plan->update_bits, plan->model_bits};
    static const char *const bit_names[2] = {"update_bits", "model_bits"};
    for (int i = 0; i < 2; i++) {
        if (bits[i] != 32 && bits[i] != 8 && bits[i] != 4 && bits[i] != 2) {
            return REJECT("plan for %s: %s must be one of (32, 8, 4, 2), got %u", plan->device, bit_names[i], bits[i]);
        }
    }
    if (plan->max_examples < 1) {
        return REJECT("plan for %s: max_examples must be at least 1, got %lld", plan->device,
                      (long long)plan->max_examples);
    }
    if (plan->noise_multiplier < 0 || plan->rounds < 1) {
        return REJECT("plan for %s: need noise_multiplier >= 0 and rounds >= 1", plan->device);
    }
    plan->training.alpha = t.alpha.value;
    plan->training.tau = t.tau.value;
    plan->training.lr = t.lr.value;
    plan->training.local_epochs = (int64_t)t.local_epochs.value;
    plan->training.batch_size = (int64_t)t.batch_size.value;
    plan->training.clip = t.clip.value;
    char declaration[320];
    dmskd_format(declaration, sizeof declaration,
             "{\"alpha\": %s, \"batch_size\": %s, \"clip\": %s, \"local_epochs\": %s, \"lr\": %s, \"tau\": %s}",
             t.alpha.text, t.batch_size.text, t.clip.text, t.local_epochs.text, t.lr.text, t.tau.text);
    uint8_t digest[DMSKD_SHA256_BYTES];
    dmskd_sha256(declaration, strlen(declaration), digest);
    dmskd_hex(digest, DMSKD_TRAINING_DIGEST_CHARS / 2, plan->training_digest);
    return DMSKD_OK;
}
