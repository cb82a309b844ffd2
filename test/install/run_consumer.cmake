# cmake -P script: build and run the consumer project against flowpool.
#   MODE=find_package      install the already-built flowpool into a staging prefix, then find_package it
#   MODE=add_subdirectory  add flowpool's source tree with add_subdirectory
#   MODE=pkg_config        install into a staging prefix, then build main.cpp with the compiler (CXX)
#                          and `pkg-config --cflags --libs flowpool` (PKG_CONFIG) alone
#   MODE=tsan              install into a staging prefix, then build tsan_consumer/ with
#                          -fsanitize=thread against that normal (uninstrumented) install and run
#                          it with TSAN_OPTIONS=halt_on_error=1:exitcode=66: any report fails
#   MODE=redis             install into a staging prefix, then build redis_consumer/ with
#                          find_package(flowpool COMPONENTS redis) and run it, and the installed worker
cmake_minimum_required(VERSION 3.25)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    list(JOIN ARGV " " cmd)
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_src ${CMAKE_CURRENT_LIST_DIR}/consumer)
if(MODE STREQUAL "pkg_config")
  # Install into a staging prefix, then build main.cpp with nothing but the compiler and
  # `pkg-config --cflags --libs flowpool`, as a Makefile user would.
  set(prefix ${WORK_DIR}/stage)
  run(${CMAKE_COMMAND} --install ${FLOWPOOL_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
  file(GLOB_RECURSE pc_files ${prefix}/*/flowpool.pc)
  list(LENGTH pc_files pc_count)
  if(NOT pc_count EQUAL 1)
    message(FATAL_ERROR "expected one installed flowpool.pc under ${prefix}, found: ${pc_files}")
  endif()
  get_filename_component(pc_dir ${pc_files} DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs flowpool OUTPUT_VARIABLE flags
                  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs flowpool failed (${rc}) with PKG_CONFIG_PATH=${pc_dir}")
  endif()
  message(STATUS "pkg-config --cflags --libs flowpool: ${flags}")
  separate_arguments(flag_list UNIX_COMMAND "${flags}")
  get_filename_component(libdir ${pc_dir} DIRECTORY)
  foreach(expected "-I${prefix}/include" "-std=c++20" "-L${libdir}" "-lflowpool" "-pthread")
    if(NOT expected IN_LIST flag_list)
      message(FATAL_ERROR "pkg-config output lacks ${expected}: ${flags}")
    endif()
  endforeach()
  run(${CXX} ${consumer_src}/main.cpp ${flag_list} -o ${WORK_DIR}/consumer)
  run(${WORK_DIR}/consumer)
  return()
endif()
if(MODE STREQUAL "tsan")
  set(prefix ${WORK_DIR}/stage)
  run(${CMAKE_COMMAND} --install ${FLOWPOOL_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
  run(${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/tsan_consumer -B ${WORK_DIR}/build -G ${GENERATOR}
      -DCMAKE_BUILD_TYPE=${CONFIG} -DCMAKE_PREFIX_PATH=${prefix})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  set(ENV{TSAN_OPTIONS} "halt_on_error=1:exitcode=66")
  run(${WORK_DIR}/build/tsan_consumer)
  return()
endif()
if(MODE STREQUAL "redis")
  # Component redis: find_package(flowpool COMPONENTS redis) against a staged install, and the
  # installed flowpool-redis-worker runs.
  set(prefix ${WORK_DIR}/stage)
  run(${CMAKE_COMMAND} --install ${FLOWPOOL_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
  if(NOT EXISTS ${prefix}/include/flowpool/redis/stream_source.hpp OR EXISTS ${prefix}/include/flowpool/redis/src)
    message(FATAL_ERROR "installed redis header tree is wrong under ${prefix}/include/flowpool/redis")
  endif()
  run(${prefix}/bin/flowpool-redis-worker --help)
  run(${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/redis_consumer -B ${WORK_DIR}/build -G ${GENERATOR}
      -DCMAKE_BUILD_TYPE=${CONFIG} -DCMAKE_PREFIX_PATH=${prefix})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  run(${WORK_DIR}/build/redis_consumer)
  return()
endif()
if(MODE STREQUAL "find_package")
  set(prefix ${WORK_DIR}/stage)
  run(${CMAKE_COMMAND} --install ${FLOWPOOL_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
  # The installed tree must hold only public headers: nothing from lib/src.
  if(EXISTS ${prefix}/include/flowpool/src OR NOT EXISTS ${prefix}/include/flowpool/flowpool.hpp)
    message(FATAL_ERROR "installed header tree is wrong under ${prefix}/include")
  endif()
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -G ${GENERATOR}
      -DCMAKE_BUILD_TYPE=${CONFIG} -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_MODE=find_package)
else()
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -G ${GENERATOR}
      -DCMAKE_BUILD_TYPE=${CONFIG} -DCONSUMER_MODE=add_subdirectory -DFLOWPOOL_SOURCE_DIR=${FLOWPOOL_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
if(MODE STREQUAL "add_subdirectory")
  # A vendored flowpool must not install itself into the parent's prefix (FLOWPOOL_INSTALL
  # defaults to PROJECT_IS_TOP_LEVEL): installing the consumer installs nothing of flowpool.
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/build --prefix ${WORK_DIR}/parent_prefix)
  file(GLOB_RECURSE leaked ${WORK_DIR}/parent_prefix/*)
  if(leaked)
    message(FATAL_ERROR "a vendored flowpool installed files into the parent's prefix: ${leaked}")
  endif()
endif()
