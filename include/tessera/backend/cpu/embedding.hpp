// Row gather and scatter-add for embedding lookups on the CPU.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

/// out[p, :] = table[ids[p], :] for p < count; table is [rows, dim] row-major. Throws
/// tessera::index_error naming the first index out of range.
template <class T, class I>
void embedding_forward(cpu, const T* table, index_t rows, index_t dim, const I* ids, index_t count, T* out) {
  for (index_t p = 0; p < count; ++p) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    detail::check_embedding_index(id, rows, p);
    const T* row = table + id * dim;
    for (index_t j = 0; j < dim; ++j) out[p * dim + j] = row[j];
  }
}

/// grad = 0, then grad[ids[p], :] += dy[p, :] for every p whose index is not `skip` (padding).
/// Serial: rows repeat, and scatter-adds to one row must not race.
template <class T, class I>
void embedding_backward(cpu, const T* dy, const I* ids, index_t count, T* grad, index_t rows, index_t dim, index_t skip) {
  for (index_t k = 0; k < rows * dim; ++k) grad[k] = T(0);
  for (index_t p = 0; p < count; ++p) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    detail::check_embedding_index(id, rows, p);
    if (id == skip) continue;
    const T* src = dy + p * dim;
    T* dst = grad + id * dim;
    for (index_t j = 0; j < dim; ++j) dst[j] += src[j];
  }
}

}  // namespace tessera
