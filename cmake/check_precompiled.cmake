# cmake -DNM=<nm> -DOBJECT=<object file> -P check_precompiled.cmake
# Fails unless the object (tests/precompiled/kernels_probe.cpp, compiled with
# TESSERA_PRECOMPILED_KERNELS) refers to every kernel backend/cpu/precompiled.hpp lists, for
# float and double, and defines none of them: the `extern template` declarations took effect.
execute_process(COMMAND ${NM} -C ${OBJECT} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} ${OBJECT} failed (${rc})")
endif()
set(kernels conv2d_forward<T> conv2d_pool_forward<T> conv2d_backward_data<T> conv2d_backward_filter<T>
            conv2d_backward_bias<T> "pool2d_forward<true, T>" "pool2d_forward<false, T>" "pool2d_backward<true, T>"
            "pool2d_backward<false, T>" "softmax_into<T, 1ul>" "softmax_into<T, 2ul>" "softmax_into<T, 3ul>"
            "softmax_into<T, 4ul>" batch_norm_forward<T> batch_norm_scale_shift<T>
            gemm<T> gemm_batched<T>)
# nm's lines: "<address> W void tessera::gemm<float>(...)" defines it, as does any line for a lambda
# inside it ("<address> W tessera::gemm<float>(...)::{lambda...}"); "                 U void
# tessera::gemm<float>(...)" refers to it.
set(symbols "\n${symbols}")
set(problems "")
foreach(type float double)
  foreach(pattern IN LISTS kernels)
    string(REPLACE "T" "${type}" kernel "${pattern}")
    if(NOT symbols MATCHES "\n +U [^\n]* tessera::${kernel}\\(")
      string(APPEND problems "  never referred to: tessera::${kernel}\n")
    endif()
    if(symbols MATCHES "\n[0-9a-f]+ [TtWw] ([^\n]* )?tessera::${kernel}\\(")
      string(APPEND problems "  defined in the program, not taken from the library: tessera::${kernel}\n")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "precompiled kernels: ${OBJECT}\n${problems}")
endif()
message(STATUS "precompiled kernels: the probe refers to every listed kernel and defines none")
