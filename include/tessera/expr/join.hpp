// concat and stack: copy several tensors into one new tensor along an axis.
#pragma once

#include <string>
#include <vector>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"

namespace tessera {

/// Joins tensors along an existing axis; all other extents must agree.
template <class T, std::size_t R, class B>
Tensor<T, R, B> concat(const std::vector<Tensor<T, R, B>>& parts, index_t axis = 0) {
  static_assert(R >= 1, "tessera::concat: rank-0 tensors have no axis; use stack");
  if (parts.empty()) throw value_error("concat: no tensors given");
  const std::size_t a = normalize_axis(axis, R, "concat");
  Shape<R> shape = parts[0].shape();
  shape[a] = 0;
  for (const auto& p : parts) {
    for (std::size_t i = 0; i < R; ++i) {
      if (i != a && p.shape()[i] != parts[0].shape()[i]) {
        throw shape_error("concat: " + shape_to_string(parts[0].shape()) + " and " + shape_to_string(p.shape()) +
                          " differ at axis " + std::to_string(i) + " (joining along axis " + std::to_string(a) + ")");
      }
    }
    shape[a] += p.shape()[a];
  }
  auto out = Tensor<T, R, B>::uninitialized(shape);
  index_t at = 0;
  for (const auto& p : parts) {
    const index_t n = p.shape()[a];
    if (n > 0) out.slice(static_cast<index_t>(a), at, at + n).assign(p);
    at += n;
  }
  return out;
}
template <class T, std::size_t R, class B>
Tensor<T, R, B> concat(std::initializer_list<Tensor<T, R, B>> parts, index_t axis = 0) {
  return concat(std::vector<Tensor<T, R, B>>(parts), axis);
}

/// Joins same-shape tensors along a new axis inserted at `axis`.
template <class T, std::size_t R, class B>
Tensor<T, R + 1, B> stack(const std::vector<Tensor<T, R, B>>& parts, index_t axis = 0) {
  if (parts.empty()) throw value_error("stack: no tensors given");
  std::vector<Tensor<T, R + 1, B>> expanded;
  expanded.reserve(parts.size());
  for (const auto& p : parts) {
    if (p.shape() != parts[0].shape()) {
      throw shape_error("stack: " + shape_to_string(parts[0].shape()) + " and " + shape_to_string(p.shape()) +
                        " differ; stacked tensors must have equal shapes");
    }
    expanded.push_back(p.unsqueeze(axis));
  }
  return concat(expanded, axis);
}
template <class T, std::size_t R, class B>
Tensor<T, R + 1, B> stack(std::initializer_list<Tensor<T, R, B>> parts, index_t axis = 0) {
  return stack(std::vector<Tensor<T, R, B>>(parts), axis);
}

}  // namespace tessera
