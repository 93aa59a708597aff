// Reductions (materialization points): sum, mean, prod, max, min, all, any over any set of axes,
// with or without keepdims; var and logsumexp built on them; argmax/argmin along one axis.
// The reduced input may be any elementwise expression: it is read in the reduction's own pass.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera {

/// Tag asking a reduction to keep reduced axes with extent 1: `sum(x, {1}, keepdims)`.
struct keepdims_t {
  explicit constexpr keepdims_t() = default;
};
inline constexpr keepdims_t keepdims{};

namespace ops {
namespace pk = Eigen::internal;

struct SumReducer {
  static constexpr const char* name = "sum";
  static constexpr bool has_identity = true;
  template <class T>
  static constexpr bool vectorizable = detail::packet_capable_v<T>;
  template <class T>
  TESSERA_HD static T identity() {
    return T(0);
  }
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    return static_cast<T>(a + b);
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    return pk::padd(a, b);
  }
  template <class P>
  auto reduce_packet(const P& p) const {
    return pk::predux(p);
  }
};

struct ProdReducer {
  static constexpr const char* name = "prod";
  static constexpr bool has_identity = true;
  template <class T>
  static constexpr bool vectorizable = detail::packet_capable_v<T> && std::is_floating_point_v<T>;
  template <class T>
  TESSERA_HD static T identity() {
    return T(1);
  }
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    return static_cast<T>(a * b);
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    return pk::pmul(a, b);
  }
  template <class P>
  auto reduce_packet(const P& p) const {
    return pk::predux_mul(p);
  }
};

/// NaN-propagating max/min, as NumPy's max/min; an empty extent is an error (no identity).
template <bool Max>
struct ExtremumReducer {
  static constexpr const char* name = Max ? "max" : "min";
  static constexpr bool has_identity = false;
  template <class T>
  static constexpr bool vectorizable = detail::packet_capable_v<T>;
  template <class T>
  TESSERA_HD static T identity() {
    if constexpr (std::is_floating_point_v<T>) {
      return Max ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    } else {
      return Max ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
    }
  }
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (a != a || b != b) return a + b;
    }
    return Max ? (a < b ? b : a) : (b < a ? b : a);
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    if constexpr (Max) {
      return pk::pmax<Eigen::PropagateNaN>(a, b);
    } else {
      return pk::pmin<Eigen::PropagateNaN>(a, b);
    }
  }
  template <class P>
  auto reduce_packet(const P& p) const {
    if constexpr (Max) {
      return pk::predux_max<Eigen::PropagateNaN>(p);
    } else {
      return pk::predux_min<Eigen::PropagateNaN>(p);
    }
  }
};
using MaxReducer = ExtremumReducer<true>;
using MinReducer = ExtremumReducer<false>;

template <bool And>
struct LogicalReducer {
  static constexpr const char* name = And ? "all" : "any";
  static constexpr bool has_identity = true;
  template <class T>
  static constexpr bool vectorizable = false;
  template <class T>
  TESSERA_HD static T identity() {
    return And;
  }
  TESSERA_HD bool operator()(bool a, bool b) const { return And ? (a && b) : (a || b); }
  template <class P>
  P packet(const P& a, const P&) const {
    return a;
  }
  template <class P>
  bool reduce_packet(const P&) const {
    return And;
  }
};
}  // namespace ops

template <class Red, class A, std::size_t RO>
struct Reduce;
namespace detail {
template <class Red, std::size_t RO, class A>
Reduce<Red, A, RO> make_reduce(const A& a, const std::array<bool, rank_v<A>>& mask, const char* name, bool mean);
}  // namespace detail
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int> = 0>
auto reshape(const A& a, Shape<R> s);
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int> = 0>
auto sum_to(const A& a, const Shape<R>& target);
template <class A, std::size_t R>
struct BroadcastTo;
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int> = 0>
BroadcastTo<A, R> broadcast_to(const A& a, const Shape<R>& target);
namespace detail {
template <class E>
auto value_of(const E& e);
}  // namespace detail
template <class A>
struct ExclusiveProduct;
template <class Expr, class A, class G, class Prod>
struct ProdAdjoint;

namespace detail {
/// Base of the nodes that reduce A over a set of axes (sum and the other reducers, logsumexp, var):
/// the input, the mask of reduced axes, the result's shape (RO: kept axes, or all with keepdims)
/// and the cache slot.
template <class Derived, class A, std::size_t RO>
struct ReductionNode : MaterializedNode<Derived, value_type_t<A>, RO, backend_t<A>> {
  static constexpr std::size_t input_rank = rank_v<A>;
  A arg;
  std::array<bool, input_rank> reduced{};

  ReductionNode(A a, const std::array<bool, input_rank>& red) : arg(std::move(a)), reduced(red) {
    const auto in = arg.shape();
    for (std::size_t i = 0, k = 0; i < input_rank; ++i) {
      if (!reduced[i]) {
        shape_[k++] = in[i];
      } else if (RO == input_rank) {
        shape_[k++] = 1;
      }
    }
  }
  const Shape<RO>& shape() const { return shape_; }
  /// Number of input elements folded into each result.
  index_t reduced_count() const {
    index_t n = 1;
    const auto in = arg.shape();
    for (std::size_t i = 0; i < input_rank; ++i) n *= reduced[i] ? in[i] : 1;
    return n;
  }
  /// The input's shape with reduced axes kept as 1 (how results broadcast back over the input).
  Shape<input_rank> keep_shape() const {
    auto s = arg.shape();
    for (std::size_t i = 0; i < input_rank; ++i) {
      if (reduced[i]) s[i] = 1;
    }
    return s;
  }
  /// An adjoint of the result broadcast back to the input's full shape (see SumTo::input_adjoints
  /// for why it must be full).
  template <class G>
  auto broadcast_back(const G& g) const {
    return broadcast_to(reshape(sum_to(g, shape_), keep_shape()), arg.shape());
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }

 private:
  Shape<RO> shape_{};
};
}  // namespace detail

/// A reduction of A over a set of axes; RO is the result rank (keepdims or not).
template <class Red, class A, std::size_t RO>
struct Reduce : detail::ReductionNode<Reduce<Red, A, RO>, A, RO> {
  using Base = detail::ReductionNode<Reduce<Red, A, RO>, A, RO>;
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = RO;
  using Base::arg;
  using Base::input_rank;
  using Base::keep_shape;
  using Base::reduced;
  using Base::shape;

  value_type scale;   ///< multiplies each result (mean: 1 / count)
  const char* name;   ///< "sum", "mean", "var", ...

  Reduce(A a, const std::array<bool, input_rank>& red, value_type s, const char* op_name)
      : Base(std::move(a), red), scale(s), name(op_name) {}
  void evaluate_into(Tensor<value_type, RO, backend_type>& out) const {
    reduce_into(backend_type{}, out, arg, reduced, Red{}, scale);
  }
  /// sum/mean: the adjoint broadcast back (times the scale); max/min: shared equally by the
  /// elements equal to the result; prod: the product of the other elements of each group.
  template <class G>
  auto input_adjoints(const G& g) const {
    using T = value_type;
    const auto g_keep = this->broadcast_back(g);
    if constexpr (std::is_same_v<Red, ops::SumReducer>) {
      return std::make_tuple(g_keep * scale);
    } else if constexpr (std::is_same_v<Red, ops::MaxReducer> || std::is_same_v<Red, ops::MinReducer>) {
      // where (not cast of the comparison) so that second derivatives pass through: where's
      // condition is a documented constant, a comparison is not differentiable.
      const auto hit = where(arg == reshape(*this, keep_shape()), T(1), T(0));
      const auto ties = detail::make_reduce<ops::SumReducer, input_rank>(hit, reduced, "sum", false);
      return std::make_tuple(g_keep * hit / ties);
    } else if constexpr (std::is_same_v<Red, ops::ProdReducer>) {
      auto closed_form = g_keep * ExclusiveProduct<A>(arg, reduced);
      auto g_groups = sum_to(g, shape());
      return std::make_tuple(ProdAdjoint<decltype(closed_form), A, decltype(g_groups), Reduce>(
          std::move(closed_form), arg, reduced, std::move(g_groups), *this));
    } else {
      static_assert(detail::dependent_false_v<G>, "tessera::grad: all/any are not differentiable");
    }
  }
};

/// prod's gradient factor: each element of A replaced by the product of the other elements of its
/// reduction group, from prefix and suffix products (as PyTorch's prod backward does when x has a
/// zero; here always: product / x would cost a division per element).
template <class A>
struct ExclusiveProduct : detail::MaterializedNode<ExclusiveProduct<A>, value_type_t<A>, rank_v<A>, backend_t<A>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = "exclusive_prod";
  A arg;
  std::array<bool, rank> reduced;

  ExclusiveProduct(A a, const std::array<bool, rank>& red) : arg(std::move(a)), reduced(red) {}
  Shape<rank> shape() const { return arg.shape(); }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    index_t groups = 1;
    const auto s = arg.shape();
    for (std::size_t i = 0; i < rank; ++i) groups *= reduced[i] ? 1 : s[i];
    using Vector = Tensor<value_type, 1, backend_type>;
    Vector ones(Shape<1>{groups});
    ones.fill(value_type(1));
    prod_adjoint_into(backend_type{}, out, detail::value_of(arg), reduced, ones, Vector());
  }
  /// d e_i / d x_j = e_i / x_j for j != i in i's group, 0 for j == i: the pullback of g is
  /// (sum over the group of g e - g e) / x. Second derivatives divide by x, so unlike the first
  /// ones they are not defined where x is 0.
  template <class G>
  auto input_adjoints(const G& g) const {
    const auto ge = g * (*this);
    const auto group = detail::make_reduce<ops::SumReducer, rank>(ge, reduced, "sum", false);
    return std::make_tuple((group - ge) / arg);
  }
};

/// prod's adjoint, g (per group, broadcast back) times ExclusiveProduct(x): evaluated by the
/// backend in one kernel that also takes the groups' forward products, so that where a product is
/// a normal number the adjoint is one pass (g p / x) rather than prefix products, suffix products
/// and a multiplication by g. For higher derivatives it is the expression `closed_form` (the
/// sweep passes its adjoint through unchanged), whose rules are ExclusiveProduct's.
template <class Expr, class A, class G, class Prod>
struct ProdAdjoint : detail::KernelOfClosedForm<ProdAdjoint<Expr, A, G, Prod>, Expr> {
  using Base = detail::KernelOfClosedForm<ProdAdjoint<Expr, A, G, Prod>, Expr>;
  using typename Base::backend_type;
  using typename Base::value_type;
  static constexpr std::size_t rank = Base::rank;
  static constexpr const char* name = "prod_adjoint";
  A arg;
  std::array<bool, rank> reduced;
  G g_groups;  ///< the adjoint of each group's product, in the prod node's shape
  Prod prod;   ///< the prod node: its value is cached by the forward pass

  ProdAdjoint(Expr e, A a, const std::array<bool, rank>& red, G g, Prod p)
      : Base(std::move(e)), arg(std::move(a)), reduced(red), g_groups(std::move(g)), prod(std::move(p)) {}
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    const auto g = detail::value_of(g_groups).contiguous().flatten();
    const auto p = detail::value_of(prod).contiguous().flatten();
    prod_adjoint_into(backend_type{}, out, detail::value_of(arg), reduced, g, p);
  }
};

namespace detail {
template <std::size_t R, std::size_t N>
std::array<bool, R> axes_mask(const index_t (&axes)[N], const char* op) {
  std::array<bool, R> mask{};
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t a = normalize_axis(axes[i], R, op);
    if (mask[a]) throw shape_error(std::string(op) + ": axis " + std::to_string(a) + " is listed twice");
    mask[a] = true;
  }
  return mask;
}
template <std::size_t R>
std::array<bool, R> all_axes() {
  std::array<bool, R> mask{};
  mask.fill(true);
  return mask;
}

template <class Red, std::size_t RO, class A>
Reduce<Red, A, RO> make_reduce(const A& a, const std::array<bool, rank_v<A>>& mask, const char* name, bool mean) {
  using T = value_type_t<A>;
  Reduce<Red, A, RO> r(a, mask, T(1), name);
  if (mean) {
    const index_t n = r.reduced_count();
    r.scale = n == 0 ? std::numeric_limits<T>::quiet_NaN() : T(1) / static_cast<T>(n);
  }
  return r;
}
}  // namespace detail

// The overload set every reduction offers: all axes, a list of axes, one axis, with keepdims.
#define TESSERA_REDUCTION(fn, Red, is_mean, requirement, message)                                          \
  /** fn over all elements: a rank-0 result. */                                                            \
  template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>                                              \
  auto fn(const A& a) {                                                                                    \
    static_assert(requirement, message);                                                                   \
    return detail::make_reduce<Red, 0>(a, detail::all_axes<rank_v<A>>(), #fn, is_mean);                   \
  }                                                                                                        \
  /** fn over the listed axes, dropping them. */                                                           \
  template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>                               \
  auto fn(const A& a, const index_t(&axes)[N]) {                                                           \
    static_assert(requirement, message);                                                                   \
    static_assert(N <= rank_v<A>, "tessera::" #fn ": more axes than the expression's rank");               \
    return detail::make_reduce<Red, rank_v<A> - N>(a, detail::axes_mask<rank_v<A>>(axes, #fn), #fn, is_mean); \
  }                                                                                                        \
  /** fn over the listed axes, keeping them with extent 1. */                                              \
  template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>                               \
  auto fn(const A& a, const index_t(&axes)[N], keepdims_t) {                                               \
    static_assert(requirement, message);                                                                   \
    return detail::make_reduce<Red, rank_v<A>>(a, detail::axes_mask<rank_v<A>>(axes, #fn), #fn, is_mean); \
  }                                                                                                        \
  /** fn over one axis (negative counts from the end). */                                                  \
  template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>         \
  auto fn(const A& a, I axis) {                                                                            \
    static_assert(rank_v<A> >= 1, "tessera::" #fn ": a rank-0 expression has no axis");                    \
    const index_t axes[1] = {static_cast<index_t>(axis)};                                                  \
    return fn(a, axes);                                                                                    \
  }                                                                                                        \
  template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>         \
  auto fn(const A& a, I axis, keepdims_t k) {                                                              \
    const index_t axes[1] = {static_cast<index_t>(axis)};                                                  \
    return fn(a, axes, k);                                                                                 \
  }

TESSERA_REDUCTION(sum, ops::SumReducer, false, (!std::is_same_v<value_type_t<A>, bool>),
                  "tessera::sum of a bool expression: cast<int64_t>() first")
TESSERA_REDUCTION(prod, ops::ProdReducer, false, (!std::is_same_v<value_type_t<A>, bool>),
                  "tessera::prod of a bool expression: cast first")
TESSERA_REDUCTION(mean, ops::SumReducer, true, std::is_floating_point_v<value_type_t<A>>,
                  "tessera::mean needs a floating-point expression; cast<float>() first")
TESSERA_REDUCTION(max, ops::MaxReducer, false, (!std::is_same_v<value_type_t<A>, bool>),
                  "tessera::max of a bool expression: use any()")
TESSERA_REDUCTION(min, ops::MinReducer, false, (!std::is_same_v<value_type_t<A>, bool>),
                  "tessera::min of a bool expression: use all()")
TESSERA_REDUCTION(all, ops::LogicalReducer<true>, false, (std::is_same_v<value_type_t<A>, bool>),
                  "tessera::all needs a bool expression")
TESSERA_REDUCTION(any, ops::LogicalReducer<false>, false, (std::is_same_v<value_type_t<A>, bool>),
                  "tessera::any needs a bool expression")
#undef TESSERA_REDUCTION

/// log(sum(exp(x))) over a set of axes, computed as log(sum(exp(x - m))) + m with m the (finite)
/// max so it never overflows; -inf over an empty extent. A materialization point: all the work
/// happens when it is evaluated.
template <class A, std::size_t RO>
struct LogSumExp : detail::ReductionNode<LogSumExp<A, RO>, A, RO> {
  using Base = detail::ReductionNode<LogSumExp<A, RO>, A, RO>;
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = RO;
  using Base::arg;
  using Base::input_rank;
  using Base::keep_shape;
  using Base::reduced;
  using Base::shape;
  static constexpr const char* name = "logsumexp";
  static_assert(std::is_floating_point_v<value_type>, "tessera::logsumexp needs a floating-point expression");

  LogSumExp(A a, const std::array<bool, input_rank>& red) : Base(std::move(a), red) {}
  void evaluate_into(Tensor<value_type, RO, backend_type>& out) const {
    using T = value_type;
    constexpr std::size_t R = input_rank;
    const auto in = arg.shape();
    for (std::size_t i = 0; i < R; ++i) {
      if (reduced[i] && in[i] == 0) {
        out.fill(-std::numeric_limits<T>::infinity());
        return;
      }
    }
    const Tensor<T, R, backend_type> m = detail::make_reduce<ops::MaxReducer, R>(arg, reduced, "logsumexp", false);
    // Infinite maxima would turn x - m into NaN: shift by 0 there instead.
    const Tensor<T, R, backend_type> shift = where(abs(m) == std::numeric_limits<T>::infinity(), T(0), m);
    const Tensor<T, RO, backend_type> s = detail::make_reduce<ops::SumReducer, RO>(exp(arg - shift), reduced, "logsumexp", false);
    out.assign(log(s) + shift.reshape(shape()));
  }
  /// d logsumexp / dx = exp(x - logsumexp): the softmax over the reduced axes.
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(this->broadcast_back(g) * exp(arg - reshape(*this, keep_shape())));
  }
};

/// Degrees of freedom subtracted from the count in var(): `var(x, {1}, ddof(1))`.
class Ddof {
 public:
  constexpr index_t value() const noexcept { return value_; }

 private:
  friend constexpr Ddof ddof(index_t) noexcept;
  constexpr Ddof(index_t v, int) noexcept : value_(v) {}
  index_t value_;
};
/// ddof(1) gives the unbiased variance (PyTorch's default); var's default is ddof(0), as NumPy.
constexpr Ddof ddof(index_t v) noexcept { return Ddof(v, 0); }

/// Variance sum((x - mean)^2) / (n - ddof) over a set of axes (a materialization point).
template <class A, std::size_t RO>
struct Variance : detail::ReductionNode<Variance<A, RO>, A, RO> {
  using Base = detail::ReductionNode<Variance<A, RO>, A, RO>;
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = RO;
  using Base::arg;
  using Base::input_rank;
  using Base::reduced;
  static constexpr const char* name = "var";
  static_assert(std::is_floating_point_v<value_type>, "tessera::var needs a floating-point expression");

  index_t ddof = 0;

  Variance(A a, const std::array<bool, input_rank>& red, index_t d) : Base(std::move(a), red), ddof(d) {}
  /// 1 / (n - ddof), NaN when not positive.
  value_type scale() const {
    const index_t n = this->reduced_count() - ddof;
    return n > 0 ? value_type(1) / static_cast<value_type>(n) : std::numeric_limits<value_type>::quiet_NaN();
  }
  void evaluate_into(Tensor<value_type, RO, backend_type>& out) const {
    constexpr std::size_t R = input_rank;
    const Tensor<value_type, R, backend_type> mu = detail::make_reduce<ops::SumReducer, R>(arg, reduced, "var", true);
    auto r = detail::make_reduce<ops::SumReducer, RO>(square(arg - mu), reduced, "var", false);
    r.scale = scale();
    out.assign(r);
  }
  /// d var / dx = 2 (x - mean) / (n - ddof).
  template <class G>
  auto input_adjoints(const G& g) const {
    using T = value_type;
    const auto mean = detail::make_reduce<ops::SumReducer, input_rank>(arg, reduced, "mean", true);
    return std::make_tuple(this->broadcast_back(g) * (arg - mean) * (T(2) * scale()));
  }
};

/// log(sum(exp(x))) over all elements, computed stably.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
LogSumExp<A, 0> logsumexp(const A& a) {
  return LogSumExp<A, 0>(a, detail::all_axes<rank_v<A>>());
}
/// logsumexp over the listed axes.
template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>
LogSumExp<A, rank_v<A> - N> logsumexp(const A& a, const index_t (&axes)[N]) {
  return LogSumExp<A, rank_v<A> - N>(a, detail::axes_mask<rank_v<A>>(axes, "logsumexp"));
}
template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>
LogSumExp<A, rank_v<A>> logsumexp(const A& a, const index_t (&axes)[N], keepdims_t) {
  return LogSumExp<A, rank_v<A>>(a, detail::axes_mask<rank_v<A>>(axes, "logsumexp"));
}
template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>
auto logsumexp(const A& a, I axis) {
  const index_t axes[1] = {static_cast<index_t>(axis)};
  return logsumexp(a, axes);
}
template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>
auto logsumexp(const A& a, I axis, keepdims_t k) {
  const index_t axes[1] = {static_cast<index_t>(axis)};
  return logsumexp(a, axes, k);
}

/// Variance over all elements (ddof(0) by default, as NumPy; ddof(1) for PyTorch's unbiased).
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Variance<A, 0> var(const A& a, Ddof d = ddof(0)) {
  return Variance<A, 0>(a, detail::all_axes<rank_v<A>>(), d.value());
}
/// Variance over the listed axes.
template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>
Variance<A, rank_v<A> - N> var(const A& a, const index_t (&axes)[N], Ddof d = ddof(0)) {
  return Variance<A, rank_v<A> - N>(a, detail::axes_mask<rank_v<A>>(axes, "var"), d.value());
}
template <class A, std::size_t N, std::enable_if_t<is_expr_v<A>, int> = 0>
Variance<A, rank_v<A>> var(const A& a, const index_t (&axes)[N], keepdims_t, Ddof d = ddof(0)) {
  return Variance<A, rank_v<A>>(a, detail::axes_mask<rank_v<A>>(axes, "var"), d.value());
}
/// Variance over one axis (like sum(x, axis)).
template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>
auto var(const A& a, I axis, Ddof d = ddof(0)) {
  const index_t axes[1] = {static_cast<index_t>(axis)};
  return var(a, axes, d);
}
template <class A, class I, std::enable_if_t<is_expr_v<A> && std::is_integral_v<I>, int> = 0>
auto var(const A& a, I axis, keepdims_t k, Ddof d = ddof(0)) {
  const index_t axes[1] = {static_cast<index_t>(axis)};
  return var(a, axes, k, d);
}

/// Index of the largest (Largest) or smallest element along one axis, as int64.
template <bool Largest, class A>
struct ArgReduce : detail::MaterializedNode<ArgReduce<Largest, A>, std::int64_t, rank_v<A> - 1, backend_t<A>> {
  using value_type = std::int64_t;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A> - 1;
  static constexpr const char* name = Largest ? "argmax" : "argmin";
  A arg;
  std::size_t axis;
  ArgReduce(A a, index_t ax) : arg(std::move(a)), axis(normalize_axis(ax, rank_v<A>, name)) {
    const auto in = arg.shape();
    for (std::size_t i = 0, k = 0; i < rank_v<A>; ++i) {
      if (i != axis) shape_[k++] = in[i];
    }
  }
  const Shape<rank>& shape() const { return shape_; }
  void evaluate_into(Tensor<std::int64_t, rank, backend_type>& out) const {
    const auto in = eval(arg).contiguous();
    arg_reduce_into(backend_type{}, std::bool_constant<Largest>{}, out, in, axis);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  template <class G>
  auto input_adjoints(const G&) const {
    static_assert(detail::dependent_false_v<G>, "tessera::grad: argmax/argmin is not differentiable");
    return std::make_tuple(NoAdjoint{});
  }

 private:
  Shape<rank> shape_{};
};

/// Position of the largest element along `axis` (first one on ties; NaN counts as largest).
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
ArgReduce<true, A> argmax(const A& a, index_t axis) {
  static_assert(rank_v<A> >= 1, "tessera::argmax: a rank-0 expression has no axis");
  return ArgReduce<true, A>(a, axis);
}
/// Position of the smallest element along `axis`.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
ArgReduce<false, A> argmin(const A& a, index_t axis) {
  static_assert(rank_v<A> >= 1, "tessera::argmin: a rank-0 expression has no axis");
  return ArgReduce<false, A>(a, axis);
}
/// Flat (row-major) position of the largest (Largest) or smallest element of A, as int64.
template <bool Largest, class A>
struct ArgReduceAll : detail::MaterializedNode<ArgReduceAll<Largest, A>, std::int64_t, 0, backend_t<A>> {
  using value_type = std::int64_t;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = 0;
  static constexpr const char* name = Largest ? "argmax" : "argmin";
  A arg;
  explicit ArgReduceAll(A a) : arg(std::move(a)) {}
  auto inputs() const { return std::tie(arg); }
  template <class G>
  auto input_adjoints(const G&) const {
    static_assert(detail::dependent_false_v<G>, "tessera::grad: argmax/argmin is not differentiable");
    return std::make_tuple(NoAdjoint{});
  }
  Shape<0> shape() const { return {}; }
  void evaluate_into(Tensor<std::int64_t, 0, backend_type>& out) const {
    const auto flat = eval(arg).contiguous().flatten();
    arg_reduce_into(backend_type{}, std::bool_constant<Largest>{}, out, flat, 0);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
};

/// Flat (row-major) position of the largest element.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
ArgReduceAll<true, A> argmax(const A& a) {
  return ArgReduceAll<true, A>(a);
}
/// Flat (row-major) position of the smallest element.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
ArgReduceAll<false, A> argmin(const A& a) {
  return ArgReduceAll<false, A>(a);
}

}  // namespace tessera
