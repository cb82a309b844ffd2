# cmake -P script (the strict_headers test): every public header compiles on its own, included as
# a user includes it (-I, not -isystem), under the strictest warning flags users turn on, and so do
# the templates' bodies (test/headers/instantiate.cpp). Any warning fails.
#   -DSOURCE_DIR=<flowpool source> -DWORK_DIR=<scratch dir> -DGXX=<g++> [-DCLANGXX=<clang++>]
#
# g++:   -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow -Wuseless-cast
#        -Wold-style-cast -Werror
# clang: -Weverything -Werror, minus only these (each is about the user's dialect or layout
#        choices, not a defect in the headers):
#        -Wno-c++98-compat -Wno-c++98-compat-pedantic  flowpool is C++20: C++98 compatibility is moot
#        -Wno-pre-c++20-compat-pedantic -Wno-c++20-compat  likewise for pre-C++20 dialects
#        -Wno-padded                  padding is deliberate (cache-line aligned fields)
#        -Wno-ctad-maybe-unsupported  std::lock_guard lock(m): CTAD on the standard lock types is
#                                     the standard's own intended use
#        (-Wdocumentation stays on: the doc comments must be well-formed too.)
cmake_minimum_required(VERSION 3.25)

set(gxx_flags -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow
    -Wuseless-cast -Wold-style-cast -Werror)
set(clang_flags -std=c++20 -fsyntax-only -Weverything -Werror -Wno-c++98-compat -Wno-c++98-compat-pedantic
    -Wno-pre-c++20-compat-pedantic -Wno-c++20-compat -Wno-padded -Wno-ctad-maybe-unsupported)

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
file(GLOB headers RELATIVE ${SOURCE_DIR}/lib/include ${SOURCE_DIR}/lib/include/flowpool/*.hpp)
list(SORT headers)
set(units)
foreach(header IN LISTS headers)
  string(MAKE_C_IDENTIFIER ${header} stem)
  set(unit ${WORK_DIR}/${stem}.cpp)
  file(WRITE ${unit} "#include <${header}>\n")
  list(APPEND units ${unit})
endforeach()
list(APPEND units ${SOURCE_DIR}/test/headers/instantiate.cpp)

set(failures 0)
foreach(unit IN LISTS units)
  foreach(compiler GXX CLANGXX)
    if(NOT ${compiler})
      continue()
    endif()
    if(compiler STREQUAL "GXX")
      set(flags ${gxx_flags})
    else()
      set(flags ${clang_flags})
    endif()
    execute_process(COMMAND ${${compiler}} ${flags} -I${SOURCE_DIR}/lib/include ${unit}
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      math(EXPR failures "${failures} + 1")
      message("${${compiler}} on ${unit}:\n${out}")
    endif()
  endforeach()
endforeach()
list(LENGTH units count)
if(failures GREATER 0)
  message(FATAL_ERROR "strict_headers: ${failures} compilation(s) produced warnings")
endif()
if(NOT CLANGXX)
  message(WARNING "strict_headers: clang++ not found; only g++ checked")
endif()
message(STATUS "strict_headers: ${count} units clean")
