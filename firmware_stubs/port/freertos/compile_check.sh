#!/bin/sh
# Compile-check the FreeRTOS + coreMQTT port skeleton for a Cortex-M4F (no board: the HAL is only declared).
#   firmware_stubs/port/freertos/compile_check.sh COREMQTT_DIR FREERTOS_KERNEL_DIR
# COREMQTT_DIR: coreMQTT v2.3.1 (git clone --branch v2.3.1 https://github.com/FreeRTOS/coreMQTT),
# FREERTOS_KERNEL_DIR: FreeRTOS-Kernel V11.1.0; the compiler: Debian gcc-arm-none-eabi.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mqtt=${1:?pass the coreMQTT v2.3.1 checkout}
kernel=${2:?pass the FreeRTOS-Kernel V11.1.0 checkout}
arm-none-eabi-gcc -std=c11 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Wall -Wextra -Werror \
    -fsyntax-only -I"$here/image" -I"$here/check" -I"$here/../include" -I"$mqtt/source/include" -I"$mqtt/source/interface" \
    -I"$kernel/include" -I"$kernel/portable/GCC/ARM_CM4F" -I"$here" "$here/port_freertos.c"
echo "port_freertos.c compiles for Cortex-M4F against $mqtt and $kernel"
