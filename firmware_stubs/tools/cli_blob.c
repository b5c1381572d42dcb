/* dmskd_core_cli's blob verbs: encode-update, encode-weights, encode-step, decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_verbs.h"
#include "dmskd/blob.h"
#include "dmskd/compact_update.h"

#define MAX_OUT (64u << 20)

typedef struct {
    dmskd_tensor_spec specs[DMSKD_MAX_TENSORS];
    char names[DMSKD_MAX_TENSORS][DMSKD_MAX_NAME];
    size_t count;
} spec_list;

/* "name:6,4" (or "name:" for a 0-d tensor) into the next spec. */
static void add_spec(spec_list *s, const char *arg) {
    const char *colon = strrchr(arg, ':');
    if (colon == NULL || s->count == DMSKD_MAX_TENSORS || (size_t)(colon - arg) >= DMSKD_MAX_NAME) {
        cli_usage_error("--tensor takes NAME:D0,D1,... (NAME: for a scalar), at most 16 of them", arg);
    }
    dmskd_tensor_spec *t = &s->specs[s->count];
    memcpy(s->names[s->count], arg, (size_t)(colon - arg));
    s->names[s->count][colon - arg] = '\0';
    t->name = s->names[s->count];
    t->ndim = 0;
    for (const char *p = colon + 1; *p;) {
        if (t->ndim == DMSKD_MAX_DIMS) cli_usage_error("at most 4 dimensions", arg);
        char *end;
        t->shape[t->ndim++] = (uint32_t)strtoul(p, &end, 10);
        if (end == p) cli_usage_error("bad shape", arg);
        p = *end == ',' ? end + 1 : end;
    }
    s->count++;
}

/* The template in name order (the core requires it sorted). */
static dmskd_template sorted_template(spec_list *s) {
    for (size_t i = 1; i < s->count; i++) {
        for (size_t j = i; j > 0 && strcmp(s->specs[j].name, s->specs[j - 1].name) < 0; j--) {
            dmskd_tensor_spec t = s->specs[j];
            s->specs[j] = s->specs[j - 1];
            s->specs[j - 1] = t;
        }
    }
    dmskd_template tmpl = {s->count, s->specs};
    return tmpl;
}

/* Tensors over a flat float32 file, in --tensor order. */
static void bind_values(const spec_list *s, const uint8_t *values, size_t len, dmskd_tensor *out) {
    size_t offset = 0;
    for (size_t i = 0; i < s->count; i++) {
        size_t n = dmskd_shape_elements(s->specs[i].ndim, s->specs[i].shape);
        out[i].name = s->specs[i].name;
        out[i].dtype = DMSKD_F32;
        out[i].ndim = s->specs[i].ndim;
        memcpy(out[i].shape, s->specs[i].shape, sizeof out[i].shape);
        out[i].data = values + offset;
        offset += 4 * n;
    }
    if (offset != len) {
        fprintf(stderr, "error: the values file holds %zu bytes, the tensors need %zu\n", len, offset);
        exit(64);
    }
}

typedef struct {
    spec_list specs;
    const char *values, *old_values, *entropy, *out;
    int compact; /* encode-update --container compact: protocol 3 */
    dmskd_update_meta update;
    dmskd_weights_meta weights;
    dmskd_step_meta step;
} encode_args;

static const char ENCODE_USAGE[] =
    "encode-update|encode-weights|encode-step --tensor NAME:SHAPE ... --values F32FILE [--old F32FILE] "
    "[--entropy BYTES] --out FILE [--fleet F --device D --round R --base B --examples N --clip C --noise Z "
    "--dp MODE --encoding E --training HEX --version G --container safetensors|compact]";

static void parse_encode(int argc, char **argv, encode_args *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->update.dp_mode, sizeof a->update.dp_mode, "none");
    a->weights.encoding = DMSKD_ENC_FLOAT32_WEIGHTS;
    a->step.encoding = DMSKD_ENC_SQ8_DELTA;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) cli_usage_error("an option lacks its value", ENCODE_USAGE);
        const char *v = argv[++i];
        if (!strcmp(k, "--tensor")) add_spec(&a->specs, v);
        else if (!strcmp(k, "--values")) a->values = v;
        else if (!strcmp(k, "--old")) a->old_values = v;
        else if (!strcmp(k, "--entropy")) a->entropy = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--container")) {
            if (strcmp(v, "compact") != 0 && strcmp(v, "safetensors") != 0) {
                cli_usage_error("--container is safetensors or compact", ENCODE_USAGE);
            }
            a->compact = !strcmp(v, "compact");
        }
        else if (!strcmp(k, "--fleet")) {
            snprintf(a->update.fleet, sizeof a->update.fleet, "%s", v);
            snprintf(a->weights.fleet, sizeof a->weights.fleet, "%s", v);
            snprintf(a->step.fleet, sizeof a->step.fleet, "%s", v);
        } else if (!strcmp(k, "--device")) snprintf(a->update.device, sizeof a->update.device, "%s", v);
        else if (!strcmp(k, "--round")) a->update.round = a->weights.round = a->step.round = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--base")) a->update.base_version = a->step.base_version = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--version")) a->weights.version = a->step.version = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--examples")) a->update.num_examples = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--clip")) a->update.clip = strtod(v, NULL);
        else if (!strcmp(k, "--noise")) a->update.noise_multiplier = strtod(v, NULL);
        else if (!strcmp(k, "--dp")) snprintf(a->update.dp_mode, sizeof a->update.dp_mode, "%s", v);
        else if (!strcmp(k, "--training")) snprintf(a->update.training, sizeof a->update.training, "%s", v);
        else if (!strcmp(k, "--encoding")) {
            dmskd_encoding e = dmskd_encoding_from_name(v);
            if (e == DMSKD_ENC_UNKNOWN) cli_usage_error("unknown --encoding", ENCODE_USAGE);
            a->update.encoding = a->step.encoding = e;
        } else cli_usage_error(k, ENCODE_USAGE);
    }
    if (a->values == NULL || a->out == NULL) cli_usage_error("--values and --out are required", ENCODE_USAGE);
}

static int encode(int argc, char **argv, char kind) {
    encode_args a;
    parse_encode(argc, argv, &a);
    size_t len, old_len = 0, entropy_len = 0;
    uint8_t *values = cli_read_file(a.values, &len);
    uint8_t *old = a.old_values ? cli_read_file(a.old_values, &old_len) : NULL;
    cli_entropy_file words = {NULL, 0, 0};
    if (a.entropy) words.bytes = cli_read_file(a.entropy, &entropy_len);
    words.len = entropy_len;
    dmskd_entropy rng = {cli_entropy_file_fill, &words};
    dmskd_tensor tensors[DMSKD_MAX_TENSORS], old_tensors[DMSKD_MAX_TENSORS];
    bind_values(&a.specs, values, len, tensors);
    uint8_t *out = malloc(MAX_OUT);
    size_t out_len = 0;
    dmskd_error err;
    dmskd_status st;
    if (kind == 'u' && a.compact) {
        st = dmskd_encode_compact_update(tensors, a.specs.count, &a.update, a.entropy ? &rng : NULL, out, MAX_OUT,
                                         &out_len, &err);
    } else if (kind == 'u') {
        st = dmskd_encode_update(tensors, a.specs.count, &a.update, a.entropy ? &rng : NULL, out, MAX_OUT, &out_len,
                                 &err);
    } else if (kind == 'w') {
        st = dmskd_encode_weights(tensors, a.specs.count, &a.weights, out, MAX_OUT, &out_len, &err);
    } else {
        if (old == NULL) cli_usage_error("encode-step needs --old", ENCODE_USAGE);
        bind_values(&a.specs, old, old_len, old_tensors);
        st = dmskd_encode_model_step(old_tensors, tensors, a.specs.count, &a.step, a.entropy ? &rng : NULL, out,
                                     MAX_OUT, &out_len, &err);
    }
    if (st != DMSKD_OK) return cli_report_error(&err);
    cli_write_file(a.out, out, out_len);
    printf("{\"status\": \"ok\", \"bytes\": %zu, \"entropy_used\": %zu}\n", out_len, words.pos);
    free(out);
    free(values);
    free(old);
    free((void *)words.bytes);
    return 0;
}

int cli_encode_update(int argc, char **argv) { return encode(argc, argv, 'u'); }
int cli_encode_weights(int argc, char **argv) { return encode(argc, argv, 'w'); }
int cli_encode_step(int argc, char **argv) { return encode(argc, argv, 's'); }

static const char DECODE_USAGE[] =
    "decode update|weights|step BLOB [--tensor NAME:SHAPE ...] [--accept ENC,...] [--values-out F32FILE] "
    "[--apply-to F32FILE]";

static void print_meta(const dmskd_blob *blob) {
    printf("\"meta\": {");
    for (size_t i = 0; i < blob->nmeta; i++) {
        printf(i ? ", " : "");
        cli_print_json_string(blob->meta[i].key);
        printf(": ");
        cli_print_json_string(blob->meta[i].value);
    }
    printf("}, \"tensors\": [");
    for (size_t i = 0; i < blob->ntensors; i++) {
        const dmskd_tensor_view *t = &blob->tensors[i];
        printf("%s{\"name\": ", i ? ", " : "");
        cli_print_json_string(t->name);
        printf(", \"dtype\": \"%s\", \"shape\": [", t->dtype_name);
        for (uint32_t d = 0; d < t->ndim; d++) printf(d ? ", %u" : "%u", (unsigned)t->shape[d]);
        printf("]}");
    }
    printf("]");
}

int cli_decode(int argc, char **argv) {
    if (argc < 2) cli_usage_error("decode needs a kind and a blob", DECODE_USAGE);
    const char *kind = argv[0], *path = argv[1];
    spec_list specs = {0};
    const char *values_out = NULL, *apply_to = NULL;
    dmskd_encoding accepted[8] = {DMSKD_ENC_FLOAT32_DELTA};
    size_t naccepted = 1;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) cli_usage_error("an option lacks its value", DECODE_USAGE);
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--tensor")) add_spec(&specs, v);
        else if (!strcmp(k, "--values-out")) values_out = v;
        else if (!strcmp(k, "--apply-to")) apply_to = v;
        else if (!strcmp(k, "--accept")) {
            char list[256];
            snprintf(list, sizeof list, "%s", v);
            naccepted = 0;
            for (char *tok = strtok(list, ","); tok && naccepted < 8; tok = strtok(NULL, ",")) {
                accepted[naccepted++] = dmskd_encoding_from_name(tok);
            }
        } else cli_usage_error(k, DECODE_USAGE);
    }
    dmskd_template tmpl = sorted_template(&specs);
    size_t len;
    uint8_t *data = cli_read_file(path, &len);
    static dmskd_blob blob;
    dmskd_error err;
    dmskd_status st;
    dmskd_encoding encoding;
    dmskd_step_meta step;
    if (!strcmp(kind, "update")) {
        dmskd_update_meta meta;
        st = dmskd_decode_update(data, len, accepted, naccepted, &blob, &meta, &err);
        encoding = meta.encoding;
    } else if (!strcmp(kind, "weights")) {
        dmskd_weights_meta meta;
        st = dmskd_decode_weights(data, len, &blob, &meta, &err);
        encoding = DMSKD_ENC_FLOAT32_WEIGHTS;
    } else if (!strcmp(kind, "step")) {
        st = dmskd_decode_model_step(data, len, &blob, &step, &err);
        encoding = step.encoding;
    } else {
        cli_usage_error("kind must be update, weights or step", DECODE_USAGE);
        return 64;
    }
    if (st != DMSKD_OK) return cli_report_error(&err);
    size_t params = dmskd_template_elements(&tmpl);
    float *values = malloc(4 * (params + 1));
    if (apply_to != NULL) {
        size_t wlen;
        uint8_t *w = cli_read_file(apply_to, &wlen);
        if (wlen != 4 * params) {
            fprintf(stderr, "error: --apply-to holds %zu bytes, the template needs %zu\n", wlen, 4 * params);
            return 64;
        }
        memcpy(values, w, wlen);
        free(w);
        st = dmskd_apply_model_step(&blob, &step, &tmpl, values, params, &err);
    } else if (specs.count > 0) {
        st = dmskd_blob_values(&blob, encoding, &tmpl, values, params, &err);
    }
    if (st != DMSKD_OK) return cli_report_error(&err);
    if (values_out != NULL && specs.count > 0) cli_write_file(values_out, (const uint8_t *)values, 4 * params);
    printf("{\"status\": \"ok\", ");
    print_meta(&blob);
    printf("}\n");
    free(values);
    free(data);
    return 0;
}
