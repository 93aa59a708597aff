// LibTorch's side of every workload, and the only translation unit that includes LibTorch headers
// (they are heavy, and kept away from tessera's names). Compiled only when CMake finds Torch.
// Each run() executes under c10::InferenceMode, as a LibTorch user serving a model would.
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/InferenceMode.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "runners.hpp"

namespace tessera_bench::libtorch_impl {

namespace {

torch::Tensor to_tensor(const HostArray& h) {
  auto t = torch::empty(h.shape, torch::kFloat);
  if (static_cast<std::size_t>(t.numel()) != h.values.size()) {
    throw std::invalid_argument("libtorch runner: input shape and value count disagree");
  }
  std::memcpy(t.data_ptr<float>(), h.values.data(), h.values.size() * sizeof(float));
  return t;
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const auto c = t.contiguous();
  const float* p = c.data_ptr<float>();
  return std::vector<float>(p, p + c.numel());
}

class ElementwiseChain final : public Runner {
 public:
  explicit ElementwiseChain(const Inputs& in)
      : a_(to_tensor(in.at(0))),
        b_(to_tensor(in.at(1))),
        c_(to_tensor(in.at(2))),
        d_(to_tensor(in.at(3))),
        e_(to_tensor(in.at(4))) {}
  void run() override {
    c10::InferenceMode guard;
    y_ = a_ * b_ + c_ * d_ - torch::tanh(e_);
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  torch::Tensor a_, b_, c_, d_, e_, y_;
};

class ElementwiseChainOut final : public Runner {
 public:
  explicit ElementwiseChainOut(const Inputs& in)
      : a_(to_tensor(in.at(0))),
        b_(to_tensor(in.at(1))),
        c_(to_tensor(in.at(2))),
        d_(to_tensor(in.at(3))),
        e_(to_tensor(in.at(4))),
        y_(torch::zeros_like(a_)),
        t_(torch::zeros_like(a_)) {}
  void run() override {
    c10::InferenceMode guard;
    torch::mul_out(y_, a_, b_);
    y_.addcmul_(c_, d_);
    torch::tanh_out(t_, e_);
    y_.sub_(t_);
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  torch::Tensor a_, b_, c_, d_, e_, y_, t_;
};

class Gemm final : public Runner {
 public:
  explicit Gemm(const Inputs& in)
      : a_(to_tensor(in.at(0))), b_(to_tensor(in.at(1))), c_(torch::zeros({a_.size(0), b_.size(1)})) {}
  void run() override {
    c10::InferenceMode guard;
    torch::mm_out(c_, a_, b_);
  }
  std::vector<float> result() const override { return to_vector(c_); }

 private:
  torch::Tensor a_, b_, c_;
};

class Sum final : public Runner {
 public:
  explicit Sum(const Inputs& in) : x_(to_tensor(in.at(0))) {}
  void run() override {
    c10::InferenceMode guard;
    s_ = x_.sum();
  }
  std::vector<float> result() const override { return {s_.item<float>()}; }

 private:
  torch::Tensor x_, s_;
};

class Softmax final : public Runner {
 public:
  explicit Softmax(const Inputs& in) : x_(to_tensor(in.at(0))), y_(torch::zeros_like(x_)) {}
  void run() override {
    c10::InferenceMode guard;
    torch::softmax_out(y_, x_, -1);
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  torch::Tensor x_, y_;
};

}  // namespace

std::unique_ptr<Runner> elementwise_chain(const Inputs& in) { return std::make_unique<ElementwiseChain>(in); }
std::unique_ptr<Runner> elementwise_chain_out(const Inputs& in) { return std::make_unique<ElementwiseChainOut>(in); }
std::unique_ptr<Runner> gemm(const Inputs& in) { return std::make_unique<Gemm>(in); }
std::unique_ptr<Runner> sum(const Inputs& in) { return std::make_unique<Sum>(in); }
std::unique_ptr<Runner> softmax(const Inputs& in) { return std::make_unique<Softmax>(in); }

void set_num_threads(int n) { torch::set_num_threads(n); }
int num_threads() { return torch::get_num_threads(); }

std::string info() {
  std::ostringstream os;
  os << TORCH_VERSION_MAJOR << '.' << TORCH_VERSION_MINOR << '.' << TORCH_VERSION_PATCH << ", intra-op threads "
     << torch::get_num_threads();
  // show_config() is multi-line; keep the lines that say how this build computes on the CPU.
  std::istringstream config(at::show_config());
  for (std::string line; std::getline(config, line);) {
    const auto start = line.find_first_not_of(" -");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (line.rfind("CPU capability", 0) == 0 || line.rfind("BLAS_INFO", 0) == 0 || line.rfind("OpenMP", 0) == 0 ||
        line.rfind("ATen parallel", 0) == 0) {
      os << "; " << line;
    }
  }
  return os.str();
}

}  // namespace tessera_bench::libtorch_impl
