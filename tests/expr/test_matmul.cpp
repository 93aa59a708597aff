// matmul (expr/matmul.hpp, backend/cpu/gemm.hpp) against a naive triple loop: 2-D sizes from 1x1
// to 200x300x100, transposed and sliced operands read without copies, vectors, batches with NumPy
// batch broadcasting, integer tensors, matmul inside expressions, and the error messages.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;
namespace instrument = tessera::instrument;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  Tensor<T, R> t(shape);
  if constexpr (std::is_integral_v<T>) {
    std::uniform_int_distribution<int> dist(-9, 9);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  } else {
    std::uniform_real_distribution<double> dist(-1, 1);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  }
  return t;
}

/// Row-major elements of any tensor, read through its strides.
template <class T, std::size_t R>
std::vector<double> values_of(const Tensor<T, R>& t) {
  std::vector<double> out;
  if (t.size() == 0) return out;
  std::array<index_t, R> idx{};
  for (index_t n = 0; n < t.size(); ++n) {
    index_t off = 0;
    for (std::size_t i = 0; i < R; ++i) off += idx[i] * t.strides()[i];
    out.push_back(static_cast<double>(t.data()[off]));
    for (std::size_t i = R; i-- > 0;) {
      if (++idx[i] < t.shape()[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/// A naive numpy.matmul on row-major values: vectors promoted, batch axes broadcast, triple loop
/// in long double. Also returns, per output, the sum of |a_ik * b_kj| (the rounding error scale).
struct Reference {
  std::vector<index_t> shape;
  std::vector<double> values, scale;
};
Reference naive_matmul(const std::vector<double>& a, std::vector<index_t> sa, const std::vector<double>& b,
                       std::vector<index_t> sb) {
  const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
  if (a_vec) sa.insert(sa.begin(), 1);
  if (b_vec) sb.push_back(1);
  const index_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  REQUIRE(sb[sb.size() - 2] == k);
  const std::size_t batch_rank = std::max(sa.size(), sb.size()) - 2;
  std::vector<index_t> batch(batch_rank), ea(batch_rank, 1), eb(batch_rank, 1);
  for (std::size_t i = 0; i < batch_rank; ++i) {
    const std::size_t la = batch_rank - (sa.size() - 2), lb = batch_rank - (sb.size() - 2);
    if (i >= la) ea[i] = sa[i - la];
    if (i >= lb) eb[i] = sb[i - lb];
    batch[i] = ea[i] == 1 ? eb[i] : ea[i];  // NumPy: 1 repeats, so [0] with [1] is [0]
  }
  Reference r;
  index_t batches = 1;
  for (auto e : batch) batches *= e;
  for (index_t bi = 0; bi < batches; ++bi) {
    // Offsets of this batch's matrices in a and b (a size-1 batch axis repeats).
    index_t rest = bi, oa = 0, ob = 0, stride_a = m * k, stride_b = k * n;
    for (std::size_t i = batch_rank; i-- > 0;) {
      const index_t idx = rest % batch[i];
      rest /= batch[i];
      oa += (ea[i] == 1 ? 0 : idx) * stride_a;
      ob += (eb[i] == 1 ? 0 : idx) * stride_b;
      stride_a *= ea[i];
      stride_b *= eb[i];
    }
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < n; ++j) {
        long double acc = 0, mag = 0;
        for (index_t p = 0; p < k; ++p) {
          const long double term = static_cast<long double>(a[static_cast<std::size_t>(oa + i * k + p)]) *
                                   b[static_cast<std::size_t>(ob + p * n + j)];
          acc += term;
          mag += std::abs(term);
        }
        r.values.push_back(static_cast<double>(acc));
        r.scale.push_back(static_cast<double>(mag));
      }
    }
  }
  r.shape = batch;
  if (!a_vec) r.shape.push_back(m);
  if (!b_vec) r.shape.push_back(n);
  return r;
}

template <class T>
constexpr double gemm_rtol = std::is_same_v<T, float> ? 1e-5 : (std::is_same_v<T, double> ? 1e-13 : 0.0);

/// matmul(a, b) evaluated into a new tensor, compared with the naive product.
template <class A, class B>
void check_matmul(const A& a, const B& b, const std::string& what) {
  using T = tessera::value_type_t<A>;
  INFO(what << " " << std::string(tessera::dtype_name<T>()) << ": " << tessera::shape_to_string(a.shape()) << " x "
            << tessera::shape_to_string(b.shape()));
  const auto got = tessera::eval(tessera::matmul(a, b));
  const auto as = a.shape();
  const auto bs = b.shape();
  const Reference want = naive_matmul(values_of(tessera::eval(a)), std::vector<index_t>(as.begin(), as.end()),
                                      values_of(tessera::eval(b)), std::vector<index_t>(bs.begin(), bs.end()));
  const std::vector<index_t> got_shape(got.shape().begin(), got.shape().end());
  INFO("result shape " << tessera::shape_to_string(got_shape) << ", expected " << tessera::shape_to_string(want.shape));
  CHECK(got_shape == want.shape);
  if (got_shape != want.shape) return;
  const auto have = values_of(got);
  REQUIRE(have.size() == want.values.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < have.size(); ++i) {
    if (!(std::abs(have[i] - want.values[i]) <= gemm_rtol<T> * want.scale[i]) && bad++ == 0) first = i;
  }
  INFO(bad << " of " << have.size() << " differ; first at " << first << ": got " << (have.empty() ? 0 : have[first])
           << ", expected " << (have.empty() ? 0 : want.values[first]));
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("2-D matmul against a naive triple loop", T, float, double) {
  const index_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {64, 33, 17}, {200, 300, 100}, {1, 40, 9}, {9, 40, 1}};
  unsigned seed = 1;
  for (const auto& s : sizes) {
    const auto a = random_tensor<T>(Shape<2>{s[0], s[1]}, seed++);
    const auto b = random_tensor<T>(Shape<2>{s[1], s[2]}, seed++);
    check_matmul(a, b, "a x b");
  }
  Tensor<T, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<T, 2> b = {{7, 8}, {9, 10}, {11, 12}};
  const Tensor<T, 2> c = tessera::matmul(a, b);
  CHECK(c(0, 0) == 58);
  CHECK(c(0, 1) == 64);
  CHECK(c(1, 0) == 139);
  CHECK(c(1, 1) == 154);
}

TEST_CASE_TEMPLATE("transposed and sliced operands are read in place", T, float, double) {
  const auto at = random_tensor<T>(Shape<2>{33, 64}, 11);  // A stored transposed: A = at^T is 64 x 33
  const auto bt = random_tensor<T>(Shape<2>{17, 33}, 12);  // B = bt^T is 33 x 17
  const auto a = random_tensor<T>(Shape<2>{64, 33}, 13);
  const auto b = random_tensor<T>(Shape<2>{33, 17}, 14);
  check_matmul(at.transpose(), b, "A^T x B");
  check_matmul(a, bt.transpose(), "A x B^T");
  check_matmul(at.transpose(), bt.transpose(), "A^T x B^T");
  // Column slices: the leading dimension exceeds the column count.
  const auto wide = random_tensor<T>(Shape<2>{64, 50}, 15);
  check_matmul(wide.slice(1, 5, 38), b, "column slice x B");
  check_matmul(a, wide.slice(0, 10, 43).slice(1, 0, 17), "A x sliced block");
  // No operand copies: the only allocation is the result.
  instrument::reset();
  const Tensor<T, 2> p = tessera::matmul(at.transpose(), bt.transpose());
  CHECK(instrument::counters().allocations.load() == 1);
  CHECK(instrument::counters().materializations.load() == 1);
  instrument::reset();
  const Tensor<T, 2> q = tessera::matmul(wide.slice(1, 5, 38), b);
  CHECK(instrument::counters().allocations.load() == 1);
  // A layout GEMM cannot read (a column step) is copied first, and still correct.
  check_matmul(wide.slice(1, 0, 50, 2).slice(1, 0, 25), random_tensor<T>(Shape<2>{25, 6}, 16), "stepped columns");
  check_matmul(a, random_tensor<T>(Shape<1>{17}, 17).broadcast_to({33, 17}), "broadcast_to operand");
}

TEST_CASE_TEMPLATE("vector operands as in numpy.matmul", T, float, double) {
  const auto v = random_tensor<T>(Shape<1>{33}, 21);
  const auto m = random_tensor<T>(Shape<2>{33, 17}, 22);
  const auto mt = random_tensor<T>(Shape<2>{12, 33}, 23);
  check_matmul(v, m, "vector x matrix");
  check_matmul(mt, v, "matrix x vector");
  check_matmul(v, random_tensor<T>(Shape<1>{33}, 24), "dot product");
  check_matmul(m.transpose(), v, "transposed matrix x vector");
  // Strided vectors (a step of 2).
  const auto long_v = random_tensor<T>(Shape<1>{66}, 25);
  check_matmul(long_v.slice(0, 0, 66, 2), m, "strided vector x matrix");
  check_matmul(mt, long_v.slice(0, 1, 66, 2), "matrix x strided vector");
  check_matmul(long_v.slice(0, 0, 66, 2), long_v.slice(0, 1, 66, 2), "strided dot");
  // Shapes: [k] x [k, n] -> [n]; [m, k] x [k] -> [m]; [k] x [k] -> [].
  static_assert(decltype(tessera::matmul(v, m))::rank == 1);
  static_assert(decltype(tessera::matmul(mt, v))::rank == 1);
  static_assert(decltype(tessera::matmul(v, v))::rank == 0);
  Tensor<T, 1> x = {1, 2, 3};
  Tensor<T, 1> y = {4, -5, 6};
  CHECK(tessera::eval(tessera::matmul(x, y))() == 12);
  // Batched matrix x vector: [b, m, k] x [k] -> [b, m].
  check_matmul(random_tensor<T>(Shape<3>{3, 4, 33}, 26), v, "batch x vector");
  check_matmul(v, random_tensor<T>(Shape<3>{3, 33, 5}, 27), "vector x batch");
}

TEST_CASE_TEMPLATE("batched matmul with NumPy batch broadcasting", T, float, double) {
  check_matmul(random_tensor<T>(Shape<3>{4, 6, 5}, 31), random_tensor<T>(Shape<3>{4, 5, 7}, 32), "[b,m,k] x [b,k,n]");
  check_matmul(random_tensor<T>(Shape<3>{4, 6, 5}, 33), random_tensor<T>(Shape<2>{5, 7}, 34), "[b,m,k] x [k,n]");
  check_matmul(random_tensor<T>(Shape<2>{6, 5}, 35), random_tensor<T>(Shape<3>{4, 5, 7}, 36), "[m,k] x [b,k,n]");
  check_matmul(random_tensor<T>(Shape<3>{1, 6, 5}, 37), random_tensor<T>(Shape<3>{4, 5, 7}, 38), "[1,m,k] x [b,k,n]");
  check_matmul(random_tensor<T>(Shape<3>{4, 6, 5}, 39), random_tensor<T>(Shape<3>{1, 5, 7}, 40), "[b,m,k] x [1,k,n]");
  check_matmul(random_tensor<T>(Shape<4>{2, 3, 6, 5}, 41), random_tensor<T>(Shape<4>{2, 3, 5, 7}, 42), "4-D");
  check_matmul(random_tensor<T>(Shape<4>{2, 1, 6, 5}, 43), random_tensor<T>(Shape<4>{1, 3, 5, 7}, 44),
               "[2,1,m,k] x [1,3,k,n]");
  check_matmul(random_tensor<T>(Shape<4>{2, 3, 6, 5}, 45), random_tensor<T>(Shape<3>{3, 5, 7}, 46),
               "[2,3,m,k] x [3,k,n]");
  check_matmul(random_tensor<T>(Shape<4>{2, 3, 6, 5}, 47), random_tensor<T>(Shape<2>{5, 7}, 48), "[2,3,m,k] x [k,n]");
  // Transposed batch matrices and a permuted batch.
  const auto xt = random_tensor<T>(Shape<3>{4, 5, 6}, 49);
  check_matmul(xt.transpose(1, 2), random_tensor<T>(Shape<3>{4, 5, 7}, 50), "transposed batch x batch");
  check_matmul(xt.transpose(1, 2), random_tensor<T>(Shape<2>{5, 7}, 51), "transposed batch x shared");
  const auto perm = random_tensor<T>(Shape<3>{6, 4, 5}, 52).permute({1, 0, 2});  // [4, 6, 5], batch stride 5
  check_matmul(perm, random_tensor<T>(Shape<2>{5, 7}, 53), "permuted batch x shared");
  check_matmul(random_tensor<T>(Shape<3>{4, 6, 10}, 54).slice(2, 0, 5), random_tensor<T>(Shape<2>{5, 7}, 55),
               "sliced batch x shared");
  // Empty batch: [0, 6, 5] x [5, 7] is [0, 6, 7] (see the report: tessera gives [1, 6, 7]).
  check_matmul(random_tensor<T>(Shape<3>{0, 6, 5}, 56), random_tensor<T>(Shape<2>{5, 7}, 57), "empty batch");
  check_matmul(random_tensor<T>(Shape<3>{0, 6, 5}, 56), random_tensor<T>(Shape<3>{1, 5, 7}, 57), "empty x [1] batch");
  // Zero inner extent: a product of nothing is 0.
  const Tensor<T, 2> zero_k = tessera::matmul(Tensor<T, 2>(3, 0), Tensor<T, 2>(0, 4));
  REQUIRE(zero_k.shape() == Shape<2>{3, 4});
  for (auto v : values_of(zero_k)) CHECK(v == 0);
}

TEST_CASE_TEMPLATE("integer matmul is exact", T, std::int32_t, std::int64_t) {
  check_matmul(random_tensor<T>(Shape<2>{3, 5}, 61), random_tensor<T>(Shape<2>{5, 7}, 62), "small");
  // Large enough (70 * 80 * 90 multiply-adds) for the threaded Eigen path.
  check_matmul(random_tensor<T>(Shape<2>{70, 80}, 63), random_tensor<T>(Shape<2>{80, 90}, 64), "large");
  check_matmul(random_tensor<T>(Shape<2>{80, 70}, 65).transpose(), random_tensor<T>(Shape<2>{90, 80}, 66).transpose(),
               "transposed");
  check_matmul(random_tensor<T>(Shape<3>{3, 4, 5}, 67), random_tensor<T>(Shape<2>{5, 6}, 68), "batched");
  check_matmul(random_tensor<T>(Shape<1>{5}, 69), random_tensor<T>(Shape<1>{5}, 70), "dot");
}

TEST_CASE("matmul inside expressions and of expressions") {
  const auto x = random_tensor<float>(Shape<2>{16, 8}, 71);
  const auto W = random_tensor<float>(Shape<2>{8, 4}, 72);
  const auto b = random_tensor<float>(Shape<1>{4}, 73);
  const Tensor<float, 2> y = tessera::relu(tessera::matmul(x, W) + b);
  const auto xv = values_of(x), wv = values_of(W);
  const Reference xw = naive_matmul(xv, {16, 8}, wv, {8, 4});
  for (index_t i = 0; i < 16; ++i) {
    for (index_t j = 0; j < 4; ++j) {
      const double want = std::max(xw.values[static_cast<std::size_t>(i * 4 + j)] + double(b(j)), 0.0);
      CHECK(y(i, j) == doctest::Approx(want).epsilon(1e-5));
    }
  }
  // Operands that are expressions (evaluated first) and a matmul of a matmul.
  check_matmul(x * 2.f, W + 1.f, "expression operands");
  check_matmul(tessera::matmul(x, W), random_tensor<float>(Shape<2>{4, 3}, 74), "(x W) V");
  // Assigning a product to one of its operands reads the operand before overwriting it.
  Tensor<double, 2> s = {{1, 2}, {3, 4}};
  s = tessera::matmul(s, s);
  CHECK(s(0, 0) == 7);
  CHECK(s(0, 1) == 10);
  CHECK(s(1, 0) == 15);
  CHECK(s(1, 1) == 22);
  Tensor<double, 2> t = {{1, 2}, {3, 4}};
  t.assign(tessera::matmul(t, t.transpose()));
  CHECK(t(0, 0) == 5);
  CHECK(t(0, 1) == 11);
  CHECK(t(1, 1) == 25);
  // Into a slice of a larger tensor (non-contiguous destination).
  Tensor<double, 2> big(4, 5);
  big.slice(1, 1, 3) =
      tessera::matmul(Tensor<double, 2>{{1, 0}, {0, 1}, {1, 1}, {2, 0}}, Tensor<double, 2>{{1, 2}, {3, 4}});
  CHECK(big(2, 1) == 4);
  CHECK(big(2, 2) == 6);
  CHECK(big(2, 0) == 0);
  CHECK(big(3, 3) == 0);
  CHECK(big(3, 2) == 4);
}

TEST_CASE("matmul shape errors say what does not fit") {
  Tensor<float, 2> x(64, 784), w(128, 10);
  try {
    (void)tessera::matmul(x, w);
    FAIL("expected shape_error");
  } catch (const tessera::shape_error& e) {
    CHECK(std::string(e.what()) == "matmul: [64, 784] x [128, 10]: inner extents 784 and 128 differ");
  }
  Tensor<float, 3> a(2, 3, 4), b(5, 4, 6);
  try {
    (void)tessera::matmul(a, b);
    FAIL("expected shape_error");
  } catch (const tessera::shape_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("matmul") != std::string::npos);
    CHECK(msg.find("[2, 3, 4]") != std::string::npos);
    CHECK(msg.find("[5, 4, 6]") != std::string::npos);
    CHECK(msg.find("batch") != std::string::npos);
  }
  Tensor<float, 1> v(5);
  CHECK_THROWS_AS(tessera::matmul(v, x), tessera::shape_error);
  CHECK_THROWS_AS(tessera::matmul(x, v), tessera::shape_error);
  CHECK_THROWS_AS(tessera::matmul(v, Tensor<float, 1>(6)), tessera::shape_error);
  Tensor<float, 4> c(2, 3, 4, 5);
  Tensor<float, 3> d(2, 5, 6);  // batch [2, 3] vs [2]: 3 vs 2 at the last batch axis
  CHECK_THROWS_AS(tessera::matmul(c, d), tessera::shape_error);
}
