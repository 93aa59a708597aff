# The layering of docs/architecture.md, checked over every header's #include lines; run with
# `cmake -DINCLUDE_DIR=<repo>/include -P check_layers.cmake`. Fails listing each include that
# points to a later layer:
#
#   row 0  core/ and the backend contract (backend/*.hpp)
#   row 1  expr/            row 2  autodiff/        row 3  backend/<name>/ (cpu, cuda, ...)
#   row 4  nn/              row 5  optim/           row 6  data/           row 7  io/
#   row 8  train/           row 9  serve/, dist/    row 10 the umbrella headers (tessera/*.hpp)
#
# A header may include headers of its own row or earlier rows, and besides:
#   - one backend never includes another's folder;
#   - outside a backend's folder and the umbrella headers, the only backend file named is
#     backend/cpu/device.hpp (the host's tensors, for code that builds or reads them on the host),
#     and besides it dist/ may name backend/<name>/device.hpp: a transport of one backend's memory
#     (dist/nccl.hpp, on CUDA's stream) needs that backend's policy, never its kernels;
#   - data/ knows nothing of models (nn/, optim/); serve/ and dist/ know nothing of each other.

if(NOT DEFINED INCLUDE_DIR)
  message(FATAL_ERROR "check_layers.cmake: -DINCLUDE_DIR=<include folder> is required")
endif()

# Prints the layer of header `path` (relative to INCLUDE_DIR, e.g. tessera/expr/matmul.hpp) into
# `out_row` and its folder (core, expr, backend/cpu, ...) into `out_folder`.
function(tessera_layer path out_row out_folder)
  string(REGEX REPLACE "^tessera/" "" rest "${path}")
  if(NOT rest MATCHES "/")
    set(${out_row} 10 PARENT_SCOPE)
    set(${out_folder} "umbrella" PARENT_SCOPE)
    return()
  endif()
  string(REGEX MATCH "^[^/]+" top "${rest}")
  if(top STREQUAL "backend")
    if(rest MATCHES "^backend/[^/]+$")
      set(${out_row} 0 PARENT_SCOPE)
      set(${out_folder} "backend" PARENT_SCOPE)
    else()
      string(REGEX MATCH "^backend/[^/]+" folder "${rest}")
      set(${out_row} 3 PARENT_SCOPE)
      set(${out_folder} "${folder}" PARENT_SCOPE)
    endif()
    return()
  endif()
  set(rows core 0 expr 1 autodiff 2 nn 4 optim 5 data 6 io 7 train 8 serve 9 dist 9)
  list(FIND rows "${top}" at)
  if(at EQUAL -1)
    set(${out_row} -1 PARENT_SCOPE)
  else()
    math(EXPR value_at "${at} + 1")
    list(GET rows ${value_at} row)
    set(${out_row} ${row} PARENT_SCOPE)
  endif()
  set(${out_folder} "${top}" PARENT_SCOPE)
endfunction()

get_filename_component(INCLUDE_DIR "${INCLUDE_DIR}" ABSOLUTE)
file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/tessera/*.hpp" "${INCLUDE_DIR}/tessera/*.h")
list(SORT headers)
set(violations "")
set(checked 0)
foreach(header IN LISTS headers)
  tessera_layer("${header}" row folder)
  if(row EQUAL -1)
    string(APPEND violations "  ${header}: in no layer of docs/architecture.md (add its folder to cmake/check_layers.cmake)\n")
    continue()
  endif()
  file(STRINGS "${INCLUDE_DIR}/${header}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]tessera/")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"](tessera/[^>\"]+)[>\"].*$" "\\1" target "${line}")
    tessera_layer("${target}" target_row target_folder)
    math(EXPR checked "${checked} + 1")
    set(why "")
    if(target_row GREATER row)
      set(why "a later layer (${target_folder}, row ${target_row}) than its own (${folder}, row ${row})")
    elseif(folder MATCHES "^backend/" AND target_folder MATCHES "^backend/" AND NOT folder STREQUAL target_folder)
      set(why "another backend's folder")
    elseif(target_folder MATCHES "^backend/" AND NOT folder STREQUAL target_folder AND NOT folder STREQUAL "umbrella"
           AND NOT target STREQUAL "tessera/backend/cpu/device.hpp"
           AND NOT (folder STREQUAL "dist" AND target MATCHES "^tessera/backend/[^/]+/device\\.hpp$"))
      set(why "a backend's kernels (reach them through overloads on the backend tag)")
    elseif(folder STREQUAL "data" AND target_folder MATCHES "^(nn|optim)$")
      set(why "models (data knows nothing of nn/ and optim/)")
    elseif(folder MATCHES "^(serve|dist)$" AND target_folder MATCHES "^(serve|dist)$" AND NOT folder STREQUAL target_folder)
      set(why "${target_folder}/ (serve and dist know nothing of each other)")
    endif()
    if(why)
      string(APPEND violations "  ${header} includes ${target}: ${why}\n")
    endif()
  endforeach()
endforeach()

list(LENGTH headers header_count)
if(header_count EQUAL 0)
  message(FATAL_ERROR "check_layers.cmake: no headers under ${INCLUDE_DIR}/tessera")
endif()
if(violations)
  message(FATAL_ERROR "Headers that break the layering of docs/architecture.md:\n${violations}")
endif()
message(STATUS "layering: ${header_count} headers, ${checked} includes, all pointing to their own or earlier layers")
