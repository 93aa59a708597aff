// SyncBatchNorm: batch normalization whose training statistics are those of the global batch, over
// every process of a Communicator (torch.nn.SyncBatchNorm). Needs MPI: link tessera::dist.
//
// In training the per-channel mean and variance are taken over all ranks' samples: each rank sums
// its own, one all-reduce adds the sums (two: the variance is taken around the global mean, as a
// single process does), and the backward pass all-reduces the statistics' cotangents the same way
// -- the adjoint of a sum over ranks is the sum over ranks of the cotangents. Those are the
// `ChannelMeanOverRanks` nodes below; the rest of the layer is the usual expression, differentiated
// from the op rules. Every rank must call the layer (forward and backward) the same number of times,
// as every collective; ranks may hold different numbers of samples. In evaluation the running
// statistics are used and nothing is communicated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/dist/communicator.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/normalization.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/normalization.hpp"

namespace tessera::dist {

namespace detail {

/// The per-channel mean of A ([N, C, ...]) over every rank's elements, kept as [1, C, 1, ...]: the
/// local sums times 1 / (elements per channel on all ranks), all-reduced. With `fixed` set it is
/// that tensor instead (evaluation: the running statistics), a constant for the backward pass, and
/// nothing is communicated.
template <class A>
struct ChannelMeanOverRanks
    : tessera::detail::MaterializedNode<ChannelMeanOverRanks<A>, value_type_t<A>, rank_v<A>, backend_t<A>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = "channel_mean_over_ranks";
  using Value = Tensor<value_type, rank, backend_type>;

  A arg;
  Communicator* comm;
  value_type inv_count;  ///< 1 / (elements per channel, summed over ranks)
  std::optional<Value> fixed;

  ChannelMeanOverRanks(A a, Communicator* c, value_type inv, std::optional<Value> f = std::nullopt)
      : arg(std::move(a)), comm(c), inv_count(inv), fixed(std::move(f)) {}

  Shape<rank> shape() const { return tessera::detail::channel_shape<rank>(arg.shape()[1]); }
  void evaluate_into(Value& out) const {
    if (fixed) {
      out.assign(*fixed);
      return;
    }
    out.assign(tessera::detail::make_reduce<ops::SumReducer, rank>(arg, tessera::detail::all_but_channel_axis<rank>(), "sum",
                                                                  false) *
               inv_count);
    comm->allreduce(out, ReduceOp::sum);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    tessera::detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  /// d arg = (the cotangents of every rank, summed) / count, broadcast over arg: the same node on
  /// the cotangent (already [1, C, 1, ...], so its local sum is itself). Fixed: zero.
  template <class G>
  auto input_adjoints(const G& g) const {
    using Sum = SumTo<G, rank>;
    std::optional<Value> zero;
    if (fixed) zero.emplace(shape());
    ChannelMeanOverRanks<Sum> reduced(Sum(g, shape()), comm, inv_count, std::move(zero));
    return std::make_tuple(BroadcastTo<ChannelMeanOverRanks<Sum>, rank>(std::move(reduced), arg.shape()));
  }
};

}  // namespace detail

/// torch.nn.SyncBatchNorm over inputs of rank MinRank..MaxRank ([N, C], [N, C, L], [N, C, H, W]):
/// an nn::BatchNorm1d/2d (its parameters, buffers, options and state_dict names, so checkpoints
/// carry over) whose training statistics are those of the global batch of `comm`'s ranks. The
/// running variance is the unbiased estimate over the global batch.
template <std::size_t MinRank, std::size_t MaxRank, class T = float, class B = cpu>
struct SyncBatchNorm : nn::BatchNorm<MinRank, MaxRank, T, B> {
  using Base = nn::BatchNorm<MinRank, MaxRank, T, B>;
  static constexpr const char* type_name = MinRank == 4 ? "SyncBatchNorm2d" : "SyncBatchNorm1d";

  SyncBatchNorm(index_t num_features, Communicator& comm, nn::BatchNormLayerOptions o = {})
      : Base(checked(num_features, o), o), comm_(&comm) {}

  /// In training this all-reduces (a collective): every rank calls it together.
  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> >= MinRank && rank_v<X> <= MaxRank,
                  "tessera::dist::SyncBatchNorm: SyncBatchNorm1d takes [N, C] or [N, C, L], SyncBatchNorm2d [N, C, H, W]");
    static_assert(std::is_same_v<value_type_t<X>, T>, "tessera::dist::SyncBatchNorm: input element type differs from the layer's");
    constexpr std::size_t R = rank_v<X>;
    using Stat = Tensor<T, R, B>;
    const Shape<R> s = x.shape();
    const index_t C = this->num_features();
    if (s[1] != C) {
      throw shape_error(std::string(type_name) + ": input of shape " + shape_to_string(s) + " has " +
                        std::to_string(s[1]) + " channels, expected " + std::to_string(C));
    }
    const Shape<R> cs = tessera::detail::channel_shape<R>(C);
    const bool training = this->is_training();
    std::optional<Stat> fixed_mean, fixed_var;
    T inv_count = T(0);
    double count = 0;
    if (training) {
      Tensor<double, 0> n(double(numel(s) / C));
      comm_->allreduce(n, ReduceOp::sum);
      count = n();
      if (count <= 1) {
        throw value_error(std::string(type_name) + ": training needs more than one value per channel over all ranks (got " +
                          std::to_string(std::int64_t(count)) + ")");
      }
      inv_count = T(1.0 / count);
    } else {
      fixed_mean.emplace(this->running_mean.reshape(cs));
      fixed_var.emplace(this->running_var.reshape(cs));
    }
    const detail::ChannelMeanOverRanks<X> mean(x, comm_, inv_count, fixed_mean);
    using Sq = decltype(square(x - mean));
    const detail::ChannelMeanOverRanks<Sq> var(square(x - mean), comm_, inv_count, fixed_var);
    if (training) {
      // Running statistics from the global batch. (Inside a sweep these evaluations fill the nodes'
      // caches, which the expression below then reads: each all-reduce runs once.)
      const Stat m = tessera::detail::materialize(mean);
      const Stat v = tessera::detail::materialize(var);
      // The buffers change in a forward pass, as torch's: through handles that share their storage.
      Tensor<T, 1, B> rm = this->running_mean, rv = this->running_var;
      Tensor<std::int64_t, 0, B> batches = this->num_batches_tracked;
      const T momentum = T(this->options().momentum);
      rm.assign((T(1) - momentum) * rm + momentum * m.reshape(Shape<1>{C}));
      rv.assign((T(1) - momentum) * rv + (momentum * T(count / (count - 1))) * v.reshape(Shape<1>{C}));
      batches.assign(batches + std::int64_t(1));
    }
    return (x - mean) * rsqrt(var + T(this->options().eps)) * reshape(this->weight, cs) + reshape(this->bias, cs);
  }

 private:
  /// The base's checks, with this layer's name in the message (and evaluation's running statistics).
  static index_t checked(index_t num_features, const nn::BatchNormLayerOptions& o) {
    if (num_features <= 0) throw value_error(std::string(type_name) + ": num_features must be positive");
    if (!(o.eps > 0) || o.momentum < 0 || o.momentum > 1) {
      throw value_error(std::string(type_name) + ": eps must be positive and momentum in [0, 1]");
    }
    if (!o.track_running_stats) {
      throw value_error(std::string(type_name) + ": needs running statistics (track_running_stats) for evaluation");
    }
    return num_features;
  }
  Communicator* comm_;
};

/// torch.nn.SyncBatchNorm on [N, C] or [N, C, L] inputs.
template <class T = float, class B = cpu>
using SyncBatchNorm1d = SyncBatchNorm<2, 3, T, B>;
/// torch.nn.SyncBatchNorm on [N, C, H, W] inputs.
template <class T = float, class B = cpu>
using SyncBatchNorm2d = SyncBatchNorm<4, 4, T, B>;

}  // namespace tessera::dist
