# The C API's examples against C++: test_serve_c_api exports two example models and writes the
# C++ predictions in predict.c's format into the build tree; the C program (predict_c) and the
# Python one (examples/c_api/predict.py, ctypes on libtessera_c) must print exactly that.
# Included from tests/CMakeLists.txt; predict_c and tessera_c come from examples/ (read later,
# hence TESSERA_BUILD_EXAMPLES rather than TARGET; generator expressions resolve at generate time).
if(TARGET test_serve_c_api AND TESSERA_BUILD_EXAMPLES)
  set(c_api_dir ${CMAKE_CURRENT_BINARY_DIR}/c_api_models)
  add_test(NAME c_api_models_written COMMAND test_serve_c_api "--test-case=the C API gives*")
  set_tests_properties(c_api_models_written PROPERTIES ENVIRONMENT "TESSERA_C_API_DIR=${c_api_dir}"
                       FIXTURES_SETUP c_api_models LABELS "serve")
  find_program(TESSERA_PYTHON3 python3)
  foreach(model cnn mlp)
    add_test(NAME c_api_c_example_${model}
             COMMAND sh -c "$<TARGET_FILE:predict_c> ${c_api_dir}/${model}/1 3 | diff ${c_api_dir}/${model}_expected.txt -")
    set_tests_properties(c_api_c_example_${model} PROPERTIES FIXTURES_REQUIRED c_api_models LABELS "serve")
    if(TESSERA_PYTHON3)
      add_test(NAME c_api_python_example_${model}
               COMMAND sh -c "${TESSERA_PYTHON3} ${PROJECT_SOURCE_DIR}/examples/c_api/predict.py $<TARGET_FILE:tessera_c> ${c_api_dir}/${model}/1 3 | diff ${c_api_dir}/${model}_expected.txt -")
      set_tests_properties(c_api_python_example_${model} PROPERTIES FIXTURES_REQUIRED c_api_models LABELS "serve")
    endif()
  endforeach()
  # Errors reach C as a status and a message: a missing directory.
  add_test(NAME c_api_c_example_error COMMAND predict_c ${c_api_dir}/nothing/1)
  set_tests_properties(c_api_c_example_error PROPERTIES WILL_FAIL ON LABELS "serve")
endif()
