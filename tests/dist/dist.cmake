# Distributed training's tests (tessera::dist), included from tests/CMakeLists.txt. Each doctest
# program runs under mpirun with 2, 3 and 4 processes on one machine; failure_check.sh checks that
# a killed or stalled rank ends the whole job. mpiexec gets TESSERA_MPIEXEC_FLAGS (the top-level
# CMakeLists.txt: for Open MPI, run as root, oversubscribe, a time limit).
if(NOT TARGET tessera::dist)
  return()
endif()

add_library(tessera_dist_test_main OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/dist/mpi_main.cpp)
target_link_libraries(tessera_dist_test_main PUBLIC doctest::doctest tessera::dist)
target_compile_options(tessera_dist_test_main PRIVATE ${TESSERA_TEST_WARNINGS} ${TESSERA_TEST_OPTIMIZE})

foreach(stem collectives data_parallel sync_batch_norm)
  set(target test_dist_${stem})
  add_executable(${target} ${CMAKE_CURRENT_SOURCE_DIR}/dist/test_${stem}.cpp)
  tessera_test_settings(${target})
  # No shared precompiled header: MPI's compile flags are not the ones it was built with.
  target_link_libraries(${target} PRIVATE tessera::dist doctest::doctest tessera_dist_test_main)
  foreach(np 2 3 4)
    add_test(NAME ${target}_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${TESSERA_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:${target}>)
    set_tests_properties(${target}_np${np} PROPERTIES LABELS "unit;dist" TIMEOUT 300 PROCESSORS 2)
  endforeach()
endforeach()

string(JOIN " " mpiexec_flags_words ${TESSERA_MPIEXEC_FLAGS})
# A small data-parallel training that a rank leaves on purpose: killed (SIGKILL), or asleep past
# the watchdog's timeout.
add_executable(dist_failure_probe ${CMAKE_CURRENT_SOURCE_DIR}/dist/failure_probe.cpp)
tessera_test_settings(dist_failure_probe)
target_link_libraries(dist_failure_probe PRIVATE tessera::dist)
foreach(mode kill stall)
  add_test(NAME dist_${mode}ed_rank_ends_the_job
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/dist/failure_check.sh ${mode} ${MPIEXEC_EXECUTABLE}
                   "${mpiexec_flags_words}" $<TARGET_FILE:dist_failure_probe>)
  set_tests_properties(dist_${mode}ed_rank_ends_the_job PROPERTIES LABELS "dist" TIMEOUT 120 PROCESSORS 2)
endforeach()

# Under AddressSanitizer + UBSan too (TESSERA_TEST_SANITIZERS), with 2 processes; the ranks, started
# on this machine, inherit the sanitizers' options from mpiexec's environment. Full stacks for every
# allocation (fast_unwind_on_malloc=0: Open MPI is built without frame pointers), so that the
# leaks Open MPI leaves at exit are recognised by tests/sanitizers/lsan.supp.
if(TESSERA_TEST_SANITIZERS)
  set(dist_asan_environment ${asan_environment})
  list(TRANSFORM dist_asan_environment REPLACE "^ASAN_OPTIONS=(.*)$" "ASAN_OPTIONS=\\1:fast_unwind_on_malloc=0")
  foreach(stem collectives data_parallel)
    set(target asan_dist_${stem})
    tessera_sanitized_program(asan ${target} program ${CMAKE_CURRENT_SOURCE_DIR}/dist/test_${stem}.cpp
                              ${CMAKE_CURRENT_SOURCE_DIR}/dist/mpi_main.cpp)
    if(TARGET ${target})
      tessera_test_settings(${target})
      target_link_libraries(${target} PRIVATE tessera::dist doctest::doctest)
    endif()
    add_test(NAME ${target}_np2 COMMAND ${MPIEXEC_EXECUTABLE} ${TESSERA_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} 2 ${program})
    set_tests_properties(${target}_np2 PROPERTIES LABELS "asan;dist" TIMEOUT 600 PROCESSORS 2 ENVIRONMENT "${dist_asan_environment}")
    if(sanitized_elsewhere)
      set_tests_properties(${target}_np2 PROPERTIES FIXTURES_REQUIRED tessera_sanitized_programs)
    endif()
  endforeach()
endif()
