/* Element counts of shapes and templates. */
#include "dmskd/tensor.h"

size_t dmskd_shape_elements(uint32_t ndim, const uint32_t *shape) {
    size_t n = 1;
    for (uint32_t i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

size_t dmskd_template_elements(const dmskd_template *tmpl) {
    size_t n = 0;
    for (size_t i = 0; i < tmpl->count; i++) n += dmskd_shape_elements(tmpl->tensors[i].ndim, tmpl->tensors[i].shape);
    return n;
}
