# cmake -DNM=<nm> -DOBJECT=<object file> -P check_precompiled.cmake
# Fails unless the object (tests/precompiled/probe.cpp, compiled with TESSERA_PRECOMPILED) refers to
# every kernel backend/cpu/precompiled.hpp lists, for float and double, and to the out-of-line
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
# Non-template functions: nm prints no return type.
foreach(function io::SafetensorsFile::parse io::SafetensorsFile::write io::SafetensorsFile::checked io::read_file)
  if(NOT symbols MATCHES "\n +U ([^\n]* )?tessera::${function}\\(")
    string(APPEND problems "  never referred to: tessera::${function}\n")
  endif()
  if(symbols MATCHES "\n[0-9a-f]+ [TtWw] ([^\n]* )?tessera::${function}\\(")
    string(APPEND problems "  defined in the program, not taken from the library: tessera::${function}\n")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "tessera::precompiled: ${OBJECT}\n${problems}")
endif()
message(STATUS "tessera::precompiled: the probe refers to every listed kernel and function and defines none")
