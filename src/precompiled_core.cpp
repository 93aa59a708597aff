// tessera::precompiled: the shape rules and node checks declared with TESSERA_OUT_OF_LINE and
// defined under TESSERA_OUT_OF_LINE_CORE_DEFINITIONS (core/config.hpp), which every program calls.
// Their own object of the library, so that a program that reads and writes no files links none of
// src/precompiled_functions.cpp's code (and the libraries it needs). Every header that defines
// some is included.
#define TESSERA_PRECOMPILED_CORE_DEFINITIONS
#include <tessera/core/numerics.hpp>
#include <tessera/core/shape.hpp>
#include <tessera/expr/conv.hpp>
#include <tessera/expr/normalization.hpp>
