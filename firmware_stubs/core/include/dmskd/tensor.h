/* Tensors as the core sees them: names, dtypes, shapes and little-endian bytes, never on the heap. */
#ifndef DMSKD_TENSOR_H
#define DMSKD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DMSKD_MAX_DIMS 4        /* the most dimensions a wire tensor may have */
#define DMSKD_MAX_TENSORS 16    /* the most tensors a blob (or the student) may have */
#define DMSKD_MAX_NAME 48       /* the longest tensor name, NUL included */

/* The dtypes the wire carries (safetensors "F32" and "U8"). */
typedef enum { DMSKD_F32 = 1, DMSKD_U8 = 2 } dmskd_dtype;

/* A tensor to encode: its name, dtype, shape and C-order values (float for F32, uint8_t for U8). */
typedef struct {
    const char *name;
    dmskd_dtype dtype;
    uint32_t ndim;
    uint32_t shape[DMSKD_MAX_DIMS];
    const void *data;
} dmskd_tensor;

/* One tensor of the student: name and shape (the aggregator's template, edge.wire.check_against_template). */
typedef struct {
    const char *name;
    uint32_t ndim;
    uint32_t shape[DMSKD_MAX_DIMS];
} dmskd_tensor_spec;

/* The student's tensors, sorted by name (byte order): what updates, weights and steps must fit. */
typedef struct {
    size_t count;
    const dmskd_tensor_spec *tensors;
} dmskd_template;

/* Elements of a shape (1 for a 0-d tensor). */
size_t dmskd_shape_elements(uint32_t ndim, const uint32_t *shape);

/* Parameters of the whole template (the sum of its tensors' elements). */
size_t dmskd_template_elements(const dmskd_template *tmpl);

#ifdef __cplusplus
}
#endif
#endif
