# Cortex-M4F toolchain (Debian gcc-arm-none-eabi + libnewlib-arm-none-eabi):
#   cmake -S firmware_stubs -B firmware_stubs/build/m4f -DCMAKE_TOOLCHAIN_FILE=firmware_stubs/cmake/cortex-m4f.cmake \
#         -DCMAKE_BUILD_TYPE=MinSizeRel [-DMONOCYPHER_DIR=...]
# Hard-float ABI on the FPv4-SP unit, Thumb-2, size-optimised, newlib-nano with float printf/scanf (the core
# formats floats as Python's repr), unused sections dropped at link time.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
find_program(DMSKD_ARM_GCC arm-none-eabi-gcc)
if(NOT DMSKD_ARM_GCC)
  message(FATAL_ERROR "arm-none-eabi-gcc not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
endif()
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_SIZE arm-none-eabi-size CACHE FILEPATH "size tool of the toolchain")
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(DMSKD_M4F_FLAGS "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard")
set(CMAKE_C_FLAGS_INIT "${DMSKD_M4F_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT "${DMSKD_M4F_FLAGS} -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti")
set(CMAKE_C_FLAGS_MINSIZEREL_INIT "-Os -DNDEBUG")
set(CMAKE_CXX_FLAGS_MINSIZEREL_INIT "-Os -DNDEBUG")
set(CMAKE_C_FLAGS_RELEASE_INIT "-Os -DNDEBUG")
set(CMAKE_CXX_FLAGS_RELEASE_INIT "-Os -DNDEBUG")
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--gc-sections --specs=nano.specs --specs=nosys.specs -u _printf_float -u _scanf_float")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(DMSKD_M4F_LINKER_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/cortex-m4f.ld" CACHE FILEPATH
    "linker script of the link test (a generic 512 KiB flash / 128 KiB RAM part; a board brings its own)")
