/* dmskd_core_selftest_m4f: the self-test on a bare Cortex-M4F, lines out through semihosting (QEMU
   -semihosting, or a debug probe), then a semihosting exit with the result. */
#include <stdint.h>
#include <string.h>

#include "selftest_cases.h"

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
void Reset_Handler(void);

__attribute__((section(".isr_vector"), used)) static const void *const vectors[2] = {&_estack, (void *)Reset_Handler};

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void print_line(const char *line) {
    semihost(0x04, line);  /* SYS_WRITE0 */
    semihost(0x04, "\n");
}

int main(void);

void Reset_Handler(void) {
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;  /* CP10 and CP11 full access: the FPU, before any floating-point instruction */
    __asm__ volatile("dsb\n\tisb");
    memcpy(&_sdata, &_sidata, (size_t)((char *)&_edata - (char *)&_sdata));
    memset(&_sbss, 0, (size_t)((char *)&_ebss - (char *)&_sbss));
    main();
    for (;;) {
    }
}

int main(void) {
    int failures = selftest_run(print_line);
    /* SYS_EXIT, its reason in r1 (32-bit ARM): ADP_Stopped_ApplicationExit (status 0) or RunTimeErrorUnknown */
    semihost(0x18, (const void *)(uintptr_t)(failures == 0 ? 0x20026u : 0x20023u));
    return failures;
}
