// Shapes (extents known at run time, rank at compile time), strides and broadcasting rules.
#pragma once

#include <array>
#include <iterator>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

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

namespace detail {
// Shape rules whose checks and messages depend on no template parameter, so that they are compiled
// once (core/config.hpp, TESSERA_OUT_OF_LINE) rather than inside every instantiation that applies
// them. Extents are passed as pointer and rank.

/// "[2, 3, 4]" for `rank` extents at `e` (what shape_to_string prints).
TESSERA_OUT_OF_LINE std::string extents_to_string(const index_t* e, std::size_t rank);
/// The error of an axis outside [-rank, rank).
[[noreturn]] TESSERA_OUT_OF_LINE void throw_axis_error(index_t axis, std::size_t rank, const char* op);
/// The error of broadcasting shapes a and b (right-aligned) that disagree at (output) axis `axis`.
[[noreturn]] TESSERA_OUT_OF_LINE void throw_broadcast_error(const index_t* a, std::size_t ra, const index_t* b,
                                                            std::size_t rb, std::size_t axis, const char* op);
/// Checks that `to` (to_rank extents, at most one of them -1) holds `size` elements, the number a
/// tensor of shape `from` has, and replaces the -1 by the extent it stands for; throws shape_error.
TESSERA_OUT_OF_LINE void resolve_reshape(const index_t* from, std::size_t from_rank, index_t size, index_t* to,
                                         std::size_t to_rank);
}  // namespace detail

/// "[2, 3, 4]": the spelling used in every error message.
template <class Extents>
std::string shape_to_string(const Extents& s) {
  if constexpr (std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(std::data(s))>>, index_t>) {
    return detail::extents_to_string(std::data(s), std::size(s));
  } else {
    const std::vector<index_t> e(std::begin(s), std::end(s));
    return detail::extents_to_string(e.data(), e.size());
  }
}

/// Resolves a possibly negative axis (-1 = last) against `rank`; throws index_error when out of range.
inline std::size_t normalize_axis(index_t axis, std::size_t rank, const char* op) {
  const index_t r = static_cast<index_t>(rank);
  if (axis < -r || axis >= r) detail::throw_axis_error(axis, rank, op);
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
      detail::throw_broadcast_error(a.data(), RA, b.data(), RB, i, op);
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

#if TESSERA_OUT_OF_LINE_CORE_DEFINITIONS
TESSERA_OUT_OF_LINE std::string detail::extents_to_string(const index_t* e, std::size_t rank) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < rank; ++i) os << (i ? ", " : "") << e[i];
  os << ']';
  return os.str();
}

TESSERA_OUT_OF_LINE void detail::throw_axis_error(index_t axis, std::size_t rank, const char* op) {
  throw index_error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for rank " +
                    std::to_string(rank));
}

TESSERA_OUT_OF_LINE void detail::throw_broadcast_error(const index_t* a, std::size_t ra, const index_t* b,
                                                       std::size_t rb, std::size_t axis, const char* op) {
  const std::size_t r = ra > rb ? ra : rb;
  const index_t ea = axis < r - ra ? 1 : a[axis - (r - ra)];
  const index_t eb = axis < r - rb ? 1 : b[axis - (r - rb)];
  throw shape_error(std::string(op) + ": " + extents_to_string(a, ra) + " and " + extents_to_string(b, rb) +
                    " cannot be broadcast: extents " + std::to_string(ea) + " and " + std::to_string(eb) + " at axis " +
                    std::to_string(axis) + " differ and neither is 1");
}

TESSERA_OUT_OF_LINE void detail::resolve_reshape(const index_t* from, std::size_t from_rank, index_t size, index_t* to,
                                                 std::size_t to_rank) {
  index_t known = 1;
  std::size_t infer = to_rank;
  for (std::size_t i = 0; i < to_rank; ++i) {
    if (to[i] == -1) {
      if (infer < to_rank) throw shape_error("reshape: more than one -1 in " + extents_to_string(to, to_rank));
      infer = i;
    } else if (to[i] < 0) {
      throw shape_error("reshape: negative extent in " + extents_to_string(to, to_rank));
    } else {
      known *= to[i];
    }
  }
  if (infer < to_rank) {
    if (known == 0 || size % known != 0) {
      throw shape_error("reshape: cannot reshape " + extents_to_string(from, from_rank) + " (" + std::to_string(size) +
                        " elements) into " + extents_to_string(to, to_rank));
    }
    to[infer] = size / known;
  } else if (known != size) {
    throw shape_error("reshape: cannot reshape " + extents_to_string(from, from_rank) + " (" + std::to_string(size) +
                      " elements) into " + extents_to_string(to, to_rank) + " (" + std::to_string(known) +
                      " elements)");
  }
}
#endif  // TESSERA_OUT_OF_LINE_CORE_DEFINITIONS

}  // namespace tessera
