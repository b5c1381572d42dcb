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

#endif
