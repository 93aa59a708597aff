// Shapes (extents known at run time, rank at compile time), strides and broadcasting rules.
#pragma once

#include <array>
#include <sstream>
#include <string>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

/// Extents of a rank-R tensor, outermost first.
template <std::size_t R>
using Shape = std::array<index_t, R>;

/// Number of elements of a shape (1 for rank 0).
template <std::size_t R>
constexpr index_t numel(const Shape<R>& s) noexcept {
  index_t n = 1;
  for (std::size_t i = 0; i < R; ++i) n *= s[i];
  return n;
}

/// Row-major (C order) strides of a contiguous tensor of shape `s`, in elements.
template <std::size_t R>
constexpr Shape<R> contiguous_strides(const Shape<R>& s) noexcept {
  Shape<R> st{};
  index_t acc = 1;
  for (std::size_t i = R; i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

/// "[2, 3, 4]": the spelling used in every error message.
template <class Extents>
TESSERA_NOINLINE std::string shape_to_string(const Extents& s) {
  std::ostringstream os;
  os << '[';
  bool first = true;
  for (auto e : s) {
    if (!first) os << ", ";
    os << e;
    first = false;
  }
  os << ']';
  return os.str();
}

/// Resolves a possibly negative axis (-1 = last) against `rank`; throws index_error when out of range.
inline std::size_t normalize_axis(index_t axis, std::size_t rank, const char* op) {
  const index_t r = static_cast<index_t>(rank);
  if (axis < -r || axis >= r) {
    throw index_error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for rank " +
                      std::to_string(rank));
  }
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

/// NumPy broadcasting of two shapes (right-aligned; extents must match or be 1).
template <std::size_t RA, std::size_t RB>
TESSERA_NOINLINE Shape<(RA > RB ? RA : RB)> broadcast_shapes(const Shape<RA>& a, const Shape<RB>& b, const char* op) {
  constexpr std::size_t R = RA > RB ? RA : RB;
  Shape<R> out{};
  for (std::size_t i = 0; i < R; ++i) {
    const index_t ea = i < R - RA ? 1 : a[i - (R - RA)];
    const index_t eb = i < R - RB ? 1 : b[i - (R - RB)];
    if (ea == eb || eb == 1) {
      out[i] = ea;
    } else if (ea == 1) {
      out[i] = eb;
    } else {
      throw shape_error(std::string(op) + ": " + shape_to_string(a) + " and " + shape_to_string(b) +
                        " cannot be broadcast: extents " + std::to_string(ea) + " and " + std::to_string(eb) +
                        " at axis " + std::to_string(i) + " differ and neither is 1");
    }
  }
  return out;
}

/// Strides that read a tensor of shape `s`/strides `st` as if broadcast to `out` (0 on repeated axes).
template <std::size_t R, std::size_t RO>
Shape<RO> broadcast_strides(const Shape<R>& s, const Shape<R>& st, const Shape<RO>& /*out*/) {
  static_assert(R <= RO, "broadcast_strides: source rank exceeds target rank");
  Shape<RO> res{};
  for (std::size_t i = 0; i < RO; ++i) {
    if (i < RO - R) {
      res[i] = 0;
    } else {
      // A size-1 axis never advances, whether or not it is broadcast.
      const std::size_t k = i - (RO - R);
      res[i] = s[k] == 1 ? 0 : st[k];
    }
  }
  return res;
}

}  // namespace tessera
