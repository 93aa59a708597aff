# cmake -DSOURCE_DIR=<repository> -P check_out_of_line.cmake
# Fails unless src/precompiled_functions.cpp includes, directly or through other tessera headers,
# every header that defines functions out of line (`#if TESSERA_OUT_OF_LINE_DEFINITIONS`,
# core/config.hpp): a header it misses would leave its functions undefined in tessera::precompiled,
# and programs that link the library would fail to link as soon as they call one.
cmake_minimum_required(VERSION 3.16)
file(GLOB_RECURSE headers RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/tessera/*.hpp)
set(defining "")
foreach(h IN LISTS headers)
  file(STRINGS ${SOURCE_DIR}/include/${h} lines REGEX "^#if TESSERA_OUT_OF_LINE_DEFINITIONS")
  if(lines)
    list(APPEND defining ${h})
  endif()
endforeach()
if(NOT defining)
  message(FATAL_ERROR "no header defines functions out of line: the pattern this check looks for has changed")
endif()

# The tessera headers the source reaches, following #include lines (conditional ones too).
set(reached "")
set(queue ${SOURCE_DIR}/src/precompiled_functions.cpp)
while(queue)
  list(POP_FRONT queue file)
  file(STRINGS ${file} includes REGEX "^#include [<\"]tessera/[^>\"]+[>\"]")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include [<\"](tessera/[^>\"]+)[>\"].*" "\\1" h "${line}")
    if(NOT h IN_LIST reached AND EXISTS ${SOURCE_DIR}/include/${h})
      list(APPEND reached ${h})
      list(APPEND queue ${SOURCE_DIR}/include/${h})
    endif()
  endforeach()
endwhile()

set(missing "")
foreach(h IN LISTS defining)
  if(NOT h IN_LIST reached)
    string(APPEND missing "  ${h}\n")
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "src/precompiled_functions.cpp does not include these headers with out-of-line definitions:\n${missing}")
endif()
list(LENGTH defining n)
message(STATUS "src/precompiled_functions.cpp includes all ${n} headers with out-of-line definitions")
