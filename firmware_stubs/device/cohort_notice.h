/* The aggregator's signed notice on cohort/<device>: sampled or not, and the last update's fate. */
#ifndef DMSKD_COHORT_NOTICE_H
#define DMSKD_COHORT_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMSKD_ACK_DIGEST_CHARS 32 /* hex characters of sha256(update blob) the aggregator acknowledges with */

typedef struct {
    int64_t round;
    bool selected;
    bool has_ack;                               /* the notice tells the fate of the previous update */
    int64_t ack_round;
    bool ack_accepted;                          /* false: "update": null (the round closed without it) */
    char ack_digest[DMSKD_ACK_DIGEST_CHARS + 1];
} dmskd_cohort_notice;

/* Parse `{"round": r, "selected": b[, "ack": {"round": r, "update": "<hex>"|null}]}` (cloud/aggregator.py);
 * false, with *why set to a static reason, for anything else. */
bool dmskd_cohort_notice_parse(const uint8_t *json, size_t len, dmskd_cohort_notice *out, const char **why);

#endif
