# Settings applied only to flowpool's own targets (library, tests, benchmarks, examples), always
# PRIVATE, so a consumer that links flowpool::flowpool never inherits a warning or sanitizer flag.
include_guard(GLOBAL)

add_library(flowpool_settings INTERFACE)
target_compile_options(flowpool_settings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                                   -Wold-style-cast -Wcast-align -Woverloaded-virtual
                                                   -Wnull-dereference -Wimplicit-fallthrough)
if(FLOWPOOL_WERROR)
  target_compile_options(flowpool_settings INTERFACE -Werror)
endif()

if(FLOWPOOL_SANITIZE)
  string(REPLACE "," ";" _flowpool_sanitizers "${FLOWPOOL_SANITIZE}")
  foreach(_san IN LISTS _flowpool_sanitizers)
    if(NOT _san MATCHES "^(thread|address|undefined)$")
      message(FATAL_ERROR "FLOWPOOL_SANITIZE: unknown sanitizer '${_san}' (use thread or address,undefined)")
    endif()
  endforeach()
  target_compile_options(flowpool_settings INTERFACE -fsanitize=${FLOWPOOL_SANITIZE} -fno-omit-frame-pointer -g)
  target_link_options(flowpool_settings INTERFACE -fsanitize=${FLOWPOOL_SANITIZE})
  if("undefined" IN_LIST _flowpool_sanitizers)
    # Any UB report is a failure, not a log line.
    target_compile_options(flowpool_settings INTERFACE -fno-sanitize-recover=all)
  endif()
  if("thread" IN_LIST _flowpool_sanitizers)
    # TSan does not model std::atomic_thread_fence; FLOWPOOL_TSAN swaps fence-based code in
    # lib/src/common/atomics.hpp for the equivalent seq_cst operations it does understand.
    target_compile_definitions(flowpool_settings INTERFACE FLOWPOOL_TSAN=1)
    target_compile_options(flowpool_settings INTERFACE -Wno-tsan)
  endif()
endif()

# -fsanitize=thread given through CMAKE_CXX_FLAGS instead of FLOWPOOL_SANITIZE: atomics.hpp switches
# to its TSan-friendly code by itself (__SANITIZE_THREAD__); GCC's -Wtsan warning about
# std::atomic_thread_fence (still used off x86-64) must not fail a -Werror build.
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[^ ]*thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(flowpool_settings INTERFACE -Wno-tsan)
endif()

# Use on every flowpool-owned executable and on the library itself.
function(flowpool_apply_settings target)
  target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:flowpool_settings>)
endfunction()
