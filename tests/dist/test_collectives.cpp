// dist::Communicator's collectives on tensors, run by mpirun with 2, 3 and 4 processes
// (tests/dist/dist.cmake): sum, mean and max all-reduce, broadcast from any root, all-gather,
// barrier, and errors that every rank raises together.
#include <doctest/doctest.h>

#include <tessera/dist/dist.hpp>
#include <tessera/tessera.hpp>

#include "dist/world.hpp"

using namespace tessera;

using dist_test::world;

TEST_CASE("allreduce sums, averages and takes the maximum over ranks, in place") {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  REQUIRE(n >= 2);
  Tensor<float, 2> a = full<float>({2, 3}, float(r + 1));
  a(1, 2) = float(10 * r);
  w.allreduce(a, dist::ReduceOp::sum);
  CHECK(a(0, 0) == doctest::Approx(n * (n + 1) / 2.0));
  CHECK(a(1, 2) == doctest::Approx(10.0 * n * (n - 1) / 2.0));

  Tensor<double, 1> m = full<double>({5}, double(r));
  w.allreduce(m, dist::ReduceOp::mean);
  CHECK(m(4) == doctest::Approx((n - 1) / 2.0));

  Tensor<std::int64_t, 1> x = full<std::int64_t>({3}, std::int64_t(r) * 7);
  w.allreduce(x, dist::ReduceOp::max);
  CHECK(x(0) == std::int64_t(n - 1) * 7);

  // A view shares its storage: the reduction lands in the viewed elements of the base.
  Tensor<float, 2> base = full<float>({4, 2}, 1.0f);
  Tensor<float, 2> rows = base.slice(0, 1, 3);
  w.allreduce(rows, dist::ReduceOp::sum);
  CHECK(base(0, 0) == 1.0f);
  CHECK(base(1, 1) == float(n));
  CHECK(base(3, 0) == 1.0f);
  // A strided view (one column) goes through a contiguous host copy and is written back.
  Tensor<float, 2> column = base.slice(1, 0, 1);
  REQUIRE(!column.is_contiguous());
  w.allreduce(column, dist::ReduceOp::sum);
  CHECK(base(0, 0) == float(n));
  CHECK(base(1, 0) == float(n * n));
  CHECK(base(0, 1) == 1.0f);
}

TEST_CASE("broadcast copies the root's tensor to every rank") {
  auto& w = world();
  const int root = w.size() - 1;
  Tensor<float, 1> t = full<float>({4}, float(w.rank()));
  w.broadcast(t, root);
  CHECK(t(3) == float(root));
  CHECK_THROWS_AS(w.broadcast(t, w.size()), value_error);
}

TEST_CASE("allgather concatenates every rank's tensor in rank order") {
  auto& w = world();
  const Tensor<std::int64_t, 2> mine = {{w.rank(), 10 * w.rank()}};
  const Tensor<std::int64_t, 2> all = w.allgather(mine);
  REQUIRE(all.shape() == Shape<2>{w.size(), 2});
  for (int r = 0; r < w.size(); ++r) {
    CHECK(all(r, 0) == r);
    CHECK(all(r, 1) == 10 * r);
  }
  w.barrier();
}

TEST_CASE("tensors of different shapes on different ranks are an error on every rank, not a hang") {
  auto& w = world();
  Tensor<float, 1> t = zeros<float>({w.rank() == 1 ? 3 : 2});
  CHECK_THROWS_WITH_AS(w.allreduce(t), doctest::Contains("differ in shape between ranks"), dist::dist_error);
  CHECK_THROWS_AS(w.allgather(t), dist::dist_error);
  // The communicator is still usable afterwards.
  Tensor<float, 1> ok = ones<float>({2});
  w.allreduce(ok);
  CHECK(ok(0) == float(w.size()));
}

TEST_CASE("DataParallel refuses ranks whose models differ") {
  auto& w = world();
  dist::DataParallel dp(w);
  std::vector<float> g(w.rank() == 0 ? 4 : 5, 1.0f);
  const std::vector<train::Buffer> grads{{g.data(), g.size(), train::Buffer::Kind::float32, "weight"}};
  CHECK_THROWS_WITH_AS(dp.sum_gradients(grads, 0), doctest::Contains("differ between ranks"), dist::dist_error);
}

TEST_CASE("DataParallel refuses buffers in device memory (MPI is given host memory)") {
  auto& w = world();
  dist::DataParallel dp(w);
  CHECK_FALSE(dp.takes_device_memory());
  std::vector<float> g(4, 1.0f);
  const std::vector<train::Buffer> grads{
      {g.data(), g.size(), train::Buffer::Kind::float32, "weight", false, train::Buffer::Memory::device}};
  CHECK_THROWS_WITH_AS(dp.sum_gradients(grads, 0), doctest::Contains("weight is in device memory"), value_error);
  CHECK_THROWS_WITH_AS(dp.broadcast(grads), doctest::Contains("use dist::NcclDataParallel"), value_error);
  // The communicator is still usable afterwards (every rank refused before any collective).
  Tensor<float, 1> ok = ones<float>({2});
  w.allreduce(ok);
  CHECK(ok(0) == float(w.size()));
}

TEST_CASE("DataParallel counts the global batch and sums gradients, packed and in place") {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  CHECK(dist::DataParallel(w).global_samples(r + 1, 0) == doctest::Approx(n * (n + 1) / 2.0));
  // Gradients of 40 bytes and more are reduced in place, smaller ones packed 24 bytes at most to
  // a bucket: the 10 float gradients below need both kinds, and the doubles a bucket of their own type.
  dist::DataParallel dp(w, {.bucket_bytes = 24, .pack_below_bytes = 40});
  std::vector<std::vector<float>> g;
  std::vector<train::Buffer> views;
  for (int k = 0; k < 10; ++k) g.emplace_back(std::size_t(k == 3 ? 40 : k + 1), float(r + 1) * float(k + 1));
  for (int k = 0; k < 10; ++k)
    views.push_back({g[k].data(), g[k].size(), train::Buffer::Kind::float32, "g" + std::to_string(k)});
  std::vector<double> d(3, double(r));
  views.push_back({d.data(), d.size(), train::Buffer::Kind::float64, "double"});
  dp.sum_gradients(views, 7);
  CHECK(dp.packed_buckets() >= 3);
  CHECK(dp.buckets() > dp.packed_buckets());
  const double ranks = n * (n + 1) / 2.0;  // sum of r + 1
  for (int k = 0; k < 10; ++k) {
    CHECK(g[k].front() == doctest::Approx(ranks * (k + 1)));
    CHECK(g[k].back() == doctest::Approx(ranks * (k + 1)));
  }
  CHECK(d[2] == doctest::Approx(n * (n - 1) / 2.0));
  // The same layout again reuses the plan.
  const std::size_t buckets = dp.buckets();
  dp.sum_gradients(views, 8);
  CHECK(dp.buckets() == buckets);
  CHECK(g[9].back() == doctest::Approx(ranks * n * 10));
}

TEST_CASE("DataParallel sums runs of joined gradients in place, one call per run") {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  // Six float gradients laid out as a GradientArena lays them out: slots of 16 floats (64 bytes)
  // with zeros after each gradient, joined one to the next; then a double gradient on its own.
  const std::size_t sizes[6] = {3, 16, 5, 20, 1, 7};
  std::vector<float> arena(128, 0.0f);
  std::vector<train::Buffer> views;
  std::size_t offset = 0;
  for (int k = 0; k < 6; ++k) {
    for (std::size_t i = 0; i < sizes[k]; ++i) arena[offset + i] = float(r + 1) * float(k + 1);
    views.push_back({arena.data() + offset, sizes[k], train::Buffer::Kind::float32, "g" + std::to_string(k), k < 5});
    offset += (sizes[k] + 15) / 16 * 16;
  }
  std::vector<double> d(3, double(r));
  views.push_back({d.data(), d.size(), train::Buffer::Kind::float64, "double"});
  const double ranks = n * (n + 1) / 2.0;  // sum of r + 1

  dist::DataParallel dp(w);
  dp.sum_gradients(views, 0);
  CHECK(dp.buckets() == 2);  // the run, and the double alone
  CHECK(dp.packed_buckets() == 1);
  for (int k = 0; k < 6; ++k) {
    const float* g = static_cast<const float*>(views[std::size_t(k)].data);
    CHECK(g[0] == doctest::Approx(ranks * (k + 1)));
    CHECK(g[sizes[k] - 1] == doctest::Approx(ranks * (k + 1)));
    if (sizes[k] % 16 != 0) CHECK(g[sizes[k]] == 0.0f);  // the padding stays zero
  }
  CHECK(d[0] == doctest::Approx(n * (n - 1) / 2.0));

  // A run longer than bucket_bytes is split into runs that fit (from the end: g5..g3 take 224
  // bytes with their padding, g2..g0 192).
  dist::DataParallel small(w, {.bucket_bytes = 240, .pack_below_bytes = 64});
  small.sum_gradients(views, 1);
  CHECK(small.buckets() == 3);
  CHECK(small.packed_buckets() == 1);
  CHECK(static_cast<const float*>(views[0].data)[0] == doctest::Approx(ranks * n));
  CHECK(static_cast<const float*>(views[5].data)[6] == doctest::Approx(ranks * n * 6));

  // Marked joined but 96 floats apart, or of two element types: an error, on every rank alike.
  // (Closer than 64 bytes the mark cannot be checked: the caller vouches for it.)
  std::vector<float> far(104, 1.0f);
  const std::vector<train::Buffer> apart{{far.data(), 4, train::Buffer::Kind::float32, "a", true},
                                         {far.data() + 100, 4, train::Buffer::Kind::float32, "b"}};
  CHECK_THROWS_WITH_AS(dp.sum_gradients(apart, 2), doctest::Contains("not adjacent"), value_error);
  std::vector<double> mixed(4, 1.0);
  const std::vector<train::Buffer> types{{mixed.data(), 2, train::Buffer::Kind::float64, "d", true},
                                         {mixed.data() + 2, 4, train::Buffer::Kind::float32, "f"}};
  CHECK_THROWS_WITH_AS(dp.sum_gradients(types, 3), doctest::Contains("not adjacent"), value_error);
}
