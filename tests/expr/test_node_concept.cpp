// The node contract of expr/node_concept.hpp holds for every node the library builds: each has the
// common members and exactly one role, materialized nodes carry the shared cache slot, and the
// traits tell the roles apart (a node without a role, or with two, is rejected).
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <type_traits>

using namespace tessera;

namespace {

template <class E>
constexpr bool is_leaf = detail::is_tensor_v<E>;
template <class E>
constexpr bool is_elementwise = detail::is_elementwise_node<std::decay_t<E>>::value;
template <class E>
constexpr bool is_materialized = detail::is_materialized_v<E>;

/// A node with its role and (for materialized ones) the cache slot.
template <class E>
void check_node(const E&, bool materialized) {
  static_assert(is_node_v<E>, "every library node satisfies the node contract");
  CHECK(is_materialized<E> == materialized);
  CHECK(is_elementwise<E> == (!materialized && !is_leaf<E>));
  if (materialized) CHECK(detail::has_cache_slot<E>::value);
}

/// No role at all, and two roles: both fail the contract.
struct NoRole : ExprBase<NoRole> {
  using value_type = float;
  using backend_type = cpu;
  static constexpr std::size_t rank = 1;
  Shape<1> shape() const { return {1}; }
};
struct TwoRoles : ExprBase<TwoRoles> {
  using value_type = float;
  using backend_type = cpu;
  static constexpr std::size_t rank = 1;
  Shape<1> shape() const { return {1}; }
  template <std::size_t RO>
  detail::ConstEval<float> evaluator(const Shape<RO>&, const detail::IterPlan&) const {
    return {0.0f};
  }
  void evaluate_into(Tensor<float, 1>&) const {}
};
/// A shape() of the wrong rank.
struct WrongShape : ExprBase<WrongShape> {
  using value_type = float;
  using backend_type = cpu;
  static constexpr std::size_t rank = 2;
  Shape<1> shape() const { return {1}; }
  void evaluate_into(Tensor<float, 2>&) const {}
};

}  // namespace

static_assert(!is_node_v<NoRole>);
static_assert(!is_node_v<TwoRoles>);
static_assert(!is_node_v<WrongShape>);
static_assert(!is_node_v<int>);
#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
static_assert(Node<Tensor<float, 2>> && !Node<NoRole>);
#endif

TEST_CASE("every elementwise, shape and materialized node of the library satisfies the node contract") {
  const Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<float, 2> b = {{1, 0}, {0, 1}, {1, 1}};
  const Tensor<float, 4> img(Shape<4>{1, 1, 4, 4});
  const Tensor<float, 4> w(Shape<4>{2, 1, 3, 3});
  const Tensor<std::int64_t, 1> ids = {0, 1};

  check_node(a, false);
  check_node(Scalar<float>(2.0f), false);
  check_node(a + 1.0f, false);
  check_node(exp(a) * a, false);
  check_node(where(a > 2.0f, a, 0.0f), false);
  check_node(cast<double>(a), false);
  check_node(transpose(a), false);
  check_node(reshape(a, Shape<1>{6}), false);
  check_node(broadcast_to(sum(a, 0), Shape<2>{2, 3}), false);
  check_node(matmul(a, b), true);
  check_node(sum(a), true);
  check_node(mean(a, 1), true);
  check_node(prod(a, 0), true);
  check_node(max(a), true);
  check_node(logsumexp(a, 1), true);
  check_node(var(a, 0), true);
  check_node(argmax(a, 1), true);
  check_node(softmax(a, 1), true);
  check_node(log_softmax(a, 0), true);
  check_node(sum_to(a, Shape<2>{1, 3}), true);
  check_node(conv2d(img, w), true);
  check_node(max_pool2d(img, 2), true);
  check_node(embedding(a, ids), true);
  check_node(slice(a + 1.0f, 1, 0, 2), false);
  check_node(Unslice<Tensor<float, 2>>(a, Shape<2>{2, 5}, detail::SliceRange{1, 1, 4}), true);
  check_node(concat(std::make_tuple(a, a * 2.0f), 0), true);
}
