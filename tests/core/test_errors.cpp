// The exception hierarchy and the exact wording of the messages users see most.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace {

using tessera::Tensor;

/// The what() of the exception `f` throws as E; fails the test when it throws nothing or another type.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("threw a different exception type: " << e.what());
    return {};
  }
  FAIL_CHECK("did not throw");
  return {};
}

}  // namespace

TEST_CASE("the exception hierarchy") {
  static_assert(std::is_base_of_v<std::invalid_argument, tessera::shape_error>);
  static_assert(std::is_base_of_v<std::out_of_range, tessera::index_error>);
  static_assert(std::is_base_of_v<std::invalid_argument, tessera::value_error>);
  static_assert(!std::is_base_of_v<tessera::shape_error, tessera::value_error>);
  static_assert(!std::is_base_of_v<tessera::value_error, tessera::shape_error>);
  static_assert(std::is_base_of_v<std::logic_error, tessera::index_error>);

  CHECK(std::string(tessera::shape_error("s").what()) == "s");
  CHECK(std::string(tessera::index_error("i").what()) == "i");
  CHECK(std::string(tessera::value_error("v").what()) == "v");

  // thrown errors are caught through the standard bases
  Tensor<float, 2> a(2, 3);
  Tensor<float, 2> b(4, 5);
  CHECK_THROWS_AS(a + b, std::invalid_argument);
  CHECK_THROWS_AS(a(2, 0), std::out_of_range);
  CHECK_THROWS_AS(a.slice(0, 0, 1, 0), std::invalid_argument);
  CHECK_THROWS_AS(a.transpose(0, 5), std::out_of_range);
  CHECK_THROWS_AS(tessera::arange<float>(0.0f, 1.0f, 0.0f), std::logic_error);

  // ...and each by its own type, not the others
  bool shape_caught = false;
  try {
    (void)(a + b);
  } catch (const tessera::value_error&) {
    FAIL_CHECK("a shape mismatch is not a value_error");
  } catch (const tessera::shape_error&) {
    shape_caught = true;
  }
  CHECK(shape_caught);
  bool value_caught = false;
  try {
    (void)a.slice(0, 0, 1, 0);
  } catch (const tessera::shape_error&) {
    FAIL_CHECK("a bad step is not a shape_error");
  } catch (const tessera::value_error&) {
    value_caught = true;
  }
  CHECK(value_caught);
}

TEST_CASE("matmul names both shapes and the inner extents") {
  const auto x = tessera::zeros<float>(64, 784);
  const auto w = tessera::zeros<float>(128, 10);
  CHECK_THROWS_WITH_AS(tessera::matmul(x, w), "matmul: [64, 784] x [128, 10]: inner extents 784 and 128 differ",
                       tessera::shape_error);

  const auto v3 = tessera::zeros<double>(3);
  const auto v4 = tessera::zeros<double>(4);
  CHECK(message_of<tessera::shape_error>([&] { (void)tessera::matmul(v3, v4); }) ==
        "matmul: [3] x [4]: inner extents 3 and 4 differ");
  const auto m = tessera::zeros<double>(2, 5);
  CHECK(message_of<tessera::shape_error>([&] { (void)tessera::matmul(m, v4); }) ==
        "matmul: [2, 5] x [4]: inner extents 5 and 4 differ");

  const auto batch_a = tessera::zeros<float>(2, 3, 4);
  const auto batch_b = tessera::zeros<float>(5, 4, 6);
  CHECK_THROWS_WITH_AS(tessera::matmul(batch_a, batch_b), doctest::Contains("[2, 3, 4] x [5, 4, 6]"),
                       tessera::shape_error);
  CHECK_NOTHROW(tessera::matmul(batch_a, tessera::zeros<float>(1, 4, 6)));
}

TEST_CASE("broadcasting errors name the op and both shapes") {
  Tensor<float, 2> a(2, 3);
  Tensor<float, 1> b(4);
  CHECK_THROWS_WITH_AS(a + b, "add: [2, 3] and [4] cannot be broadcast: extents 3 and 4 at axis 1 differ and neither is 1",
                       tessera::shape_error);
  CHECK_THROWS_WITH_AS(b - a, doctest::Contains("sub: [4] and [2, 3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a * b, doctest::Contains("mul: [2, 3] and [4]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a / b, doctest::Contains("div: [2, 3] and [4]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(static_cast<void>(a < b), doctest::Contains("less: [2, 3] and [4]"), tessera::shape_error);

  Tensor<float, 3> c(5, 2, 1);
  Tensor<float, 3> d(3, 1, 7);
  CHECK_THROWS_WITH_AS(c + d, doctest::Contains("[5, 2, 1] and [3, 1, 7]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(c + d, doctest::Contains("axis 0"), tessera::shape_error);

  // broadcasting that works raises nothing
  Tensor<float, 2> col(2, 1);
  CHECK_NOTHROW(a + col);
  CHECK_NOTHROW(c + Tensor<float, 2>(2, 7));
}

TEST_CASE("index and axis errors say what was out of range") {
  Tensor<float, 2> a(2, 3);
  CHECK(message_of<tessera::index_error>([&] { (void)a(1, 3); }) ==
        "Tensor: index [1, 3] is out of bounds for shape [2, 3] (axis 1)");
  CHECK(message_of<tessera::index_error>([&] { (void)a.transpose(0, 2); }) ==
        "transpose: axis 2 is out of range for rank 2");
  CHECK(message_of<tessera::index_error>([&] { (void)a.slice(-3, 0, 1); }) ==
        "slice: axis -3 is out of range for rank 2");
  CHECK_THROWS_WITH_AS(a.select(0, 2), doctest::Contains("select: index 2"), tessera::index_error);
}

TEST_CASE("value errors name the function") {
  CHECK_THROWS_WITH_AS(tessera::arange<double>(0.0, 1.0, 0.0), doctest::Contains("arange"), tessera::value_error);
  CHECK_THROWS_WITH_AS(tessera::linspace<double>(0, 1, -2), doctest::Contains("linspace"), tessera::value_error);
  Tensor<float, 1> v(3);
  CHECK_THROWS_WITH_AS(v.slice(0, 0, 3, -1), doctest::Contains("slice: step must be positive, got -1"),
                       tessera::value_error);
  tessera::Generator g(1);
  CHECK_THROWS_WITH_AS(tessera::uniform<float>(g, {2}, 2.0f, 1.0f), doctest::Contains("uniform"), tessera::value_error);
  CHECK_THROWS_WITH_AS(tessera::normal<float>(g, {2}, 0.0f, -1.0f), doctest::Contains("normal"), tessera::value_error);
}
