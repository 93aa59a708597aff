# run_or_die(<command> <args>...): runs the command, stopping the `cmake -P` script that included
# this file with the command line and its exit status when it fails. Shared by the scripts CTest
# runs (package_test.cmake, sanitizer_build.cmake).
function(run_or_die)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "command failed (exit ${rc}): ${cmd}")
  endif()
endfunction()
