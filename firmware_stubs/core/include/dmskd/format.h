/* The core's printf subset for texts and messages: %s %c %d %i %u %x %g %e %f %% with the l, ll and z length
   modifiers, a precision for %s and the floating conversions ("%.40s", "%.*e") and a zero-padded width for
   integers. Ports may use it too: newlib-nano's printf has no ll or z, so this one behaves alike on every target. */
#ifndef DMSKD_FORMAT_H
#define DMSKD_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Format into out[cap] (always NUL-terminated when cap > 0); returns the length the full text would have. */
size_t dmskd_vformat(char *out, size_t cap, const char *fmt, va_list args);
/* dmskd_vformat with variadic arguments. */
size_t dmskd_format(char *out, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
