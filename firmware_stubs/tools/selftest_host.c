/* dmskd_core_selftest on a host: the self-test's lines on stdout. */
#include <stdio.h>

#include "selftest_cases.h"

static void print_line(const char *line) { printf("%s\n", line); }

int main(void) { return selftest_run(print_line) == 0 ? 0 : 1; }
