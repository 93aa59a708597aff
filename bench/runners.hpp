// Factories of each library's runners. tessera's are defined in tessera_workloads.cpp; LibTorch's
// in libtorch_workloads.cpp, the only file that includes LibTorch headers (compiled only when
// CMake finds Torch). Each factory copies its inputs in and allocates its outputs.
#pragma once

#include <memory>
#include <string>

#include "harness.hpp"

namespace tessera_bench {

namespace tessera_impl {
/// y = a * b + c * d - tanh(e), written into a preallocated y. Inputs: a, b, c, d, e.
std::unique_ptr<Runner> elementwise_chain(const Inputs& in);
/// c = a @ b. Inputs: a [m, k], b [k, n].
std::unique_ptr<Runner> gemm(const Inputs& in);
/// s = sum(x) over all elements. Inputs: x.
std::unique_ptr<Runner> sum(const Inputs& in);
/// y = softmax(x) along the last axis. Inputs: x [rows, cols].
std::unique_ptr<Runner> softmax(const Inputs& in);
/// Loss and parameter gradients of a ReLU MLP with softmax cross-entropy (mean over the batch).
/// Inputs: x [batch, in], labels [batch] (class numbers as floats), then w1, b1, w2, b2, w3, b3 with
/// w [in, out]. Result: the loss, then the gradients of w1, b1, ..., b3 flattened in that order.
std::unique_ptr<Runner> mlp_grad(const Inputs& in);
/// One SGD-momentum training step of the 784-512-512-10 MLP. Inputs: x, labels, then w1, b1, w2, b2,
/// w3, b3 in PyTorch's layout (w [out, in]). Result: the losses of the first two runs.
std::unique_ptr<Runner> mlp_train_step(const Inputs& in);
/// y = conv2d(x, w, b), padding 1, in inference mode. Inputs: x [1, C, H, W], w [O, C, 3, 3], b [O].
std::unique_ptr<Runner> conv_batch1(const Inputs& in);
/// One Adam training step of the CNN of the nn issue. Inputs: x [64, 1, 28, 28], labels, then
/// conv1 w, b, conv2 w, b, fc1 w, b, fc2 w, b. Result: the losses of the first two runs.
std::unique_ptr<Runner> cnn_train_step(const Inputs& in);
/// One Adam step over one parameter of 10M elements. Inputs: p, g. Result: p after the first run.
std::unique_ptr<Runner> adam_10m_step(const Inputs& in);
/// One SGD (lr 0.1) step of a one-layer LSTM (GRU) from a zero state, MSE of the last step's
/// output against a target. Inputs: x [seq, batch, in], target [batch, hidden], then weight_ih,
/// weight_hh, bias_ih, bias_hh in PyTorch's layout. Result: the losses of the first two runs.
std::unique_ptr<Runner> lstm_train_step(const Inputs& in);
std::unique_ptr<Runner> gru_train_step(const Inputs& in);
/// Forward and backward of a causal MultiheadAttention (batch-first), loss sum(out * w) / batch.
/// Inputs: x [batch, seq, E], w, in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias.
/// Result: the loss, then in_proj_bias's gradient.
std::unique_ptr<Runner> attention_fwd_bwd(const Inputs& in);
/// One Adam step of two post-norm TransformerEncoderLayers (dropout 0), MSE against a target.
/// Inputs: x [batch, seq, E], target, then each layer's 12 parameters in PyTorch's order
/// (self_attn.in_proj_weight ... norm2.bias). Result: the losses of the first two runs.
std::unique_ptr<Runner> transformer_train_step(const Inputs& in);
}  // namespace tessera_impl

namespace libtorch_impl {
/// The same workloads written as a LibTorch user would: one eager op per operator.
std::unique_ptr<Runner> elementwise_chain(const Inputs& in);
/// The chain with out= / in-place ops into preallocated buffers (no allocation per run).
std::unique_ptr<Runner> elementwise_chain_out(const Inputs& in);
std::unique_ptr<Runner> gemm(const Inputs& in);
std::unique_ptr<Runner> sum(const Inputs& in);
std::unique_ptr<Runner> softmax(const Inputs& in);
/// Autograd (not under InferenceMode): forward, cross_entropy, backward into fresh .grad tensors.
std::unique_ptr<Runner> mlp_grad(const Inputs& in);
/// torch::optim::SGD / Adam over autograd, as a LibTorch training loop is written.
std::unique_ptr<Runner> mlp_train_step(const Inputs& in);
std::unique_ptr<Runner> cnn_train_step(const Inputs& in);
std::unique_ptr<Runner> conv_batch1(const Inputs& in);
std::unique_ptr<Runner> adam_10m_step(const Inputs& in);
/// torch::lstm / torch::gru (what torch::nn::LSTM / GRU call) with autograd and torch::optim::SGD.
std::unique_ptr<Runner> lstm_train_step(const Inputs& in);
std::unique_ptr<Runner> gru_train_step(const Inputs& in);
/// torch::nn::MultiheadAttention and torch::nn::TransformerEncoderLayer (sequence-first, as
/// LibTorch's C++ modules take it: the batch-first inputs are transposed, a view).
std::unique_ptr<Runner> attention_fwd_bwd(const Inputs& in);
std::unique_ptr<Runner> transformer_train_step(const Inputs& in);

/// torch::set_num_threads(n).
void set_num_threads(int n);
/// torch::get_num_threads().
int num_threads();
/// LibTorch's version and parallel backend, on one line.
std::string info();
}  // namespace libtorch_impl

}  // namespace tessera_bench
