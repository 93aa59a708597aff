// LibTorch's side of every workload, and the only translation unit that includes LibTorch headers
// (they are heavy, and kept away from tessera's names). Compiled only when CMake finds Torch.
// Each forward-only run() executes under c10::InferenceMode, as a LibTorch user serving a model
// would; mlp_grad and the training steps run with autograd and torch::optim, as in training.
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/transformerlayer.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
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

class ConvBatch1 final : public Runner {
 public:
  explicit ConvBatch1(const Inputs& in) : x_(to_tensor(in.at(0))), w_(to_tensor(in.at(1))), b_(to_tensor(in.at(2))) {}
  void run() override {
    c10::InferenceMode guard;
    y_ = torch::conv2d(x_, w_, b_, /*stride=*/1, /*padding=*/1);
  }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  torch::Tensor x_, w_, b_, y_;
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

class MlpGrad final : public Runner {
 public:
  explicit MlpGrad(const Inputs& in) : x_(to_tensor(in.at(0))), labels_(to_tensor(in.at(1)).to(torch::kLong)) {
    for (std::size_t i = 2; i < 8; ++i) params_.push_back(to_tensor(in.at(i)).requires_grad_(true));
  }
  void run() override {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none=True)
    const auto h1 = torch::relu(torch::addmm(params_[1], x_, params_[0]));
    const auto h2 = torch::relu(torch::addmm(params_[3], h1, params_[2]));
    const auto logits = torch::addmm(params_[5], h2, params_[4]);
    loss_ = torch::nn::functional::cross_entropy(logits, labels_);
    loss_.backward();
  }
  std::vector<float> result() const override {
    std::vector<float> out{loss_.item<float>()};
    for (const auto& p : params_) {
      const auto g = to_vector(p.grad());
      out.insert(out.end(), g.begin(), g.end());
    }
    return out;
  }

 private:
  torch::Tensor x_, labels_, loss_;
  std::vector<torch::Tensor> params_;  // w1, b1, w2, b2, w3, b3
};

namespace F = torch::nn::functional;

/// Parameters from inputs [first, first + n), each requiring gradients.
std::vector<torch::Tensor> parameters_from(const Inputs& in, std::size_t first, std::size_t n) {
  std::vector<torch::Tensor> params;
  for (std::size_t i = first; i < first + n; ++i) params.push_back(to_tensor(in.at(i)).requires_grad_(true));
  return params;
}

/// The losses of the first two runs (see tessera's LossLog).
struct LossLog {
  std::vector<float> first_two;
  void record(const torch::Tensor& loss) {
    if (first_two.size() < 2) first_two.push_back(loss.item<float>());
  }
};

class MlpTrainStep final : public Runner {
 public:
  explicit MlpTrainStep(const Inputs& in)
      : x_(to_tensor(in.at(0))),
        labels_(to_tensor(in.at(1)).to(torch::kLong)),
        params_(parameters_from(in, 2, 6)),
        opt_(params_, torch::optim::SGDOptions(0.01).momentum(0.9)) {}
  void run() override {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none=True)
    auto h = torch::relu(F::linear(x_, params_[0], params_[1]));
    h = torch::relu(F::linear(h, params_[2], params_[3]));
    const auto loss = F::cross_entropy(F::linear(h, params_[4], params_[5]), labels_);
    loss.backward();
    opt_.step();
    log_.record(loss);
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  torch::Tensor x_, labels_;
  std::vector<torch::Tensor> params_;
  torch::optim::SGD opt_;
  LossLog log_;
};

class CnnTrainStep final : public Runner {
 public:
  explicit CnnTrainStep(const Inputs& in)
      : x_(to_tensor(in.at(0))),
        labels_(to_tensor(in.at(1)).to(torch::kLong)),
        params_(parameters_from(in, 2, 8)),
        opt_(params_, torch::optim::AdamOptions(1e-3)) {}
  void run() override {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    auto h = F::max_pool2d(torch::relu(F::conv2d(x_, params_[0], F::Conv2dFuncOptions().bias(params_[1]).padding(1))),
                           F::MaxPool2dFuncOptions(2));
    h = F::max_pool2d(torch::relu(F::conv2d(h, params_[2], F::Conv2dFuncOptions().bias(params_[3]).padding(1))),
                      F::MaxPool2dFuncOptions(2));
    h = torch::relu(F::linear(h.flatten(1), params_[4], params_[5]));
    const auto loss = F::cross_entropy(F::linear(h, params_[6], params_[7]), labels_);
    loss.backward();
    opt_.step();
    log_.record(loss);
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  torch::Tensor x_, labels_;
  std::vector<torch::Tensor> params_;
  torch::optim::Adam opt_;
  LossLog log_;
};

class Adam10mStep final : public Runner {
 public:
  explicit Adam10mStep(const Inputs& in)
      : params_{to_tensor(in.at(0)).requires_grad_(true)}, opt_(params_, torch::optim::AdamOptions(1e-3)) {
    params_[0].mutable_grad() = to_tensor(in.at(1));
  }
  void run() override {
    opt_.step();
    if (first_.empty()) first_ = to_vector(params_[0].detach());
  }
  std::vector<float> result() const override { return first_; }

 private:
  std::vector<torch::Tensor> params_;
  torch::optim::Adam opt_;
  std::vector<float> first_;
};

/// One SGD step of torch::lstm (Lstm = true) or torch::gru over autograd.
template <bool Lstm>
class RecurrentTrainStep final : public Runner {
 public:
  explicit RecurrentTrainStep(const Inputs& in)
      : x_(to_tensor(in.at(0))),
        target_(to_tensor(in.at(1))),
        params_(parameters_from(in, 2, 4)),
        opt_(params_, torch::optim::SGDOptions(0.1)) {}
  void run() override {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    const auto h0 = torch::zeros({1, x_.size(1), target_.size(1)});  // [layers, batch, hidden]
    torch::Tensor out;
    if constexpr (Lstm) {
      out = std::get<0>(torch::lstm(x_, {h0, h0}, params_, true, 1, 0.0, true, false, false));
    } else {
      out = std::get<0>(torch::gru(x_, h0, params_, true, 1, 0.0, true, false, false));
    }
    const auto loss = F::mse_loss(out[out.size(0) - 1], target_);
    loss.backward();
    opt_.step();
    log_.record(loss);
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  torch::Tensor x_, target_;
  std::vector<torch::Tensor> params_;
  torch::optim::SGD opt_;
  LossLog log_;
};

/// Copies inputs in[first...] into the module's parameters in named_parameters() order (PyTorch's).
void load_parameters(torch::nn::Module& m, const Inputs& in, std::size_t first) {
  torch::NoGradGuard no_grad;
  std::size_t k = first;
  for (auto& p : m.named_parameters()) {
    const auto src = to_tensor(in.at(k++));
    if (src.numel() != p.value().numel()) throw std::invalid_argument("libtorch runner: input for " + p.key() + " has the wrong size");
    p.value().copy_(src.view(p.value().sizes()));
  }
}

/// [L, L] float mask: 0 on and below the diagonal, -inf above (what is_causal means).
torch::Tensor causal_mask(std::int64_t l) {
  return torch::triu(torch::full({l, l}, -std::numeric_limits<float>::infinity()), 1);
}

class AttentionFwdBwd final : public Runner {
 public:
  explicit AttentionFwdBwd(const Inputs& in)
      : x_(to_tensor(in.at(0)).requires_grad_(true)),
        w_(to_tensor(in.at(1))),
        mha_(torch::nn::MultiheadAttentionOptions(x_.size(2), 8)),
        mask_(causal_mask(x_.size(1))) {
    load_parameters(*mha_, in, 2);
  }
  void run() override {
    x_.mutable_grad() = torch::Tensor();
    for (auto& p : mha_->parameters()) p.mutable_grad() = torch::Tensor();
    const auto xs = x_.transpose(0, 1);  // [seq, batch, E]
    const auto out = std::get<0>(mha_->forward(xs, xs, xs, {}, /*need_weights=*/false, mask_)).transpose(0, 1);
    const auto loss = (out * w_).sum() / static_cast<double>(x_.size(0));
    loss.backward();
    if (result_.empty()) {
      result_.push_back(loss.item<float>());
      const auto db = mha_->in_proj_bias.grad().contiguous();
      result_.insert(result_.end(), db.data_ptr<float>(), db.data_ptr<float>() + db.numel());
    }
  }
  std::vector<float> result() const override { return result_; }

 private:
  torch::Tensor x_, w_;
  torch::nn::MultiheadAttention mha_;
  torch::Tensor mask_;
  std::vector<float> result_;
};

class TransformerTrainStep final : public Runner {
 public:
  explicit TransformerTrainStep(const Inputs& in)
      : x_(to_tensor(in.at(0)).transpose(0, 1)),  // [seq, batch, E]
        target_(to_tensor(in.at(1)).transpose(0, 1)),
        first_(layer_options(x_.size(2))),
        second_(layer_options(x_.size(2))) {
    load_parameters(*first_, in, 2);
    load_parameters(*second_, in, 14);
    for (auto* layer : {&first_, &second_}) {
      for (auto& p : (*layer)->parameters()) params_.push_back(p);
    }
    opt_ = std::make_unique<torch::optim::Adam>(params_, torch::optim::AdamOptions(1e-3));
  }
  void run() override {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    const auto loss = F::mse_loss(second_->forward(first_->forward(x_)), target_);
    loss.backward();
    opt_->step();
    log_.record(loss);
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  static torch::nn::TransformerEncoderLayerOptions layer_options(std::int64_t e) {
    return torch::nn::TransformerEncoderLayerOptions(e, 8).dim_feedforward(1024).dropout(0.0);
  }
  torch::Tensor x_, target_;
  torch::nn::TransformerEncoderLayer first_, second_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Adam> opt_;
  LossLog log_;
};

}  // namespace

std::unique_ptr<Runner> elementwise_chain(const Inputs& in) { return std::make_unique<ElementwiseChain>(in); }
std::unique_ptr<Runner> elementwise_chain_out(const Inputs& in) { return std::make_unique<ElementwiseChainOut>(in); }
std::unique_ptr<Runner> gemm(const Inputs& in) { return std::make_unique<Gemm>(in); }
std::unique_ptr<Runner> sum(const Inputs& in) { return std::make_unique<Sum>(in); }
std::unique_ptr<Runner> softmax(const Inputs& in) { return std::make_unique<Softmax>(in); }
std::unique_ptr<Runner> mlp_grad(const Inputs& in) { return std::make_unique<MlpGrad>(in); }
std::unique_ptr<Runner> mlp_train_step(const Inputs& in) { return std::make_unique<MlpTrainStep>(in); }
std::unique_ptr<Runner> cnn_train_step(const Inputs& in) { return std::make_unique<CnnTrainStep>(in); }
std::unique_ptr<Runner> conv_batch1(const Inputs& in) { return std::make_unique<ConvBatch1>(in); }
std::unique_ptr<Runner> adam_10m_step(const Inputs& in) { return std::make_unique<Adam10mStep>(in); }
std::unique_ptr<Runner> lstm_train_step(const Inputs& in) { return std::make_unique<RecurrentTrainStep<true>>(in); }
std::unique_ptr<Runner> gru_train_step(const Inputs& in) { return std::make_unique<RecurrentTrainStep<false>>(in); }
std::unique_ptr<Runner> attention_fwd_bwd(const Inputs& in) { return std::make_unique<AttentionFwdBwd>(in); }
std::unique_ptr<Runner> transformer_train_step(const Inputs& in) { return std::make_unique<TransformerTrainStep>(in); }

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
