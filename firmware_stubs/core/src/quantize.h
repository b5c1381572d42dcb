/* Stochastic b-bit quantisation of one tensor (internal; edge/stochastic_quantization.py's arithmetic). */
#ifndef DMSKD_QUANTIZE_H
#define DMSKD_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/entropy.h"
#include "dmskd/status.h"

/* Codes of x[i] = (double)a[i] - (b ? (double)b[i] : 0) for i < n at `bits` bits, packed into packed[]
   (zeroed by the caller) from code position *position on (advanced); qparams = {scale, zero}. One
   uniform u per value from rng, in order, as numpy's rng.random(n). */
dmskd_status dmskd_sq_encode_tensor(const float *a, const float *b, size_t n, unsigned bits, const dmskd_entropy *rng,
                                    uint8_t *packed, size_t *position, float qparams[2]);

/* Code number k of packed codes at `bits` bits. */
unsigned dmskd_sq_code(const uint8_t *packed, size_t k, unsigned bits);

/* Bytes that count codes of bits bits take packed. */
size_t dmskd_sq_packed_length(size_t count, unsigned bits);

#endif
