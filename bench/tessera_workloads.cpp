// tessera's side of every workload: each runner holds its tensors and writes into a preallocated
// output, so run() measures the computation, not allocation.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>

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

class ConvBatch1 final : public Runner {
 public:
  explicit ConvBatch1(const Inputs& in)
      : x_(to_tensor<4>(in.at(0))), w_(to_tensor<4>(in.at(1))), b_(to_tensor<1>(in.at(2))) {}
  void run() override { y_ = tessera::conv2d(x_, w_, b_, {.padding = 1}); }
  std::vector<float> result() const override { return to_vector(y_); }

 private:
  tessera::Tensor<float, 4> x_, w_, y_;
  tessera::Tensor<float, 1> b_;
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

class MlpGrad final : public Runner {
 public:
  explicit MlpGrad(const Inputs& in)
      : x_(to_tensor<2>(in.at(0))),
        w1_(to_tensor<2>(in.at(2))),
        b1_(to_tensor<1>(in.at(3))),
        w2_(to_tensor<2>(in.at(4))),
        b2_(to_tensor<1>(in.at(5))),
        w3_(to_tensor<2>(in.at(6))),
        b3_(to_tensor<1>(in.at(7))) {
    // One-hot targets, made once (tessera has no integer-label cross-entropy before the nn layer).
    const auto& labels = in.at(1).values;
    onehot_ = tessera::zeros<float>(tessera::Shape<2>{x_.shape(0), w3_.shape(1)});
    for (std::size_t i = 0; i < labels.size(); ++i) onehot_(static_cast<tessera::index_t>(i), static_cast<tessera::index_t>(labels[i])) = 1.0f;
  }
  void run() override {
    const auto& y = onehot_;
    const float inv_batch = 1.0f / static_cast<float>(x_.shape(0));
    const auto& x = x_;
    auto loss = [&](const auto& w1, const auto& b1, const auto& w2, const auto& b2, const auto& w3, const auto& b3) {
      const auto h1 = tessera::relu(tessera::matmul(x, w1) + b1);
      const auto h2 = tessera::relu(tessera::matmul(h1, w2) + b2);
      const auto logits = tessera::matmul(h2, w3) + b3;
      return -tessera::sum(y * tessera::log_softmax(logits, -1)) * inv_batch;
    };
    std::tie(loss_, grads_) = tessera::value_and_grad(loss, w1_, b1_, w2_, b2_, w3_, b3_);
  }
  std::vector<float> result() const override {
    std::vector<float> out{loss_.item()};
    std::apply([&](const auto&... g) { (append(out, g), ...); }, grads_);
    return out;
  }

 private:
  template <std::size_t R>
  static void append(std::vector<float>& out, const tessera::Tensor<float, R>& g) {
    out.insert(out.end(), g.data(), g.data() + g.size());
  }
  tessera::Tensor<float, 2> x_, onehot_, w1_;
  tessera::Tensor<float, 1> b1_;
  tessera::Tensor<float, 2> w2_;
  tessera::Tensor<float, 1> b2_;
  tessera::Tensor<float, 2> w3_;
  tessera::Tensor<float, 1> b3_;
  tessera::Tensor<float, 0> loss_;
  std::tuple<tessera::Tensor<float, 2>, tessera::Tensor<float, 1>, tessera::Tensor<float, 2>, tessera::Tensor<float, 1>,
             tessera::Tensor<float, 2>, tessera::Tensor<float, 1>>
      grads_;
};

/// Keeps the losses of the first two runs (the second one sees the first update), so results can
/// be compared however many timed rounds each library ran.
struct LossLog {
  std::vector<float> first_two;
  void record(float loss) {
    if (first_two.size() < 2) first_two.push_back(loss);
  }
};

template <class M>
void load_parameters(M& model, const Inputs& in, std::size_t first) {
  std::size_t k = first;
  tessera::nn::for_each_parameter(model, [&](const std::string& name, auto& p) {
    const HostArray& h = in.at(k++);
    if (static_cast<std::size_t>(p.size()) != h.values.size()) {
      throw std::invalid_argument("tessera runner: input for " + name + " has the wrong size");
    }
    std::memcpy(p.data(), h.values.data(), h.values.size() * sizeof(float));
  });
}

tessera::Tensor<std::int64_t, 1> to_labels(const HostArray& h) {
  tessera::Tensor<std::int64_t, 1> t(tessera::Shape<1>{static_cast<tessera::index_t>(h.values.size())});
  for (std::size_t i = 0; i < h.values.size(); ++i) t(static_cast<tessera::index_t>(i)) = static_cast<std::int64_t>(h.values[i]);
  return t;
}

class MlpTrainStep final : public Runner {
 public:
  explicit MlpTrainStep(const Inputs& in)
      : x_(to_tensor<2>(in.at(0))),
        labels_(to_labels(in.at(1))),
        model_(tessera::nn::sequential(tessera::nn::Linear<float>(784, 512), tessera::nn::ReLU{},
                                       tessera::nn::Linear<float>(512, 512), tessera::nn::ReLU{},
                                       tessera::nn::Linear<float>(512, 10))),
        opt_({.lr = 0.01, .momentum = 0.9}) {
    load_parameters(model_, in, 2);
  }
  void run() override {
    auto loss = [&](const auto& m) { return tessera::nn::cross_entropy(m(x_), labels_); };
    auto [l, g] = tessera::value_and_grad(loss, model_);
    opt_.step(model_, std::get<0>(g));
    log_.record(l.item());
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  tessera::Tensor<float, 2> x_;
  tessera::Tensor<std::int64_t, 1> labels_;
  decltype(tessera::nn::sequential(tessera::nn::Linear<float>(1, 1), tessera::nn::ReLU{}, tessera::nn::Linear<float>(1, 1),
                                   tessera::nn::ReLU{}, tessera::nn::Linear<float>(1, 1))) model_;
  tessera::optim::SGD<float> opt_;
  LossLog log_;
};

/// conv 1->32 3x3 pad 1, ReLU, maxpool 2, conv 32->64 3x3 pad 1, ReLU, maxpool 2, flatten,
/// linear 3136->128, ReLU, linear 128->10.
inline auto make_cnn() {
  namespace nn = tessera::nn;
  return nn::sequential(nn::Conv2d<float>(1, 32, 3, {.padding = 1}), nn::ReLU{}, nn::MaxPool2d(2),
                        nn::Conv2d<float>(32, 64, 3, {.padding = 1}), nn::ReLU{}, nn::MaxPool2d(2), nn::Flatten{},
                        nn::Linear<float>(3136, 128), nn::ReLU{}, nn::Linear<float>(128, 10));
}

class CnnTrainStep final : public Runner {
 public:
  explicit CnnTrainStep(const Inputs& in)
      : x_(to_tensor<4>(in.at(0))), labels_(to_labels(in.at(1))), model_(make_cnn()), opt_({.lr = 1e-3}) {
    load_parameters(model_, in, 2);
  }
  void run() override {
    auto loss = [&](const auto& m) { return tessera::nn::cross_entropy(m(x_), labels_); };
    auto [l, g] = tessera::value_and_grad(loss, model_);
    opt_.step(model_, std::get<0>(g));
    log_.record(l.item());
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  tessera::Tensor<float, 4> x_;
  tessera::Tensor<std::int64_t, 1> labels_;
  decltype(make_cnn()) model_;
  tessera::optim::Adam<float> opt_;
  LossLog log_;
};

/// A module with one flat parameter (the Adam workload).
struct FlatParameter : tessera::nn::Module<FlatParameter> {
  tessera::Tensor<float, 1> w;
  auto members() { return std::make_tuple(tessera::nn::param("w", w)); }
};

class Adam10mStep final : public Runner {
 public:
  explicit Adam10mStep(const Inputs& in) {
    p_.w = to_tensor<1>(in.at(0));
    g_.w = to_tensor<1>(in.at(1));
  }
  void run() override {
    opt_.step(p_, g_);
    if (first_.empty()) first_ = to_vector(p_.w);
  }
  std::vector<float> result() const override { return first_; }

 private:
  FlatParameter p_, g_;
  tessera::optim::Adam<float> opt_;
  std::vector<float> first_;
};

/// One SGD step of a recurrent layer (nn::LSTM or nn::GRU), MSE of the last step's output.
template <class Layer>
class RecurrentTrainStep final : public Runner {
 public:
  explicit RecurrentTrainStep(const Inputs& in)
      : x_(to_tensor<3>(in.at(0))),
        target_(to_tensor<2>(in.at(1))),
        model_(x_.shape()[2], target_.shape()[1]),
        opt_({.lr = 0.1}) {
    load_parameters(model_, in, 2);
  }
  void run() override {
    const tessera::index_t steps = x_.shape()[0];
    auto loss = [&](const auto& m) {
      auto [out, state] = m(x_);
      return tessera::nn::mse(tessera::reshape(tessera::slice(out, 0, steps - 1, steps), target_.shape()), target_);
    };
    auto [l, g] = tessera::value_and_grad(loss, model_);
    opt_.step(model_, std::get<0>(g));
    log_.record(l.item());
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  tessera::Tensor<float, 3> x_;
  tessera::Tensor<float, 2> target_;
  Layer model_;
  tessera::optim::SGD<float> opt_;
  LossLog log_;
};

/// Forward and backward of nn::MultiheadAttention, causal self-attention.
class AttentionFwdBwd final : public Runner {
 public:
  explicit AttentionFwdBwd(const Inputs& in)
      : x_(to_tensor<3>(in.at(0))), w_(to_tensor<3>(in.at(1))), mha_(x_.shape()[2], 8) {
    load_parameters(mha_, in, 2);
    masks_.causal = true;
  }
  void run() override {
    const float per_example = 1.0f / static_cast<float>(x_.shape()[0]);
    auto loss = [&](const auto& m, const auto& x) { return tessera::sum(m(x, x, x, masks_) * w_) * per_example; };
    auto [l, g] = tessera::value_and_grad(loss, mha_, x_);
    if (result_.empty()) {
      result_.push_back(l.item());
      const auto& db = std::get<0>(g).in_proj_bias;
      result_.insert(result_.end(), db.data(), db.data() + db.size());
    }
  }
  std::vector<float> result() const override { return result_; }

 private:
  tessera::Tensor<float, 3> x_, w_;
  tessera::nn::MultiheadAttention<float> mha_;
  tessera::nn::AttentionMasks<float> masks_;
  std::vector<float> result_;
};

/// Two TransformerEncoderLayers, one after the other.
struct TwoEncoderLayers : tessera::nn::Module<TwoEncoderLayers> {
  tessera::nn::TransformerEncoderLayer<float> first, second;
  TwoEncoderLayers(tessera::index_t d_model, tessera::index_t heads, tessera::nn::TransformerLayerOptions o)
      : first(d_model, heads, o), second(d_model, heads, o) {}
  auto members() { return std::make_tuple(tessera::nn::child("0", first), tessera::nn::child("1", second)); }
  template <class X>
  auto operator()(const X& x) const {
    return second(first(x));
  }
};

class TransformerTrainStep final : public Runner {
 public:
  explicit TransformerTrainStep(const Inputs& in)
      : x_(to_tensor<3>(in.at(0))), target_(to_tensor<3>(in.at(1))), model_(x_.shape()[2], 8, options()), opt_({.lr = 1e-3}) {
    load_parameters(model_, in, 2);
  }
  void run() override {
    auto loss = [&](const auto& m) { return tessera::nn::mse(m(x_), target_); };
    auto [l, g] = tessera::value_and_grad(loss, model_);
    opt_.step(model_, std::get<0>(g));
    log_.record(l.item());
  }
  std::vector<float> result() const override { return log_.first_two; }

 private:
  static tessera::nn::TransformerLayerOptions options() {
    tessera::nn::TransformerLayerOptions o;
    o.dim_feedforward = 1024;
    o.dropout = 0.0;
    return o;
  }
  tessera::Tensor<float, 3> x_, target_;
  TwoEncoderLayers model_;
  tessera::optim::Adam<float> opt_;
  LossLog log_;
};

}  // namespace

std::unique_ptr<Runner> elementwise_chain(const Inputs& in) { return std::make_unique<ElementwiseChain>(in); }
std::unique_ptr<Runner> gemm(const Inputs& in) { return std::make_unique<Gemm>(in); }
std::unique_ptr<Runner> sum(const Inputs& in) { return std::make_unique<Sum>(in); }
std::unique_ptr<Runner> softmax(const Inputs& in) { return std::make_unique<Softmax>(in); }
std::unique_ptr<Runner> mlp_grad(const Inputs& in) { return std::make_unique<MlpGrad>(in); }
std::unique_ptr<Runner> mlp_train_step(const Inputs& in) { return std::make_unique<MlpTrainStep>(in); }
std::unique_ptr<Runner> cnn_train_step(const Inputs& in) { return std::make_unique<CnnTrainStep>(in); }
std::unique_ptr<Runner> conv_batch1(const Inputs& in) { return std::make_unique<ConvBatch1>(in); }
std::unique_ptr<Runner> adam_10m_step(const Inputs& in) { return std::make_unique<Adam10mStep>(in); }
std::unique_ptr<Runner> lstm_train_step(const Inputs& in) {
  return std::make_unique<RecurrentTrainStep<tessera::nn::LSTM<float>>>(in);
}
std::unique_ptr<Runner> gru_train_step(const Inputs& in) {
  return std::make_unique<RecurrentTrainStep<tessera::nn::GRU<float>>>(in);
}
std::unique_ptr<Runner> attention_fwd_bwd(const Inputs& in) { return std::make_unique<AttentionFwdBwd>(in); }
std::unique_ptr<Runner> transformer_train_step(const Inputs& in) { return std::make_unique<TransformerTrainStep>(in); }

}  // namespace tessera_bench::tessera_impl
