// The umbrella header with the CUDA backend: everything in tessera.hpp plus tessera::cuda.
// Needs the CUDA toolkit (link tessera::cuda). Expressions over cuda tensors compile into CUDA
// kernels, so files that evaluate them are compiled by nvcc.
#pragma once

#include "tessera/backend/cuda/device.hpp"
#include "tessera/tessera.hpp"
#include "tessera/backend/cuda/elementwise.hpp"
#include "tessera/backend/cuda/gemm.hpp"
#include "tessera/backend/cuda/reduce.hpp"
#include "tessera/backend/cuda/softmax.hpp"
#include "tessera/backend/cuda/random.hpp"
#include "tessera/backend/cuda/conv.hpp"
#include "tessera/backend/cuda/embedding.hpp"
