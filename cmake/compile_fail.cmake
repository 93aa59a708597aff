# Compiles one source file with -fsyntax-only and checks the outcome; run with `cmake -P`.
#
#   cmake -DCXX=<compiler> -DSOURCE=<file.cpp> -DMODE=fail|pass
#         [-DSTD=17] [-DINCLUDE_DIRS=a|b] [-DDEFINITIONS=X=1|Y] -P compile_fail.cmake
#
# MODE=fail: the file must NOT compile, and the compiler output must match the CMake regex given
# in the file's `// expect: <regex>` comment (so a case that fails for the wrong reason, e.g. a
# typo or a missing include, is reported instead of passing). MODE=pass: the file must compile.
# Lists are separated by `|` because `;` does not survive add_test's command line.

foreach(var CXX SOURCE MODE)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "compile_fail.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT MODE MATCHES "^(fail|pass)$")
  message(FATAL_ERROR "compile_fail.cmake: MODE must be 'fail' or 'pass', got '${MODE}'")
endif()
if(NOT DEFINED STD OR STD STREQUAL "")
  set(STD 17)
endif()

set(expect "")
if(MODE STREQUAL "fail")
  file(READ "${SOURCE}" text)
  if(NOT text MATCHES "//[ \t]*expect:[ \t]*([^\r\n]*)")
    message(FATAL_ERROR "${SOURCE}: missing the `// expect: <regex>` comment naming the expected error")
  endif()
  string(STRIP "${CMAKE_MATCH_1}" expect)
  if(expect STREQUAL "")
    message(FATAL_ERROR "${SOURCE}: the `// expect:` comment has an empty regex")
  endif()
endif()

set(args -std=c++${STD} -fsyntax-only -fdiagnostics-color=never)
if(DEFINED INCLUDE_DIRS AND NOT INCLUDE_DIRS STREQUAL "")
  string(REPLACE "|" ";" include_dirs "${INCLUDE_DIRS}")
  foreach(dir IN LISTS include_dirs)
    if(NOT dir STREQUAL "")
      list(APPEND args "-I${dir}")
    endif()
  endforeach()
endif()
if(DEFINED DEFINITIONS AND NOT DEFINITIONS STREQUAL "")
  string(REPLACE "|" ";" definitions "${DEFINITIONS}")
  foreach(def IN LISTS definitions)
    if(NOT def STREQUAL "")
      list(APPEND args "-D${def}")
    endif()
  endforeach()
endif()

# LC_ALL=C: plain ASCII quotes in GCC's messages, so expect regexes stay simple.
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env LC_ALL=C LANG=C "${CXX}" ${args} "${SOURCE}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)

# Keep failure reports readable: the first lines are the ones that explain.
string(LENGTH "${out}" out_length)
if(out_length GREATER 8000)
  string(SUBSTRING "${out}" 0 8000 out_head)
  set(out_head "${out_head}\n... (${out_length} characters in all)")
else()
  set(out_head "${out}")
endif()

if(MODE STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} should compile but did not (exit ${rc}):\n${out_head}")
  endif()
  message(STATUS "${SOURCE}: compiles, as expected")
  return()
endif()

if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not (expected an error matching '${expect}')")
endif()
if(NOT out MATCHES "${expect}")
  message(FATAL_ERROR "${SOURCE} failed to compile, but not with an error matching '${expect}':\n${out_head}")
endif()
message(STATUS "${SOURCE}: fails to compile with '${expect}', as expected")
