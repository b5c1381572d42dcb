/* A small printf for the core's messages and texts (internal): %s %c %d %i %u %x %g %e %% with the l, ll and z
   length modifiers, a precision for %s and %e/%g ("%.40s", "%.*e") and a zero-padded width for integers.
   It exists because newlib-nano's printf has no ll or z: one formatter then behaves alike on every target. */
#ifndef DMSKD_FORMAT_H
#define DMSKD_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

/* Format into out[cap] (always NUL-terminated when cap > 0); returns the length the full text would have. */
size_t dmskd_vformat(char *out, size_t cap, const char *fmt, va_list args);
/* dmskd_vformat with variadic arguments. */
size_t dmskd_format(char *out, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
