# Checks that the version string in <tessera/tessera.hpp> matches the CMake project version.
#   cmake -DHEADER=<include/tessera/tessera.hpp> -DVERSION=<x.y.z> -P check_version.cmake
file(READ "${HEADER}" text)
if(NOT text MATCHES "version[ \t]*=[ \t]*\"([^\"]*)\"")
  message(STATUS "${HEADER} declares no version string; nothing to compare")
  return()
endif()
if(NOT CMAKE_MATCH_1 STREQUAL VERSION)
  message(FATAL_ERROR "${HEADER} says version \"${CMAKE_MATCH_1}\" but CMakeLists.txt says ${VERSION}")
endif()
message(STATUS "version ${VERSION} in both ${HEADER} and CMakeLists.txt")
