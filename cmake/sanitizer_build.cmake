# Builds the sanitized test programs (asan_*, tsan_*) in a Clang build of this project, run with
# `cmake -P` from CTest (sanitizers_build, tests/CMakeLists.txt; docs/reliability.md).
#
#   -DSOURCE_DIR=<tessera> -DBINARY_DIR=<dir> -DCXX=<clang++> -DGENERATOR=<gen> [-DMAKE_PROGRAM=..]
#   -DJOBS=<n> [-DSETTINGS=<file>]  (a cmake -C script: the parent build's settings to repeat)
#
# The folder is configured once and then rebuilt incrementally, like any build folder.

foreach(required SOURCE_DIR BINARY_DIR CXX GENERATOR JOBS)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "sanitizer_build.cmake: -D${required}=... is required")
  endif()
endforeach()

include(${CMAKE_CURRENT_LIST_DIR}/run_or_die.cmake)

# Only the sanitized programs: no examples, benchmarks, CUDA or fuzzing (their own build), and the
# twins built right here (this build's compiler is Clang).
set(configure_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}"
    -DTESSERA_BUILD_TESTS=ON -DTESSERA_TEST_SANITIZERS=ON -DTESSERA_BUILD_EXAMPLES=OFF
    -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_CUDA=OFF -DTESSERA_TEST_FUZZ=OFF -DTESSERA_BUILD_FUZZERS=OFF)
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(DEFINED SETTINGS AND NOT SETTINGS STREQUAL "")
  list(APPEND configure_args -C "${SETTINGS}")
endif()
run_or_die("${CMAKE_COMMAND}" ${configure_args})
run_or_die("${CMAKE_COMMAND}" --build "${BINARY_DIR}" --target tessera_sanitized_programs --parallel "${JOBS}")
