# Steps of the package-consumer test (tests/package), run with `cmake -P` from CTest.
#
#   STEP=install: -DBUILD_DIR=<tessera build> -DPREFIX=<dir> [-DCONFIG=<cfg>]
#       Installs the tessera build tree into a fresh PREFIX.
#   STEP=build:   -DSOURCE_DIR=<tests/package> -DBINARY_DIR=<dir> -DPREFIX=<dir> -DGENERATOR=<gen>
#                 [-DMAKE_PROGRAM=..] [-DCXX=..] [-DCXX_STANDARD=17|20] [-DCONFIG=<cfg>]
#       Configures the consumer in a fresh BINARY_DIR with CMAKE_PREFIX_PATH=PREFIX and builds it.

if(NOT DEFINED CONFIG OR CONFIG STREQUAL "")
  set(CONFIG Release)
endif()

include(${CMAKE_CURRENT_LIST_DIR}/run_or_die.cmake)

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  run_or_die("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" --config "${CONFIG}")
  if(NOT EXISTS "${PREFIX}/lib/cmake/tessera/tesseraConfig.cmake")
    message(FATAL_ERROR "install did not produce ${PREFIX}/lib/cmake/tessera/tesseraConfig.cmake")
  endif()
elseif(STEP STREQUAL "build")
  file(REMOVE_RECURSE "${BINARY_DIR}")
  set(configure_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${PREFIX}"
                     "-DCMAKE_BUILD_TYPE=${CONFIG}")
  if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  if(DEFINED CXX AND NOT CXX STREQUAL "")
    list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX}")
  endif()
  if(DEFINED CXX_STANDARD AND NOT CXX_STANDARD STREQUAL "")
    list(APPEND configure_args "-DCMAKE_CXX_STANDARD=${CXX_STANDARD}" -DCMAKE_CXX_STANDARD_REQUIRED=ON)
  endif()
  run_or_die("${CMAKE_COMMAND}" ${configure_args})

  # Prove the package came from PREFIX, not from some other tessera on the system.
  file(STRINGS "${BINARY_DIR}/CMakeCache.txt" found_dir REGEX "^tessera_DIR:")
  string(REGEX REPLACE "^tessera_DIR:[A-Z]+=" "" found_dir "${found_dir}")
  get_filename_component(real_prefix "${PREFIX}" REALPATH)
  get_filename_component(real_found "${found_dir}" REALPATH)
  string(FIND "${real_found}" "${real_prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "the consumer found tessera in '${found_dir}', not under '${PREFIX}'")
  endif()

  run_or_die("${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config "${CONFIG}")
else()
  message(FATAL_ERROR "package_test.cmake: STEP must be 'install' or 'build', got '${STEP}'")
endif()
