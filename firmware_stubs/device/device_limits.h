/* Compile-time bounds of the device loop's static memory (no heap): raise them for a larger student. */
#ifndef DMSKD_DEVICE_LIMITS_H
#define DMSKD_DEVICE_LIMITS_H

#ifndef DMSKD_MAX_PARAMS
#define DMSKD_MAX_PARAMS 65536 /* student parameters held (global, local, delta: 3 x 4 bytes each) */
#endif
#ifndef DMSKD_MAX_MESSAGE_BYTES
#define DMSKD_MAX_MESSAGE_BYTES (DMSKD_MAX_PARAMS * 4 + 4096) /* a signed full model: weights, safetensors
                                                              header, envelope and signature */
#endif
#ifndef DMSKD_REASSEMBLY_SLOTS
#define DMSKD_REASSEMBLY_SLOTS 4 /* partial messages held at once (model, step, plan, cohort) */
#endif
#ifndef DMSKD_MAX_CHUNK_BYTES
#define DMSKD_MAX_CHUNK_BYTES 131072 /* the largest chunk published (AWS IoT Core's cap) */
#endif
#define DMSKD_TOPIC_BYTES 256
#define DMSKD_NOTICES_HELD 8   /* cohort decisions remembered (round -> sampled) */
#define DMSKD_ROUNDS_LISTED 64 /* trained rounds listed in the final report */

#endif
