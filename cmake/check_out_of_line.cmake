# cmake -DSOURCE_DIR=<repository> -P check_out_of_line.cmake
# Fails unless each source of tessera::precompiled that compiles a group of out-of-line functions
# (core/config.hpp) includes, directly or through other tessera headers, every header that defines
# functions of its group:
#   `#if TESSERA_OUT_OF_LINE_CORE_DEFINITIONS`  src/precompiled_core.cpp
#   `#if TESSERA_OUT_OF_LINE_DEFINITIONS`       src/precompiled_functions.cpp
# A header a source misses would leave its functions undefined in the library, and programs that
# link it would fail to link as soon as they call one.
cmake_minimum_required(VERSION 3.16)
file(GLOB_RECURSE headers RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/tessera/*.hpp)

# The tessera headers `source` reaches, following #include lines (conditional ones too), in `out`.
function(reached_headers source out)
  set(reached "")
  set(queue ${source})
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
  set(${out} ${reached} PARENT_SCOPE)
endfunction()

set(problems "")
foreach(group "TESSERA_OUT_OF_LINE_CORE_DEFINITIONS|src/precompiled_core.cpp"
              "TESSERA_OUT_OF_LINE_DEFINITIONS|src/precompiled_functions.cpp")
  string(REPLACE "|" ";" group "${group}")
  list(GET group 0 macro)
  list(GET group 1 source)
  set(defining "")
  foreach(h IN LISTS headers)
    file(STRINGS ${SOURCE_DIR}/include/${h} lines REGEX "^#if ${macro}$")
    if(lines)
      list(APPEND defining ${h})
    endif()
  endforeach()
  if(NOT defining)
    message(FATAL_ERROR "no header defines functions under ${macro}: the pattern this check looks for has changed")
  endif()
  reached_headers(${SOURCE_DIR}/${source} reached)
  set(missing OFF)
  foreach(h IN LISTS defining)
    if(NOT h IN_LIST reached)
      string(APPEND problems "  ${source} does not include ${h} (${macro})\n")
      set(missing ON)
    endif()
  endforeach()
  if(NOT missing)
    list(LENGTH defining n)
    message(STATUS "${source} includes all ${n} headers with definitions under ${macro}")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "headers with out-of-line definitions missing from tessera::precompiled:\n${problems}")
endif()
