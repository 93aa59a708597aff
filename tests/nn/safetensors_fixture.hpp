// PyTorch fixtures stored as safetensors files under tests/nn/fixtures/ (float64, written by the
// make_*_fixtures.py scripts next to this file): tensors by name, a module's parameters loaded by
// PyTorch's names, and its gradients checked against "<prefix>.grad.<name>".
#pragma once

#include <doctest/doctest.h>

#include <string>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

namespace fixture_test {

/// CHECK_TENSOR_NEAR as a function: its arguments may contain commas (template arguments).
template <class A, class B>
void expect_near(const A& actual, const B& expected, double tol) {
  CHECK_TENSOR_NEAR(actual, expected, tol);
}
template <class A, class B>
void expect_eq(const A& actual, const B& expected) {
  CHECK_TENSOR_EQ(actual, expected);
}

/// One fixture file, read once.
class FixtureFile {
 public:
  explicit FixtureFile(const std::string& file_name)
      : file_(tessera::io::SafetensorsFile::read(directory() + "/fixtures/" + file_name)) {}

  const tessera::io::SafetensorsFile& file() const { return file_; }
  /// The tensor `name` in element type T (stored as float64).
  template <class T, std::size_t R>
  tessera::Tensor<T, R> tensor(const std::string& name) const {
    return tessera::cast<T>(file_.tensor<double, R>(name));
  }
  double scalar(const std::string& name) const { return file_.tensor<double, 0>(name)(); }

  /// Copies the fixture's parameters "<prefix>.<name>" into the module (by PyTorch's names).
  template <class M>
  void load_parameters(M& m, const std::string& prefix) const {
    tessera::nn::for_each_parameter(m, [&](const std::string& name, auto& t) {
      using Tn = std::decay_t<decltype(t)>;
      t.assign(tensor<tessera::value_type_t<Tn>, tessera::rank_v<Tn>>(prefix + "." + name));
    });
  }
  /// Every parameter gradient against "<prefix>.grad.<name>".
  template <class M>
  void check_parameter_gradients(M& grads, const std::string& prefix, double tol) const {
    tessera::nn::for_each_parameter(grads, [&](const std::string& name, auto& g) {
      using Tn = std::decay_t<decltype(g)>;
      CAPTURE(name);
      expect_near(g, tensor<tessera::value_type_t<Tn>, tessera::rank_v<Tn>>(prefix + ".grad." + name), tol);
    });
  }

 private:
  static std::string directory() {
    const std::string here = __FILE__;
    return here.substr(0, here.find_last_of('/'));
  }
  tessera::io::SafetensorsFile file_;
};

}  // namespace fixture_test
