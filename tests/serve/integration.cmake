# tessera-serve asked by real clients: test_serve_fashion_models exports the example models
# (examples/fashion_models.hpp) and a models.config into the build tree, then serve_check.py
# starts the tessera-serve binary on them and checks it with curl and Triton's Python client
# (tritonclient[http], installed into a virtual environment in the build tree first; exit 77,
# reported as skipped, where the package registry cannot be reached). Included from
# tests/CMakeLists.txt.
#
# tessera-serve is defined in examples/, which the top-level CMakeLists.txt adds after tests/, so
# `TARGET tessera-serve` is still false here: examples/ defines it exactly when tessera::serve
# exists (as test_serve_fashion_models does) and TESSERA_BUILD_EXAMPLES is on, and
# $<TARGET_FILE:tessera-serve> is resolved at generate time, once every directory is read.
if(TARGET test_serve_fashion_models AND (TARGET tessera-serve OR TESSERA_BUILD_EXAMPLES))
  set(serve_models ${CMAKE_CURRENT_BINARY_DIR}/serve_models)
  add_test(NAME serve_models_written COMMAND test_serve_fashion_models)
  set_tests_properties(serve_models_written PROPERTIES ENVIRONMENT "TESSERA_SERVE_MODELS=${serve_models}"
                       FIXTURES_SETUP serve_models LABELS "serve")
  add_test(NAME serve_integration
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/python_check.sh ${PROJECT_BINARY_DIR}/serve-venv "tritonclient.http, numpy"
                   "tritonclient[http] numpy" ${CMAKE_CURRENT_SOURCE_DIR}/serve/serve_check.py $<TARGET_FILE:tessera-serve>
                   ${serve_models})
  set_tests_properties(serve_integration PROPERTIES FIXTURES_REQUIRED serve_models SKIP_RETURN_CODE 77
                       TIMEOUT 600 LABELS "serve;integration")
endif()
