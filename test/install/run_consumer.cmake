# cmake -P script: build and run the consumer project against flowpool.
#   MODE=find_package      install the already-built flowpool into a staging prefix, then find_package it
#   MODE=add_subdirectory  add flowpool's source tree with add_subdirectory
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
