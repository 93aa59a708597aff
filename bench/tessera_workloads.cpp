// tessera's side of every workload: each runner holds its tensors and writes into a preallocated
// output, so run() measures the computation, not allocation.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <tessera/tessera.hpp>

#include "runners.hpp"

namespace tessera_bench::tessera_impl {

namespace {

template <std::size_t R>
tessera::Tensor<float, R> to_tensor(const HostArray& h) {
  if (h.shape.size() != R) throw std::invalid_argument("tessera runner: input has the wrong rank");
  tessera::Shape<R> shape{};
  for (std::size_t i = 0; i < R; ++i) shape[i] = h.shape[i];
  auto t = tessera::empty<float>(shape);
  if (static_cast<std::size_t>(t.size()) != h.values.size()) {
    throw std::invalid_argument("tessera runner: input shape and value count disagree");
  }
  std::memcpy(t.data(), h.values.data(), h.values.size() * sizeof(float));
  return t;
}

template <class T, std::size_t R>
std::vector<float> to_vector(const tessera::Tensor<T, R>& t) {
  return std::vector<float>(t.data(), t.data() + t.size());
}

/// Fails loudly if an assignment allocated instead of reusing the output buffer.
void expect_same_buffer(const float* before, const float* after) {
  if (before != after) throw std::logic_error("tessera runner: assignment did not reuse the output buffer");
}

class ElementwiseChain final : public Runner {
 public:
  explicit ElementwiseChain(const Inputs& in)
      : a_(to_tensor<1>(in.at(0))),
        b_(to_tensor<1>(in.at(1))),
        c_(to_tensor<1>(in.at(2))),
        d_(to_tensor<1>(in.at(3))),
        e_(to_tensor<1>(in.at(4))),
        y_(a_.shape()) {}
  void run() override {
    const float* before = y_.data();
    y_ = a_ * b_ + c_ * d_ - tessera::tanh(e_);
    expect_same_buffer(before, y_.data());
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  tessera::Tensor<float, 1> a_, b_, c_, d_, e_, y_;
};

class Gemm final : public Runner {
 public:
  explicit Gemm(const Inputs& in)
      : a_(to_tensor<2>(in.at(0))), b_(to_tensor<2>(in.at(1))), c_(a_.shape(0), b_.shape(1)) {}
  void run() override {
    const float* before = c_.data();
    c_ = tessera::matmul(a_, b_);
    expect_same_buffer(before, c_.data());
  }
  std::vector<float> result() const override { return to_vector(c_); }

 private:
  tessera::Tensor<float, 2> a_, b_, c_;
};

class Sum final : public Runner {
 public:
  explicit Sum(const Inputs& in) : x_(to_tensor<1>(in.at(0))) {}
  void run() override { s_ = tessera::sum(x_); }
  std::vector<float> result() const override { return {s_.item()}; }

 private:
  tessera::Tensor<float, 1> x_;
  tessera::Tensor<float, 0> s_;
};

class Softmax final : public Runner {
 public:
  explicit Softmax(const Inputs& in) : x_(to_tensor<2>(in.at(0))), y_(x_.shape()) {}
  void run() override {
    const float* before = y_.data();
    y_ = tessera::softmax(x_, -1);
    expect_same_buffer(before, y_.data());
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  tessera::Tensor<float, 2> x_, y_;
};

}  // namespace

std::unique_ptr<Runner> elementwise_chain(const Inputs& in) { return std::make_unique<ElementwiseChain>(in); }
std::unique_ptr<Runner> gemm(const Inputs& in) { return std::make_unique<Gemm>(in); }
std::unique_ptr<Runner> sum(const Inputs& in) { return std::make_unique<Sum>(in); }
std::unique_ptr<Runner> softmax(const Inputs& in) { return std::make_unique<Softmax>(in); }

}  // namespace tessera_bench::tessera_impl
