// batch_norm: per-channel normalization of x [N, C, ...] by batch statistics (training) or by
// running statistics (evaluation), as torch.nn.functional.batch_norm.
//
// The forward is a materialization node computed by the backend in one kernel, which also updates
// the running statistics: as in PyTorch, every evaluation of a training-mode forward updates them
// once (an autodiff sweep evaluates each node once). The node saves a per-channel mean and 1/std
// (allocated when it is built in training; in evaluation when its value or its backward is first
// built inside a sweep, then filled from the running statistics); its grad rule is the
// closed-form batch-norm backward written with ordinary ops over those buffers:
//
//   xhat = (x - mean) * invstd
//   dbeta = sum(dy), dgamma = sum(dy * xhat)            (over every axis but the channel axis)
//   dx = gamma * invstd * (dy - centring * (dbeta + xhat * dgamma))
//
// where centring is 1/count in training (the statistics depend on x) and 0 in evaluation. A
// backend with its own training backward (has_batch_norm_backward: cuDNN on cuda) computes the
// three in one call instead; the expressions then serve for higher derivatives.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/conv.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera {

/// A batch-norm layer's running statistics (torch's running_mean, running_var and
/// num_batches_tracked). Tensors are handles: a copy updates the same storage.
template <class T, class B = cpu>
struct RunningStats {
  Tensor<T, 1, B> mean;
  Tensor<T, 1, B> var;
  Tensor<std::int64_t, 0, B> batches;  ///< training batches seen (may be empty: not counted)
};

/// Options of batch_norm (torch.nn.functional.batch_norm's).
struct BatchNormOptions {
  bool training = true;
  double momentum = 0.1;  ///< running = (1 - momentum) * running + momentum * batch statistic
  double eps = 1e-5;
};

namespace detail {

/// What every copy of one batch_norm node shares: the statistics it saves for its backward.
template <class T, class B>
struct BatchNormState {
  Tensor<T, 1, B> mean, invstd, var;  ///< [C]; var is the biased batch variance (training only)
  Tensor<T, 0, B> centring;           ///< 1 / count in training, 0 in evaluation
  RunningStats<T, B> running;         ///< empty tensors: not tracked
  BatchNormOptions options;
};

template <std::size_t R>
std::array<bool, R> all_but_channel_axis() {
  std::array<bool, R> mask{};
  for (std::size_t i = 0; i < R; ++i) mask[i] = i != 1;
  return mask;
}
template <std::size_t R>
Shape<R> channel_shape(index_t channels) {
  Shape<R> s;
  for (auto& e : s) e = 1;
  s[1] = channels;
  return s;
}

}  // namespace detail

namespace detail {

/// What the three parts of a backend-computed batch-norm backward share (see BatchNormAdjoint):
/// the inputs, and within one cache epoch the results, so one backend call serves all three.
template <class X, class G, class Dy>
struct BatchNormBackwardShared {
  using T = value_type_t<X>;
  using B = backend_t<X>;
  static constexpr std::size_t R = rank_v<X>;
  X input;
  G gamma;
  Dy dy;
  std::shared_ptr<BatchNormState<T, B>> state;
  std::uint64_t epoch = 0;  ///< the cache epoch the results below belong to (0: none)
  Tensor<T, R, B> dx;
  Tensor<T, 1, B> dgamma, dbeta;

  BatchNormBackwardShared(X x, G g, Dy d, std::shared_ptr<BatchNormState<T, B>> st)
      : input(std::move(x)), gamma(std::move(g)), dy(std::move(d)), state(std::move(st)) {}

  /// Writes part K (0: dx, 1: dgamma, 2: dbeta) into out, computing all three unless this epoch
  /// already has them.
  template <int K, class Out>
  void evaluate(Out& out) {
    const std::uint64_t e = active_cache_epoch();
    if (e == 0 || e != epoch) {
      // dx (the large one) is written straight into out when it is asked for first.
      if constexpr (K == 0) {
        if (out.is_contiguous()) {
          compute(e, &out);
          return;
        }
      }
      compute(e, nullptr);
    }
    if constexpr (K == 0) {
      out.assign(dx);
    } else if constexpr (K == 1) {
      out.assign(dgamma);
    } else {
      out.assign(dbeta);
    }
  }

 private:
  void compute(std::uint64_t e, const Tensor<T, R, B>* dx_out) {
    const auto x = value_of(input).contiguous();
    const Tensor<T, 1, B> g = value_of(gamma).contiguous();
    const Tensor<T, R, B> d = Tensor<T, R, B>(dy).contiguous();
    const auto s = x.shape();
    const auto args = BatchNormForwardArgs::of(s, state->options.eps, true);
    dx = dx_out ? *dx_out : Tensor<T, R, B>::uninitialized(s);  // a handle: shares dx_out's buffer
    dgamma = Tensor<T, 1, B>::uninitialized(Shape<1>{args.channels});
    dbeta = Tensor<T, 1, B>::uninitialized(Shape<1>{args.channels});
    batch_norm_backward(B{}, x.data(), d.data(), g.data(), state->mean.data(), state->invstd.data(), dx.data(),
                        dgamma.data(), dbeta.data(), args);
    epoch = e;
  }
};

}  // namespace detail

/// One part (K = 0: dx, 1: dgamma, 2: dbeta) of batch norm's training backward computed by the
/// backend (has_batch_norm_backward: cuDNN on cuda). It evaluates through the shared backend call
/// and differentiates as its closed form `closed_form` (the sweep passes its adjoint through), so
/// higher derivatives are those of the expression. In evaluation mode it evaluates the closed form.
template <int K, class Shared, class Expr>
struct BatchNormAdjoint : detail::KernelOfClosedForm<BatchNormAdjoint<K, Shared, Expr>, Expr> {
  using Base = detail::KernelOfClosedForm<BatchNormAdjoint<K, Shared, Expr>, Expr>;
  using typename Base::backend_type;
  using typename Base::value_type;
  static constexpr std::size_t rank = Base::rank;
  static constexpr const char* name = "batch_norm_adjoint";
  std::shared_ptr<Shared> shared;

  BatchNormAdjoint(Expr e, std::shared_ptr<Shared> s) : Base(std::move(e)), shared(std::move(s)) {}
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    if (shared->state->options.training) {
      shared->template evaluate<K>(out);
    } else {
      out.assign(this->closed_form);
    }
  }
};

namespace detail {
/// Checks batch_norm's input shape (rank extents at `s`), the extents of gamma and beta and of the
/// running mean and variance (0 and 0: not tracked), and the options; returns the number of values
/// per channel. Compiled once (TESSERA_OUT_OF_LINE), not in every node type's constructor.
TESSERA_OUT_OF_LINE index_t check_batch_norm(const index_t* s, std::size_t rank, index_t gamma_extent,
                                             index_t beta_extent, index_t running_mean_extent,
                                             index_t running_var_extent, const BatchNormOptions& o);
}  // namespace detail

/// The batch-norm node: y = (x - mean) * invstd * gamma + beta per channel (axis 1). With
/// FusedRelu (what `relu(batch_norm(...))` builds) y = relu of that, applied as y is written: no
/// pass of its own, and readers of y (a pooling's forward and backward) read the stored value
/// instead of recomputing relu over the batch norm's.
template <class X, class G, class Bt, bool FusedRelu = false>
struct BatchNorm : detail::MaterializedNode<BatchNorm<X, G, Bt, FusedRelu>, value_type_t<X>, rank_v<X>, backend_t<X>> {
  using value_type = value_type_t<X>;
  using backend_type = backend_t<X>;
  static constexpr std::size_t rank = rank_v<X>;
  static constexpr const char* name = FusedRelu ? "batch_norm_relu" : "batch_norm";
  static_assert(rank >= 2, "tessera::batch_norm: the input must be [batch, channels, ...]");
  static_assert(rank_v<G> == 1 && rank_v<Bt> == 1, "tessera::batch_norm: gamma and beta must be [channels]");
  static_assert(std::is_floating_point_v<value_type>, "tessera::batch_norm needs floating-point tensors");
  static_assert(std::is_same_v<value_type_t<G>, value_type> && std::is_same_v<value_type_t<Bt>, value_type>,
                "tessera::batch_norm: input, gamma and beta element types differ");
  using State = detail::BatchNormState<value_type, backend_type>;

  X input;
  G gamma;
  Bt beta;
  std::shared_ptr<State> state;

  BatchNorm(X x, G g, Bt b, const RunningStats<value_type, backend_type>& running, const BatchNormOptions& o)
      : input(std::move(x)), gamma(std::move(g)), beta(std::move(b)), state(std::make_shared<State>()) {
    const auto s = input.shape();
    const index_t count = detail::check_batch_norm(s.data(), rank, gamma.shape()[0], beta.shape()[0],
                                                   running.mean.shape()[0], running.var.shape()[0], o);
    const index_t C = s[1];
    // Evaluation's statistics are made when a sweep first needs them (evaluation_statistics): the
    // node is built on every call, and outside a sweep (inference) they are never read.
    if (o.training) {
      state->mean = Tensor<value_type, 1, backend_type>(Shape<1>{C});
      state->invstd = Tensor<value_type, 1, backend_type>(Shape<1>{C});
      state->var = Tensor<value_type, 1, backend_type>(Shape<1>{C});
      state->centring = Tensor<value_type, 0, backend_type>(value_type(1) / value_type(count));
    }
    state->running = running;
    state->options = o;
  }

  /// The same batch norm (same statistics and running state) with relu fused (see FusedRelu).
  BatchNorm(X x, G g, Bt b, std::shared_ptr<State> s)
      : input(std::move(x)), gamma(std::move(g)), beta(std::move(b)), state(std::move(s)) {}
  BatchNorm<X, G, Bt, true> with_relu() const { return {input, gamma, beta, state}; }

  Shape<rank> shape() const { return input.shape(); }

  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    if constexpr (is_plain_conv2d<X>::value) {
      if (!state->options.training && detail::active_cache_epoch() == 0) {
        folded_into_convolution(input, out);
        return;
      }
    }
    const auto x = detail::value_of(input).contiguous();
    const Tensor<value_type, 1, backend_type> g = detail::value_of(gamma).contiguous();
    const Tensor<value_type, 1, backend_type> b = detail::value_of(beta).contiguous();
    auto args = BatchNormForwardArgs::of(x.shape(), state->options.eps, state->options.training);
    args.relu = FusedRelu && has_relu_epilogue<backend_type>::value;
    State& st = *state;
    if (!args.training) use_running_statistics();
    batch_norm_forward(backend_type{}, x.data(), g.data(), b.data(), out.data(), st.mean.data(), st.invstd.data(),
                       st.var.data(), args);
    if constexpr (FusedRelu && !has_relu_epilogue<backend_type>::value) detail::assign_expression(out, tessera::relu(out));
    if (args.training && st.running.mean.size() != 0) {
      const auto m = value_type(st.options.momentum);
      const auto count = value_type(double(args.batch) * double(args.inner));
      // Running variance is the unbiased estimate, as in PyTorch.
      st.running.mean.assign((value_type(1) - m) * st.running.mean + m * st.mean);
      st.running.var.assign((value_type(1) - m) * st.running.var + (m * count / (count - value_type(1))) * st.var);
      if (st.running.batches.size() != 0) st.running.batches.assign(st.running.batches + std::int64_t(1));
    }
  }

  /// Inference after a convolution (folded_into_convolution): writes the value pooled by `pool`
  /// into `out`, the pooling done in the convolution's epilogue (has_conv_pool_epilogue). False,
  /// with nothing written, where that does not apply.
  bool evaluate_pooled(Tensor<value_type, rank, backend_type>& out, const PoolEpilogue& pool) const {
    if constexpr (is_plain_conv2d<X>::value && has_conv_pool_epilogue<backend_type>::value) {
      if (state->options.training || detail::active_cache_epoch() != 0) return false;
      folded_into_convolution(input, out, &pool);
      return true;
    } else {
      return false;
    }
  }

  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(input, f);
    detail::for_each_tensor(gamma, f);
    detail::for_each_tensor(beta, f);
  }
  auto inputs() const { return std::tie(input, gamma, beta); }

 private:
  template <class E>
  struct is_plain_conv2d : std::false_type {};
  template <class CX, class CW, class CB>
  struct is_plain_conv2d<Conv2d<CX, CW, CB, false>> : std::true_type {};

  /// Evaluation: makes the mean, invstd and centring (0) that the forward fills and the backward
  /// reads, once per node (its copies share them), where training's constructor has not. Both the
  /// forward (use_running_statistics) and the backward (input_adjoints, which may be built before
  /// the forward runs: a nested grad) call it, and the forward fills these same tensors in place.
  void evaluation_statistics() const {
    State& st = *state;
    if (st.options.training || st.mean.size() != 0) return;
    const Shape<1> channels{input.shape()[1]};
    st.mean = Tensor<value_type, 1, backend_type>::uninitialized(channels);
    st.invstd = Tensor<value_type, 1, backend_type>::uninitialized(channels);
    st.centring = Tensor<value_type, 0, backend_type>(value_type(0));
  }

  /// Evaluation: the statistics are the running ones, copied so that the backward sees these even
  /// if the running state changes before it runs.
  void use_running_statistics() const {
    State& st = *state;
    evaluation_statistics();
    st.mean.assign(st.running.mean);
    st.invstd.assign(rsqrt(st.running.var + value_type(st.options.eps)));
  }

  /// Evaluation mode after a convolution, outside a sweep (inference): the batch norm is an affine
  /// map per output channel, y = conv * s + shift, so it folds into the convolution: weights
  /// w * s[o] and bias shift = beta - mean * s (+ the convolution's bias * s), s = gamma /
  /// sqrt(running var + eps); relu (when fused) in the convolution's epilogue. One pass writes y,
  /// where the convolution wrote it and the batch norm read and wrote it again. (Inside a sweep the
  /// backward reads the convolution's output, so it is computed as usual.) From the running
  /// statistics directly: outside a sweep no backward reads State's mean and invstd, so they are
  /// not copied (use_running_statistics) for each call. Results differ from the unfolded ones by
  /// rounding only. With `pool`, `out` is the value pooled (evaluate_pooled).
  template <class Conv>
  void folded_into_convolution(const Conv& conv, Tensor<value_type, 4, backend_type>& out,
                               const PoolEpilogue* pool = nullptr) const {
    using Vector = Tensor<value_type, 1, backend_type>;
    const State& st = *state;
    const auto x = detail::contiguous_value<value_type, backend_type>(conv.input);
    const auto w = detail::contiguous_value<value_type, backend_type>(conv.weight);
    const index_t O = w.shape()[0];
    // The convolution of x with `weights` (times a weight_scale, for a backend that takes one).
    auto convolve = [&](const Tensor<value_type, 4, backend_type>& weights, const Vector& shift, auto... weight_scale) {
      if constexpr (has_conv_pool_epilogue<backend_type>::value) {
        if (pool) {
          conv2d_pool_forward(backend_type{}, x, weights, out, conv.shape(), conv.geometry, shift.data(), FusedRelu,
                              *pool, weight_scale...);
          return;
        }
      }
      if constexpr (has_relu_epilogue<backend_type>::value) {
        conv2d_forward(backend_type{}, x, weights, out, conv.geometry, shift.data(), FusedRelu, weight_scale...);
      } else {
        conv2d_forward(backend_type{}, x, weights, out, conv.geometry, shift.data(), weight_scale...);
        if constexpr (FusedRelu) detail::assign_expression(out, tessera::relu(out));
      }
    };
    if constexpr (has_batch_norm_fold<backend_type>::value) {
      auto scale = Vector::uninitialized(Shape<1>{O}), shift = Vector::uninitialized(Shape<1>{O});
      const Vector g = detail::value_of(gamma).contiguous(), b = detail::value_of(beta).contiguous();
      const auto mean = st.running.mean.contiguous(), var = st.running.var.contiguous();
      Vector conv_bias;
      batch_norm_scale_shift(backend_type{}, O, g.data(), b.data(), mean.data(), var.data(), st.options.eps,
                             conv.bias_data(conv_bias), scale.data(), shift.data());
      convolve(w, shift, static_cast<const value_type*>(scale.data()));
    } else {
      const Vector scale(detail::value_of(gamma) * rsqrt(st.running.var + value_type(st.options.eps)));
      Vector shift(detail::value_of(beta) - st.running.mean * scale);
      if constexpr (Conv::has_bias_input) {
        if (conv.use_bias) shift = Vector(detail::value_of(conv.bias) * scale + shift);
      }
      // Each output channel's weights as one row: the product's inner loop runs over a row, not
      // over one kh x kw filter (9 elements, too few for a SIMD packet).
      const index_t K = w.size() / std::max<index_t>(O, 1);
      const Tensor<value_type, 2, backend_type> folded_rows(w.reshape(Shape<2>{O, K}) * reshape(scale, Shape<2>{O, 1}));
      convolve(folded_rows.reshape(w.shape()), shift);
    }
  }

 public:
  template <class Gr>
  auto input_adjoints(const Gr& g) const {
    const auto dy = [&] {
      if constexpr (FusedRelu) {
        // relu's rule from the output (relu(z) > 0 exactly where z > 0), as for conv2d's.
        return sum_to(where(detail::materialize(*this) > value_type(0), g, value_type(0)), shape());
      } else {
        return sum_to(g, shape());
      }
    }();
    const index_t C = input.shape()[1];
    const auto cs = detail::channel_shape<rank>(C);
    const auto mask = detail::all_but_channel_axis<rank>();
    evaluation_statistics();
    const auto invstd = reshape(state->invstd, cs);
    const auto xhat = (input - reshape(state->mean, cs)) * invstd;
    // Built once: every copy of a reduction node shares its buffer, so dx, dgamma and dbeta read
    // the two per-channel sums computed once.
    const auto dbeta = detail::make_reduce<ops::SumReducer, 1>(dy, mask, "sum", false);
    const auto dgamma = detail::make_reduce<ops::SumReducer, 1>(dy * xhat, mask, "sum", false);
    auto dx = (reshape(gamma, cs) * invstd) * (dy - state->centring * (reshape(dbeta, cs) + xhat * reshape(dgamma, cs)));
    if constexpr (has_batch_norm_backward<backend_type>::value) {
      // One backend call (cuDNN's) for all three; the expressions above remain their derivatives.
      using Shared = detail::BatchNormBackwardShared<X, G, decltype(dy)>;
      auto shared = std::make_shared<Shared>(input, gamma, dy, state);
      return std::make_tuple(BatchNormAdjoint<0, Shared, decltype(dx)>(std::move(dx), shared),
                             BatchNormAdjoint<1, Shared, decltype(dgamma)>(dgamma, shared),
                             BatchNormAdjoint<2, Shared, decltype(dbeta)>(dbeta, shared));
    } else {
      return std::make_tuple(std::move(dx), dgamma, dbeta);
    }
  }
};

/// Lazy batch normalization of x [N, C, ...] over every axis but the channel axis (1).
/// `running` may hold empty tensors in training (statistics not tracked); evaluation needs them.
template <class X, class G, class Bt, std::enable_if_t<is_expr_v<X> && is_expr_v<G> && is_expr_v<Bt>, int> = 0>
BatchNorm<X, G, Bt> batch_norm(const X& x, const G& gamma, const Bt& beta,
                               const RunningStats<value_type_t<X>, backend_t<X>>& running = {},
                               const BatchNormOptions& options = {}) {
  return BatchNorm<X, G, Bt>(x, gamma, beta, running, options);
}

/// relu of a batch norm is one node (see BatchNorm's FusedRelu). Found by argument lookup wherever
/// relu(x) is called on one (nn::ReLU after nn::BatchNorm2d).
template <class X, class G, class Bt, bool FusedRelu>
BatchNorm<X, G, Bt, true> relu(const BatchNorm<X, G, Bt, FusedRelu>& b) {
  return b.with_relu();
}

#if TESSERA_OUT_OF_LINE_CORE_DEFINITIONS
TESSERA_OUT_OF_LINE index_t detail::check_batch_norm(const index_t* s, std::size_t rank, index_t gamma_extent,
                                                     index_t beta_extent, index_t running_mean_extent,
                                                     index_t running_var_extent, const BatchNormOptions& o) {
  const auto where = [&] { return "batch_norm: input " + extents_to_string(s, rank); };
  const index_t C = s[1];
  if (gamma_extent != C || beta_extent != C) {
    throw shape_error(where() + ": gamma " + shape_to_string(Shape<1>{gamma_extent}) + " and beta " +
                      shape_to_string(Shape<1>{beta_extent}) + " must have one entry per channel (" +
                      std::to_string(C) + ")");
  }
  const bool tracked = running_mean_extent != 0 || running_var_extent != 0;
  if (tracked && (running_mean_extent != C || running_var_extent != C)) {
    throw shape_error(where() + ": running mean " + shape_to_string(Shape<1>{running_mean_extent}) + " and variance " +
                      shape_to_string(Shape<1>{running_var_extent}) + " must have one entry per channel (" +
                      std::to_string(C) + ")");
  }
  if (!o.training && !tracked) throw value_error(where() + ": evaluation mode needs running statistics");
  if (!(o.eps > 0) || o.momentum < 0 || o.momentum > 1) {
    throw value_error(where() + ": eps must be positive and momentum in [0, 1]");
  }
  index_t count = s[0];
  for (std::size_t i = 2; i < rank; ++i) count *= s[i];
  if (o.training && count <= 1) {
    throw value_error(where() + ": training needs more than one value per channel (got " + std::to_string(count) + ")");
  }
  return count;
}
#endif  // TESSERA_OUT_OF_LINE_CORE_DEFINITIONS

}  // namespace tessera
