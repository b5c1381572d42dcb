/* Protocol 3: the compact binary container of a quantised update (docs/wire-protocol.md section 6,
   edge/compact_update.py): the sq codes and qparams of protocol 2 with the metadata as fixed fields and
   varints. The encoder is byte-identical to edge.compact_update.encode_compact_update after
   edge.update_quantization.update_tensors; the decoder refuses what the Python decoder refuses, with the
   same reason codes and messages. */
#ifndef DMSKD_COMPACT_UPDATE_H
#define DMSKD_COMPACT_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "dmskd/blob.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_COMPACT_MAGIC "DMU3"
#define DMSKD_COMPACT_NAME_BYTES 63 /* fleet and device ids (DMSKD_MAX_TEXT - 1) */

/* 1 if data[0..len) is a compact update (its first four bytes are the magic), else 0. */
int dmskd_is_compact_update(const uint8_t *data, size_t len);

/* Encode a float32 delta (sq8/sq4/sq2 in meta->encoding, one uniform u per value from rounding, in name
   order) as a compact update into out[cap]; *out_len is set even when out is too small (out may be NULL). */
dmskd_status dmskd_encode_compact_update(const dmskd_tensor *delta, size_t ntensors, const dmskd_update_meta *meta,
                                         const dmskd_entropy *rounding, uint8_t *out, size_t cap, size_t *out_len,
                                         dmskd_error *err);

/* Parse and check a compact update: blob gets the views "codes" (U8) and "qparams" (F32 [T, 2]) into data,
   for dmskd_blob_values / dmskd_check_template as a protocol-2 sq update; meta its metadata. */
dmskd_status dmskd_decode_compact_update(const uint8_t *data, size_t len, dmskd_blob *blob, dmskd_update_meta *meta,
                                         dmskd_error *err);

#ifdef __cplusplus
}
#endif
#endif
