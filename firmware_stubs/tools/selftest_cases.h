/* The core's self-test: fixed inputs through every module, one line of results each, so the same source run
   on the host and on an emulated Cortex-M4F (QEMU mps2-an386) must print the same lines. */
#ifndef DMSKD_SELFTEST_CASES_H
#define DMSKD_SELFTEST_CASES_H

/* Print one line (without its newline) where the target can: stdout on a host, semihosting on an MCU. */
typedef void (*selftest_emit)(const char *line);

/* Run every case, emitting "name: result" lines; returns the number of failed internal checks. */
int selftest_run(selftest_emit emit);

#endif
