// NumPy broadcasting in elementwise expressions: size-1 axes, rank promotion, rank 0, empty
// extents, shape errors, compound assignment, and non-contiguous operands (transposed, stepped
// slices, broadcast_to views), all against a naive reference that reads elements by strides.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-5, 5);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

/// Element of `t` at output index `idx` under NumPy broadcasting (right-aligned, size-1 repeats),
/// read through t's own strides.
template <class T, std::size_t R, std::size_t RO>
T read_broadcast(const Tensor<T, R>& t, const std::array<index_t, RO>& idx) {
  static_assert(R <= RO);
  index_t off = 0;
  for (std::size_t i = 0; i < R; ++i) {
    const index_t k = t.shape()[i] == 1 ? 0 : idx[i + (RO - R)];
    off += k * t.strides()[i];
  }
  return t.data()[off];
}

/// Calls f(idx) for every index of `shape` in row-major order.
template <std::size_t R, class F>
void for_each_index(const Shape<R>& shape, F&& f) {
  if (tessera::numel(shape) == 0) return;
  std::array<index_t, R> idx{};
  for (index_t n = 0; n < tessera::numel(shape); ++n) {
    f(idx);
    for (std::size_t i = R; i-- > 0;) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}

template <class T>
T add_ref(T x, T y) {
  return x + y;
}
template <class T>
T sub_ref(T x, T y) {
  return x - y;
}
template <class T>
T mul_ref(T x, T y) {
  return x * y;
}
template <class T>
T div_ref(T x, T y) {
  return x / y;
}
template <class T>
T fused_ref(T x, T y) {
  // One rounding per operation, as the expression's nodes compute it: in a single statement Clang
  // contracts x * y - x into a fused multiply-add (-ffp-contract=on, its default).
  const T product = x * y;
  const T difference = product - x;
  return difference + y;
}

/// `got` (any strides) equals ref(a[idx], b[idx]) at every index of `shape`, exactly. (A function
/// pointer rather than a lambda keeps this to one instantiation per rank combination.)
template <class T, std::size_t RO, std::size_t RA, std::size_t RB>
void check_against_naive(const Tensor<T, RO>& got, const Shape<RO>& shape, const Tensor<T, RA>& a,
                         const Tensor<T, RB>& b, T (*ref)(T, T), const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == shape);
  index_t bad = 0;
  std::string first;
  for_each_index(shape, [&](const std::array<index_t, RO>& idx) {
    const T want = ref(read_broadcast(a, idx), read_broadcast(b, idx));
    const T have = read_broadcast(got, idx);
    if (!(have == want) && bad++ == 0) {
      first = tessera::shape_to_string(idx) + ": got " + std::to_string(have) + ", expected " + std::to_string(want);
    }
  });
  INFO("first mismatch " << first);
  CHECK(bad == 0);
}

/// a + b and the fused a * b - a + b over broadcast operands against the naive loop; the fused one
/// also written through a transposed (strided) destination.
template <class T, std::size_t RA, std::size_t RB>
void check_pair(const Tensor<T, RA>& a, const Tensor<T, RB>& b, const Shape<(RA > RB ? RA : RB)>& expected,
                const std::string& what) {
  constexpr std::size_t RO = RA > RB ? RA : RB;
  const Tensor<T, RO> sum = a + b;
  check_against_naive(sum, expected, a, b, add_ref<T>, what + " a + b");
  const Tensor<T, RO> fused = a * b - a + b;
  check_against_naive(fused, expected, a, b, fused_ref<T>, what + " a * b - a + b");
  if constexpr (RO >= 2) {
    Shape<RO> reversed{};
    for (std::size_t i = 0; i < RO; ++i) reversed[i] = expected[RO - 1 - i];
    Tensor<T, RO> buffer(reversed);
    buffer.transpose() = a * b - a + b;
    check_against_naive(buffer.transpose(), expected, a, b, fused_ref<T>, what + " into a transposed destination");
  }
}

}  // namespace

TEST_CASE_TEMPLATE("size-1 axes and rank promotion", T, float, double) {
  check_pair(random_tensor<T>(Shape<2>{3, 1}, 1), random_tensor<T>(Shape<2>{1, 4}, 2), Shape<2>{3, 4}, "[3,1] + [1,4]");
  check_pair(random_tensor<T>(Shape<1>{4}, 3), random_tensor<T>(Shape<2>{3, 4}, 4), Shape<2>{3, 4}, "[4] + [3,4]");
  check_pair(random_tensor<T>(Shape<2>{3, 4}, 4), random_tensor<T>(Shape<1>{4}, 3), Shape<2>{3, 4}, "[3,4] + [4]");
  check_pair(random_tensor<T>(Shape<3>{2, 1, 3}, 5), random_tensor<T>(Shape<2>{4, 1}, 6), Shape<3>{2, 4, 3},
             "[2,1,3] * [4,1]");
  check_pair(random_tensor<T>(Shape<1>{1}, 7), random_tensor<T>(Shape<1>{5}, 8), Shape<1>{5}, "[1] + [5]");
  check_pair(random_tensor<T>(Shape<1>{37}, 7), random_tensor<T>(Shape<1>{1}, 8), Shape<1>{37}, "[37] + [1]");
  check_pair(random_tensor<T>(Shape<3>{2, 3, 4}, 9), random_tensor<T>(Shape<3>{2, 1, 4}, 10), Shape<3>{2, 3, 4},
             "[2,3,4] + [2,1,4]");
  check_pair(random_tensor<T>(Shape<3>{1, 3, 1}, 11), random_tensor<T>(Shape<3>{5, 1, 7}, 12), Shape<3>{5, 3, 7},
             "[1,3,1] + [5,1,7]");
  check_pair(random_tensor<T>(Shape<4>{2, 1, 3, 1}, 13), random_tensor<T>(Shape<3>{5, 1, 9}, 14), Shape<4>{2, 5, 3, 9},
             "[2,1,3,1] + [5,1,9]");
}

TEST_CASE_TEMPLATE("a rank-0 tensor broadcasts against any rank", T, float, double) {
  Tensor<T, 0> s = T(2.5);
  const auto m = random_tensor<T>(Shape<2>{3, 4}, 21);
  check_pair(s, m, Shape<2>{3, 4}, "rank-0 + [3,4]");
  check_pair(m, s, Shape<2>{3, 4}, "[3,4] + rank-0");
  const Tensor<T, 0> ss = s * s + s;
  CHECK(ss() == T(2.5 * 2.5 + 2.5));
}

TEST_CASE_TEMPLATE("broadcasting across the multithreaded path", T, float, double) {
  // 300 x 200 = 60000 elements: above the 32768 threshold, so the pass is split across threads
  // at offsets that fall in the middle of rows.
  check_pair(random_tensor<T>(Shape<2>{300, 1}, 31), random_tensor<T>(Shape<2>{1, 200}, 32), Shape<2>{300, 200},
             "[300,1] + [1,200]");
  check_pair(random_tensor<T>(Shape<2>{300, 200}, 33), random_tensor<T>(Shape<1>{200}, 34), Shape<2>{300, 200},
             "[300,200] + [200]");
  check_pair(random_tensor<T>(Shape<3>{7, 60, 1}, 35), random_tensor<T>(Shape<2>{1, 97}, 36), Shape<3>{7, 60, 97},
             "[7,60,1] + [1,97]");
}

TEST_CASE_TEMPLATE("size-0 extents broadcast to empty results", T, float, double) {
  Tensor<T, 2> e(0, 3);
  const auto row = random_tensor<T>(Shape<1>{3}, 41);
  const Tensor<T, 2> r1 = e + row;
  CHECK(r1.shape() == Shape<2>{0, 3});
  CHECK(r1.size() == 0);
  Tensor<T, 2> col(2, 1);
  Tensor<T, 2> z(2, 0);
  const Tensor<T, 2> r2 = z * col;
  CHECK(r2.shape() == Shape<2>{2, 0});
  Tensor<T, 1> e1(0), one(1);
  const Tensor<T, 1> r3 = e1 + one;
  CHECK(r3.shape() == Shape<1>{0});
  const Tensor<T, 1> r4 = one + e1;
  CHECK(r4.shape() == Shape<1>{0});
  // 0 against 5: neither is 1, so this is an error as in NumPy.
  Tensor<T, 1> five(5);
  CHECK_THROWS_AS(e1 + five, tessera::shape_error);
}

TEST_CASE("incompatible shapes throw shape_error naming the op and both shapes") {
  Tensor<float, 2> a(3, 4);
  Tensor<float, 1> b(3);
  Tensor<float, 3> c(2, 5, 4);
  const auto message_of = [](auto&& make) -> std::string {
    try {
      make();
    } catch (const tessera::shape_error& e) {
      return e.what();
    }
    return "no exception";
  };
  const std::string add = message_of([&] { return a + b; });
  CHECK(add.find("add") != std::string::npos);
  CHECK(add.find("[3, 4]") != std::string::npos);
  CHECK(add.find("[3]") != std::string::npos);
  const std::string mul = message_of([&] { return c * a; });
  CHECK(mul.find("mul") != std::string::npos);
  CHECK(mul.find("[2, 5, 4]") != std::string::npos);
  CHECK(mul.find("[3, 4]") != std::string::npos);
  const std::string sub = message_of([&] { return b - a; });
  CHECK(sub.find("sub") != std::string::npos);
  CHECK(sub.find("[3]") != std::string::npos);
  CHECK(sub.find("[3, 4]") != std::string::npos);
  const std::string div = message_of([&] { return a / c; });
  CHECK(div.find("div") != std::string::npos);
  // The error surfaces where the expression is built, also deep inside a larger expression.
  CHECK_THROWS_AS(tessera::exp(a) * 2.f + tessera::tanh(b), tessera::shape_error);
}

TEST_CASE_TEMPLATE("compound assignment broadcasts the right-hand side", T, float, double) {
  const auto a0 = random_tensor<T>(Shape<2>{3, 4}, 51);
  const auto row = random_tensor<T>(Shape<1>{4}, 52);
  const auto col = random_tensor<T>(Shape<2>{3, 1}, 53);
  Tensor<T, 0> s = T(-1.5);
  Tensor<T, 2> a = a0.clone();
  a += row;
  check_against_naive(a, Shape<2>{3, 4}, a0, row, add_ref<T>, "a += row");
  Tensor<T, 2> b = a0.clone();
  b -= col;
  check_against_naive(b, Shape<2>{3, 4}, a0, col, sub_ref<T>, "b -= col");
  Tensor<T, 2> c = a0.clone();
  c *= s;
  check_against_naive(c, Shape<2>{3, 4}, a0, s, mul_ref<T>, "c *= rank-0");
  Tensor<T, 2> d = a0.clone();
  d /= row;
  check_against_naive(d, Shape<2>{3, 4}, a0, row, div_ref<T>, "d /= row");
  // A compound assignment writes into the viewed elements, not a new buffer.
  Tensor<T, 2> e = a0.clone();
  const void* before = e.storage_id();
  e += row;
  CHECK(e.storage_id() == before);
  // The destination itself cannot broadcast.
  Tensor<T, 2> narrow(1, 4);
  CHECK_THROWS_AS(narrow += a0, tessera::shape_error);
  const Tensor<T, 1> wrong(3);
  CHECK_THROWS_AS(a += wrong, tessera::shape_error);
}

TEST_CASE_TEMPLATE("compound assignment reading its own storage through another view", T, float, double) {
  const auto a0 = random_tensor<T>(Shape<2>{5, 5}, 61);
  // a += a^T: every element reads one that is written elsewhere in the pass.
  Tensor<T, 2> a = a0.clone();
  a += a.transpose();
  for (index_t i = 0; i < 5; ++i) {
    for (index_t j = 0; j < 5; ++j) CHECK(a(i, j) == a0(i, j) + a0(j, i));
  }
  // b -= b[0:1, :]: row 0 broadcast over all rows must be read before it is overwritten.
  Tensor<T, 2> b = a0.clone();
  b -= b.slice(0, 0, 1);
  for (index_t i = 0; i < 5; ++i) {
    for (index_t j = 0; j < 5; ++j) CHECK(b(i, j) == a0(i, j) - a0(0, j));
  }
}

TEST_CASE_TEMPLATE("expressions over non-contiguous operands", T, float, double) {
  // Transposed view.
  const auto m = random_tensor<T>(Shape<2>{4, 3}, 71);
  const auto n = random_tensor<T>(Shape<2>{3, 4}, 72);
  REQUIRE_FALSE(m.transpose().is_contiguous());
  check_pair(m.transpose(), n, Shape<2>{3, 4}, "m^T with [3,4]");
  check_pair(m.transpose(), random_tensor<T>(Shape<1>{4}, 73), Shape<2>{3, 4}, "m^T with [4]");
  // Slices with a step on both axes.
  const auto big = random_tensor<T>(Shape<2>{7, 9}, 74);
  const auto stepped = big.slice(0, 1, 7, 2).slice(1, 0, 9, 3);
  REQUIRE(stepped.shape() == Shape<2>{3, 3});
  REQUIRE_FALSE(stepped.is_contiguous());
  check_pair(stepped, random_tensor<T>(Shape<2>{3, 1}, 75), Shape<2>{3, 3}, "stepped slice with [3,1]");
  check_pair(stepped, stepped.transpose(), Shape<2>{3, 3}, "stepped slice with its transpose");
  // broadcast_to views (stride 0) as operands.
  const auto row = random_tensor<T>(Shape<1>{4}, 76);
  const auto wide = row.broadcast_to({3, 4});
  CHECK(wide.strides()[0] == 0);
  check_pair(wide, n, Shape<2>{3, 4}, "broadcast_to view with [3,4]");
  const auto col = random_tensor<T>(Shape<2>{3, 1}, 77).broadcast_to({3, 4});
  check_pair(col, wide, Shape<2>{3, 4}, "two broadcast_to views");
  // Large transposed operands on the threaded path (inner stride != 1 in the gathering loop).
  const auto tall = random_tensor<T>(Shape<2>{250, 180}, 78);
  check_pair(tall.transpose(), random_tensor<T>(Shape<2>{180, 250}, 79), Shape<2>{180, 250}, "large transpose");
  // A selected column (stride = row length) against a contiguous vector.
  const auto column = big.select(1, 4);
  check_pair(column, random_tensor<T>(Shape<1>{7}, 80), Shape<1>{7}, "selected column");
}
