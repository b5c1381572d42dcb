/* Shared pieces of the blob encoder and decoder (internal). */
#ifndef DMSKD_BLOB_INTERNAL_H
#define DMSKD_BLOB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/blob.h"

/* 1 if name a sorts before b in Python's str order (code points = UTF-8 bytes). */
int dmskd_name_less(const char *a, const char *b);
/* Little-endian float32 at p. */
float dmskd_load_f32(const uint8_t *p);
/* Write v as little-endian float32 at p. */
void dmskd_store_f32(uint8_t *p, float v);
/* Indices of tensors t[0..n) in name order into order[n]; refuses duplicates, missing names and bad shapes. */
dmskd_status dmskd_order_tensors(const dmskd_tensor *t, size_t n, size_t *order, dmskd_error *err);
/* The sq codes of a[order[i]] (minus b[order[i]] for a step, b may be NULL), i < n, packed into codes (zeroed by
   the caller), and each tensor's [scale, zero point] as float32 LE into qparams (8 bytes per tensor). */
dmskd_status dmskd_sq_fill(const dmskd_tensor *a, const dmskd_tensor *b, const size_t *order, size_t n,
                           unsigned bits, const dmskd_entropy *rng, uint8_t *codes, uint8_t *qparams,
                           dmskd_error *err);

#endif
