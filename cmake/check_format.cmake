# cmake -P script: fails if clang-format would change any C++ file of flowpool's.
#   -DCLANG_FORMAT=<path> -DSOURCE_DIR=<repository root>
cmake_minimum_required(VERSION 3.25)
file(GLOB_RECURSE files LIST_DIRECTORIES false
     ${SOURCE_DIR}/lib/*.hpp ${SOURCE_DIR}/lib/*.cpp ${SOURCE_DIR}/test/*.hpp ${SOURCE_DIR}/test/*.cpp
     ${SOURCE_DIR}/bench/*.hpp ${SOURCE_DIR}/bench/*.cpp ${SOURCE_DIR}/docs/examples/*.cpp)
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-format: the files above are not formatted (run clang-format -i on them)")
endif()
list(LENGTH files count)
message(STATUS "clang-format: ${count} files formatted")
