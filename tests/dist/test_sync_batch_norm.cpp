// dist::SyncBatchNorm, run by mpirun with 2, 3 and 4 processes (tests/dist/dist.cmake): each rank
// holds a shard of one global batch (uneven when the process count does not divide it), and the
// layer must act as nn::BatchNorm on the whole batch in one process -- outputs, the input's
// gradient, the parameters' gradients summed over ranks, the running statistics -- in training and
// in evaluation.
#include <doctest/doctest.h>

#include <tessera/dist/dist.hpp>
#include <tessera/tessera.hpp>

#include "dist/world.hpp"

using namespace tessera;

using dist_test::world;

namespace {
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  return Tensor<double, 0>(max(abs(a - b)))();
}

/// Rows [begin, end) of this rank's shard of `n` rows: rank r gets the r-th of near-equal parts.
std::pair<index_t, index_t> shard(index_t n, int rank, int size) {
  const index_t base = n / size, extra = n % size;
  const index_t begin = rank * base + std::min<index_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}
}  // namespace

TEST_CASE("SyncBatchNorm2d on shards equals BatchNorm2d on the whole batch: outputs, gradients, running statistics") {
  auto& w = world();
  const index_t N = 7, C = 3;  // 7 rows: uneven on 2, 3 and 4 ranks
  Generator gen(21);
  const auto x = uniform<double>(gen, Shape<4>{N, C, 2, 3}, -2.0, 3.0);
  const auto weights = uniform<double>(gen, Shape<4>{N, C, 2, 3}, -1.0, 1.0);
  const auto [begin, end] = shard(N, w.rank(), w.size());
  const Tensor<double, 4> x_r = x.slice(0, begin, end).clone(), w_r = weights.slice(0, begin, end).clone();

  nn::BatchNorm2d<double> reference(C, {.momentum = 0.3});
  dist::SyncBatchNorm2d<double> sync(C, w, {.momentum = 0.3});
  reference.weight.assign(uniform<double>(gen, Shape<1>{C}, 0.5, 1.5));
  sync.weight.assign(reference.weight);
  sync.bias.assign(full<double>({C}, 0.25));
  reference.bias.assign(full<double>({C}, 0.25));

  auto loss = [](const Tensor<double, 4>& wt) {
    return [wt](const auto& in, const auto& m) { return sum(m(in) * wt); };
  };
  auto [v_ref, g_ref] = value_and_grad(loss(weights), x, reference);
  auto [v_sync, g_sync] = value_and_grad(loss(w_r), x_r, sync);

  Tensor<double, 0> total = v_sync;
  w.allreduce(total, dist::ReduceOp::sum);
  CHECK(total() == doctest::Approx(v_ref()).epsilon(1e-12));
  CHECK(max_abs_diff(std::get<0>(g_sync), std::get<0>(g_ref).slice(0, begin, end)) < 1e-12);
  Tensor<double, 1> dweight = std::get<1>(g_sync).weight, dbias = std::get<1>(g_sync).bias;
  w.allreduce(dweight, dist::ReduceOp::sum);
  w.allreduce(dbias, dist::ReduceOp::sum);
  CHECK(max_abs_diff(dweight, std::get<1>(g_ref).weight) < 1e-11);
  CHECK(max_abs_diff(dbias, std::get<1>(g_ref).bias) < 1e-11);

  // The running statistics came from the global batch (unbiased variance), once per forward pass.
  CHECK(max_abs_diff(sync.running_mean, reference.running_mean) < 1e-13);
  CHECK(max_abs_diff(sync.running_var, reference.running_var) < 1e-13);
  CHECK(sync.num_batches_tracked() == reference.num_batches_tracked());

  // Outside a sweep, in training and in evaluation (running statistics, no communication).
  const Tensor<double, 4> y_ref = reference(x), y_sync = sync(x_r);
  CHECK(max_abs_diff(y_sync, y_ref.slice(0, begin, end)) < 1e-12);
  CHECK(max_abs_diff(sync.running_var, reference.running_var) < 1e-13);
  reference.eval();
  sync.eval();
  const Tensor<double, 4> e_ref = reference(x), e_sync = sync(x_r);
  CHECK(max_abs_diff(e_sync, e_ref.slice(0, begin, end)) < 1e-12);
  auto [v_eval, g_eval] = value_and_grad(loss(w_r), x_r, sync);
  auto [v_eval_ref, g_eval_ref] = value_and_grad(loss(weights), x, reference);
  CHECK(max_abs_diff(std::get<0>(g_eval), std::get<0>(g_eval_ref).slice(0, begin, end)) < 1e-12);
}

TEST_CASE("SyncBatchNorm1d normalizes [N, C] over every rank's rows; names and bad input follow BatchNorm") {
  auto& w = world();
  const index_t N = 9, C = 4;
  Generator gen(22);
  const auto x = uniform<double>(gen, Shape<2>{N, C}, -1.0, 4.0);
  const auto [begin, end] = shard(N, w.rank(), w.size());
  nn::BatchNorm1d<double> reference(C);
  dist::SyncBatchNorm1d<double> sync(C, w);
  const Tensor<double, 2> y_ref = reference(x), y_sync = sync(x.slice(0, begin, end).clone());
  CHECK(max_abs_diff(y_sync, y_ref.slice(0, begin, end)) < 1e-12);

  // The same parameter and buffer names, so checkpoints carry over between the two.
  std::vector<std::string> ref_names, sync_names;
  auto collect = [](std::vector<std::string>& names) { return [&names](const std::string& n, const auto&) { names.push_back(n); }; };
  nn::for_each_parameter(reference, collect(ref_names));
  nn::for_each_buffer(reference, collect(ref_names));
  nn::for_each_parameter(sync, collect(sync_names));
  nn::for_each_buffer(sync, collect(sync_names));
  CHECK(ref_names.size() == 5);
  CHECK(ref_names == sync_names);

  // Checked before any collective, so every rank throws alike.
  const Tensor<double, 2> wrong(Shape<2>{2, C + 1});
  CHECK_THROWS_WITH_AS(sync(wrong), "SyncBatchNorm1d: input of shape [2, 5] has 5 channels, expected 4", shape_error);
  CHECK_THROWS_AS(dist::SyncBatchNorm1d<double>(0, w), value_error);
}
