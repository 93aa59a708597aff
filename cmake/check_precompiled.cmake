# cmake -DNM=<nm> -DOBJECT=<object file> -P check_precompiled.cmake
# Fails unless the object (tests/precompiled/probe.cpp, compiled with TESSERA_PRECOMPILED) refers to
# every kernel backend/cpu/precompiled.hpp lists and every optimizer update optim/optimizers.hpp
# lists, for float and double, and to the out-of-line
# functions the probe calls (core/config.hpp), and defines none of them: the `extern template`
# declarations and TESSERA_OUT_OF_LINE took effect.
execute_process(COMMAND ${NM} -C ${OBJECT} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} ${OBJECT} failed (${rc})")
endif()
set(kernels conv2d_forward<T> conv2d_pool_forward<T> conv2d_backward_data<T> conv2d_backward_filter<T>
            conv2d_backward_bias<T> "pool2d_forward<true, T>" "pool2d_forward<false, T>" "pool2d_backward<true, T>"
            "pool2d_backward<false, T>" "softmax_into<T, 1ul>" "softmax_into<T, 2ul>" "softmax_into<T, 3ul>"
            "softmax_into<T, 4ul>" batch_norm_forward<T> batch_norm_scale_shift<T>
            gemm<T> gemm_batched<T>
            # the optimizers' updates (optim/optimizers.hpp)
            "optim::SGD<T, tessera::cpu>::update" "optim::AdamBase<T, tessera::cpu, false>::update"
            "optim::AdamBase<T, tessera::cpu, true>::update" "optim::RMSprop<T, tessera::cpu>::update"
            "optim::Adagrad<T, tessera::cpu>::update")
# The names to check: every kernel for float and double, and the non-template functions.
set(names io::SafetensorsFile::parse io::SafetensorsFile::write io::SafetensorsFile::checked io::read_file
          detail::resolve_reshape detail::conv2d_output_shape)
foreach(type float double)
  foreach(pattern IN LISTS kernels)
    string(REPLACE "T" "${type}" kernel "${pattern}")
    list(APPEND names "${kernel}")
  endforeach()
endforeach()
# nm's lines: "<address> W void tessera::gemm<float>(...)" defines it, as does any line for a lambda
# inside it ("<address> W tessera::gemm<float>(...)::{lambda...}"); "                 U void
# tessera::gemm<float>(...)" refers to it (without a return type for a non-template function).
set(symbols "\n${symbols}")
set(problems "")
foreach(name IN LISTS names)
  if(NOT symbols MATCHES "\n +U ([^\n]* )?tessera::${name}\\(")
    string(APPEND problems "  never referred to: tessera::${name}\n")
  endif()
  if(symbols MATCHES "\n[0-9a-f]+ [TtWw] ([^\n]* )?tessera::${name}\\(")
    string(APPEND problems "  defined in the program, not taken from the library: tessera::${name}\n")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "tessera::precompiled: ${OBJECT}\n${problems}")
endif()
message(STATUS "tessera::precompiled: the probe refers to every listed kernel and function and defines none")
