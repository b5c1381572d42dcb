# The TFLite-Micro runtime compiled from an external source tree (nothing of it lives in this repo).
#
#   dmskd_tflm_library(<target> [EXCLUDE_FROM_ALL] [OPS op...])  -> a static library of TFLM's
#       interpreter, allocators, memory planners and reference kernels, with its include directories.
#       OPS (builtin names, e.g. FULLY_CONNECTED) compiles only the kernels that define those ops'
#       Register_<OP>() and their <kernel>_common.cc, instead of all ~120 (minutes saved per build).
#
# Inputs (cache variables, each checked with an error that names the fix):
#   TFLM_DIR         checkout of github.com/tensorflow/tflite-micro at the pinned commit (README)
#   FLATBUFFERS_DIR  checkout of github.com/google/flatbuffers at the tag TFLM's schema needs (v25.9.23)
#   RUY_DIR          checkout of github.com/google/ruy (only ruy/profiler/instrumentation.h is used)
#   GEMMLOWP_INCLUDE_DIR  gemmlowp's headers (Debian libgemmlowp-dev: /usr/include/gemmlowp)
# The source list mirrors TFLM's own Makefile (tensorflow/lite/micro/tools/make/sources.inc):
# tensorflow/lite/micro/{,arena_allocator,memory_planner,tflite_bridge}/*.cc, the reference kernels
# in tensorflow/lite/micro/kernels/*.cc, and the TFLite files shared with TFLM, minus tests.

set(DMSKD_TFLM_COMMIT "90b983c2b3f1480642e040bbd2ddb37b998f3424" CACHE INTERNAL "TFLM commit tested")
set(DMSKD_FLATBUFFERS_TAG "v25.9.23" CACHE INTERNAL "flatbuffers tag TFLM's schema_generated.h asserts")

function(_dmskd_require_dir var file hint)
  if(NOT ${var} OR NOT EXISTS "${${var}}/${file}")
    message(FATAL_ERROR "${var}='${${var}}' does not hold ${file}: ${hint}")
  endif()
endfunction()

function(dmskd_tflm_library target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "EXCLUDE_FROM_ALL" "" "OPS")
  _dmskd_require_dir(TFLM_DIR "tensorflow/lite/micro/micro_interpreter.h"
    "pass -DTFLM_DIR=<tflite-micro checkout at ${DMSKD_TFLM_COMMIT}> (firmware_stubs/README.md)")
  _dmskd_require_dir(FLATBUFFERS_DIR "include/flatbuffers/flatbuffers.h"
    "pass -DFLATBUFFERS_DIR=<github.com/google/flatbuffers checkout at ${DMSKD_FLATBUFFERS_TAG}>")
  _dmskd_require_dir(RUY_DIR "ruy/profiler/instrumentation.h"
    "pass -DRUY_DIR=<github.com/google/ruy checkout> (firmware_stubs/README.md)")
  _dmskd_require_dir(GEMMLOWP_INCLUDE_DIR "fixedpoint/fixedpoint.h"
    "install Debian's libgemmlowp-dev or pass -DGEMMLOWP_INCLUDE_DIR=<gemmlowp checkout>")
  file(STRINGS "${FLATBUFFERS_DIR}/include/flatbuffers/base.h" _fb_major
       REGEX "^#define FLATBUFFERS_VERSION_MAJOR ")
  file(STRINGS "${FLATBUFFERS_DIR}/include/flatbuffers/base.h" _fb_minor
       REGEX "^#define FLATBUFFERS_VERSION_MINOR ")
  if(NOT _fb_major MATCHES " 25$" OR NOT _fb_minor MATCHES " 9$")
    message(FATAL_ERROR "FLATBUFFERS_DIR=${FLATBUFFERS_DIR} is not flatbuffers 25.9 (${_fb_major} ${_fb_minor}): "
                        "TFLM's schema_generated.h needs ${DMSKD_FLATBUFFERS_TAG}; check out that tag")
  endif()

  set(m "${TFLM_DIR}/tensorflow/lite/micro")
  file(GLOB core_srcs "${m}/*.cc" "${m}/arena_allocator/*.cc" "${m}/memory_planner/*.cc"
                      "${m}/tflite_bridge/*.cc")
  file(GLOB kernel_srcs "${m}/kernels/*.cc")
  if(arg_OPS)
    set(picked "${m}/kernels/kernel_util.cc" "${m}/kernels/micro_tensor_utils.cc")
    foreach(op ${arg_OPS})
      set(found "")
      foreach(f ${kernel_srcs})
        file(STRINGS "${f}" hit REGEX "TFLMRegistration Register_${op}\\(\\)")
        if(hit)
          list(APPEND found "${f}")
          string(REGEX REPLACE "\\.cc$" "_common.cc" common "${f}")
          if(EXISTS "${common}")
            list(APPEND found "${common}")
          endif()
        endif()
      endforeach()
      if(NOT found)
        message(FATAL_ERROR "no kernel in ${m}/kernels defines Register_${op}(): TFLM_DIR is not at commit "
                            "${DMSKD_TFLM_COMMIT}, or the op is not a TFLite-Micro builtin")
      endif()
      list(APPEND picked ${found})
    endforeach()
    list(REMOVE_DUPLICATES picked)
    set(kernel_srcs ${picked})
  endif()
  set(shared_srcs
    tensorflow/lite/kernels/kernel_util.cc
    tensorflow/lite/kernels/internal/runtime_shape.cc
    tensorflow/lite/kernels/internal/portable_tensor_utils.cc
    tensorflow/lite/kernels/internal/tensor_ctypes.cc
    tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc
    tensorflow/lite/kernels/internal/common.cc
    tensorflow/lite/kernels/internal/quantization_util.cc
    tensorflow/lite/kernels/internal/tensor_utils.cc
    tensorflow/lite/core/api/flatbuffer_conversions.cc
    tensorflow/lite/core/api/tensor_utils.cc
    tensorflow/lite/core/c/common.cc
    tensorflow/compiler/mlir/lite/schema/schema_utils.cc
    tensorflow/compiler/mlir/lite/core/api/error_reporter.cc)
  list(TRANSFORM shared_srcs PREPEND "${TFLM_DIR}/")
  set(srcs ${core_srcs} ${kernel_srcs} ${shared_srcs})
  # Tests, test helpers and their generated data are not part of the runtime.
  list(FILTER srcs EXCLUDE REGEX "(_test|_test_common|_generated_data)\\.cc$")
  list(FILTER srcs EXCLUDE REGEX "/(test_helpers|test_helper_custom_ops|fake_micro_context|mock_micro_graph|kernel_runner)\\.cc$")
  foreach(f ${shared_srcs})
    if(NOT EXISTS "${f}")
      message(FATAL_ERROR "${f} is missing: TFLM_DIR is not at commit ${DMSKD_TFLM_COMMIT}; check it out")
    endif()
  endforeach()

  if(arg_EXCLUDE_FROM_ALL)
    add_library(${target} STATIC EXCLUDE_FROM_ALL ${srcs})
  else()
    add_library(${target} STATIC ${srcs})
  endif()
  target_include_directories(${target} SYSTEM PUBLIC
    "${TFLM_DIR}" "${FLATBUFFERS_DIR}/include" "${GEMMLOWP_INCLUDE_DIR}" "${RUY_DIR}")
  # TFLM's own flags (Makefile COMMON_FLAGS, CXXFLAGS); FLATBUFFERS_LOCALE_INDEPENDENT=0 is what its
  # flatbuffers.patch makes the default.
  target_compile_definitions(${target} PUBLIC TF_LITE_STATIC_MEMORY TF_LITE_DISABLE_X86_NEON
                             FLATBUFFERS_LOCALE_INDEPENDENT=0)
  if(NOT CMAKE_CROSSCOMPILING)
    target_compile_definitions(${target} PUBLIC TF_LITE_USE_CTIME)
  else()
    # An MCU image: no error strings and no printf, as TFLM's own release builds (Makefile BUILD_TYPE=release).
    target_compile_definitions(${target} PUBLIC TF_LITE_STRIP_ERROR_STRINGS)
  endif()
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_compile_options(${target} PRIVATE -w)  # a third-party tree: its warnings are not ours
  target_compile_options(${target} PUBLIC
    $<$<COMPILE_LANGUAGE:CXX>:-fno-rtti -fno-exceptions -fno-threadsafe-statics>
    -ffunction-sections -fdata-sections -fno-unwind-tables -fno-asynchronous-unwind-tables)
endfunction()
