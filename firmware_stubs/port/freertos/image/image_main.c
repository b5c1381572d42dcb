/* The whole Cortex-M4F image for the size report: reset, one statically allocated FreeRTOS task that
 * runs the device loop over port_freertos.c (coreMQTT) and the size-only HAL (size_hal.c).
 * Links everything the firmware needs; it is not a board (no clock, pins or sensor set-up). */
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "FreeRTOS.h"
#include "task.h"

#include "board_hal.h"
#include "device.h"
#include "device_limits.h"
#include "dmskd_device_config.h" /* python -m export's configuration: fleet, key, chunk limit, student */
#include "trainer.h"

_Static_assert(DMSKD_CHUNK_LIMIT <= DMSKD_MAX_CHUNK_BYTES,
               "the exported chunk limit exceeds what this image receives: export with --chunk-limit at most "
               "DMSKD_MAX_CHUNK_BYTES (4096 in the meter-plus limits)");

#ifndef DMSKD_IMAGE_TASK_STACK_WORDS
#define DMSKD_IMAGE_TASK_STACK_WORDS 2048 /* 8 KiB for the device task (device loop + TFLM invoke) */
#endif

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
void Reset_Handler(void);
void vPortSVCHandler(void);
void xPortPendSVHandler(void);
void xPortSysTickHandler(void);
int main(void);

static void halt(void) {
    for (;;) {
    }
}

/* Cortex-M vector table: stack, reset, the faults, and the three exceptions the ARM_CM4F port owns. */
__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_estack, Reset_Handler, halt, halt, halt, halt, halt, 0, 0, 0, 0,
    vPortSVCHandler, halt, 0, xPortPendSVHandler, xPortSysTickHandler};

void Reset_Handler(void) {
    memcpy(&_sdata, &_sidata, (size_t)((uint8_t *)&_edata - (uint8_t *)&_sdata));
    memset(&_sbss, 0, (size_t)((uint8_t *)&_ebss - (uint8_t *)&_sbss));
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: the FPU on */
    main();
    halt();
}

static StackType_t device_stack[DMSKD_IMAGE_TASK_STACK_WORDS];
static StaticTask_t device_tcb;
static volatile sig_atomic_t stop;
static const float no_samples[1]; /* the samples are the board's (its sensor buffer): not in this image */

static void device_task(void *arg) {
    (void)arg;
    static const dmskd_mqtt_config mqtt = {.host = "broker", .port = 1883, .client_id = "meter-0",
                                           .keepalive_s = 60};
    /* The device id and broker are the board's (provisioning); the rest comes from the exported configuration. */
    static dmskd_device_config config = {.device_id = "meter-0", .fleet = DMSKD_FLEET, .x = no_samples, .n = 0,
                                         .dim = DMSKD_STUDENT_INPUT_DIM, .resend_interval_ms = 30000,
#if DMSKD_HAVE_FLEET_PUBLIC_KEY
                                         .fleet_key = DMSKD_FLEET_PUBLIC_KEY_BYTES,
#endif
                                         .chunk_limit = DMSKD_CHUNK_LIMIT};
    char why[160];
    if (dmskd_trainer_init(why, sizeof why)) /* the shard and train step in their arenas, as host_main.c */
        dmskd_device_run(dmskd_freertos_port(), &mqtt, &config, &stop);
    for (;;) vTaskDelay(pdMS_TO_TICKS(1000));
}

int main(void) {
    xTaskCreateStatic(device_task, "dmskd", DMSKD_IMAGE_TASK_STACK_WORDS, NULL, 2, device_stack, &device_tcb);
    vTaskStartScheduler();
    return 1;
}
