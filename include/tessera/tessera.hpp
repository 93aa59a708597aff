// tessera: tensors, lazy expression templates, autodiff, layers, optimizers, data, training and
// checkpoints. Include this one header.
#pragma once

#include "tessera/core/config.hpp"
#include "tessera/core/dtype.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/print.hpp"
#include "tessera/core/numerics.hpp"

#include "tessera/backend/concept.hpp"
#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/elementwise.hpp"
#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/backend/cpu/reduce.hpp"
#include "tessera/backend/cpu/softmax.hpp"
#include "tessera/backend/cpu/conv.hpp"
#include "tessera/backend/cpu/pool.hpp"
#include "tessera/backend/cpu/embedding.hpp"
#include "tessera/backend/cpu/normalization.hpp"

// After every kernel: with TESSERA_PRECOMPILED, their float and double instantiations come
// from tessera::precompiled.
#include "tessera/backend/cpu/precompiled.hpp"

#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/matmul.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/softmax.hpp"
#include "tessera/expr/join.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/slice.hpp"
#include "tessera/expr/conv.hpp"
#include "tessera/expr/embedding.hpp"
#include "tessera/expr/normalization.hpp"

#include "tessera/autodiff/autodiff.hpp"

#include "tessera/nn/nn.hpp"
#include "tessera/optim/optim.hpp"

#include "tessera/data/data.hpp"

#include "tessera/io/io.hpp"

#include "tessera/train/train.hpp"

namespace tessera {
/// Library version (matches the CMake package version).
inline constexpr const char* version = "0.1.0";
}  // namespace tessera
