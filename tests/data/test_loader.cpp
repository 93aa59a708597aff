// TensorDataset, DataLoader (batching, seeded shuffling, drop_last, prefetching, early exit,
// errors from the producer) and the image transforms.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <vector>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

namespace {
/// Samples 0..n-1: x[i] = [i, i + 0.5], y[i] = i.
auto numbered(index_t n) {
  Tensor<float, 2> x(Shape<2>{n, 2});
  Tensor<std::int64_t, 1> y(Shape<1>{n});
  for (index_t i = 0; i < n; ++i) {
    x(i, 0) = float(i);
    x(i, 1) = float(i) + 0.5f;
    y(i) = i;
  }
  return data::TensorDataset(x, y);
}
template <class Loader>
std::vector<std::vector<std::int64_t>> epoch_labels(Loader& loader) {
  std::vector<std::vector<std::int64_t>> out;
  for (auto& [x, y] : loader) {
    std::vector<std::int64_t> b;
    for (index_t i = 0; i < y.size(); ++i) {
      CHECK(x(i, 0) == float(y(i)));  // inputs and labels stay paired
      b.push_back(y(i));
    }
    out.push_back(b);
  }
  return out;
}
}  // namespace

TEST_CASE("TensorDataset gathers rows, slices without copying, rejects bad input") {
  auto ds = numbered(10);
  CHECK(ds.size() == 10);
  auto [x, y] = ds.batch({7, 2});
  CHECK(x.shape() == Shape<2>{2, 2});
  CHECK(x(0, 1) == 7.5f);
  CHECK(y(1) == 2);
  auto part = ds.slice(3, 6);
  CHECK(part.size() == 3);
  CHECK(std::get<1>(part.batch({0}))(0) == 3);
  CHECK_THROWS_AS(ds.batch({10}), index_error);
  CHECK_THROWS_AS(ds.slice(4, 11), index_error);
  CHECK_THROWS_AS(data::TensorDataset(zeros<float>({3, 2}), zeros<float>({4})), shape_error);
}

TEST_CASE("DataLoader: in order without shuffling; the last batch kept or dropped") {
  auto ds = numbered(10);
  data::DataLoader keep(ds, {.batch_size = 4});
  CHECK(keep.size() == 3);
  CHECK(epoch_labels(keep) == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
  data::DataLoader drop(ds, {.batch_size = 4, .shuffle = false, .drop_last = true});
  CHECK(drop.size() == 2);
  CHECK(epoch_labels(drop).size() == 2);
  data::DataLoader inline_loader(ds, {.batch_size = 3, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 0});
  CHECK(epoch_labels(inline_loader).size() == 4);
  CHECK_THROWS_AS(data::DataLoader(ds, {.batch_size = 0}), value_error);
}

TEST_CASE("DataLoader shuffling: a permutation per epoch, different across epochs, reproducible by seed") {
  auto ds = numbered(100);
  data::LoaderOptions o{.batch_size = 16, .shuffle = true, .drop_last = false, .seed = 5, .prefetch = 3};
  data::DataLoader a(ds, o), b(ds, o);
  const auto a0 = epoch_labels(a), a1 = epoch_labels(a);
  const auto b0 = epoch_labels(b);
  CHECK(a0 == b0);  // same seed, same epoch, same order (prefetching does not matter)
  CHECK(a0 != a1);  // a new order each epoch
  std::vector<std::int64_t> all;
  for (const auto& batch : a1) all.insert(all.end(), batch.begin(), batch.end());
  std::sort(all.begin(), all.end());
  std::vector<std::int64_t> expected(100);
  for (int i = 0; i < 100; ++i) expected[std::size_t(i)] = i;
  CHECK(all == expected);
  o.seed = 6;
  data::DataLoader c(ds, o);
  CHECK(epoch_labels(c) != a0);
  CHECK(a.epochs_started() == 2);
}

TEST_CASE("DataLoader sharding: the shards of each global batch together are that batch; the tail split, padded or dropped") {
  auto ds = numbered(47);
  for (const index_t shards : {1, 2, 3, 4}) {
    data::LoaderOptions whole_options{.batch_size = 11, .shuffle = true, .drop_last = false, .seed = 8};
    data::DataLoader whole(ds, whole_options);
    whole.set_epoch(2);
    const auto expected = epoch_labels(whole);  // 4 batches of 11, then 3
    std::vector<std::vector<std::vector<std::int64_t>>> parts;
    for (index_t r = 0; r < shards; ++r) {
      data::LoaderOptions o = whole_options;
      o.shards = shards;
      o.shard = r;
      data::DataLoader shard(ds, o);
      CHECK(shard.size() == whole.size());
      shard.set_epoch(2);
      parts.push_back(epoch_labels(shard));
    }
    for (std::size_t k = 0; k < expected.size(); ++k) {
      std::vector<std::int64_t> joined;
      for (index_t r = 0; r < shards; ++r) {
        const auto& b = parts[std::size_t(r)].at(k);
        // Position i of the global batch goes to shard i % shards: sizes differ by at most one.
        CHECK(index_t(b.size()) >= index_t(expected[k].size()) / shards);
        CHECK(index_t(b.size()) <= (index_t(std::max(expected[k].size(), std::size_t(shards))) + shards - 1) / shards);
        joined.insert(joined.end(), b.begin(), b.end());
      }
      std::vector<std::int64_t> want = expected[k];
      // A tail shorter than the number of shards (3 samples, 4 shards) is padded to one each.
      for (std::size_t i = 0; want.size() < std::size_t(shards); ++i) want.push_back(expected[0][i]);
      std::sort(joined.begin(), joined.end());
      std::sort(want.begin(), want.end());
      CHECK(joined == want);
    }
  }
  // pad_last fills the tail to a full global batch from the epoch's first samples; drop_last drops it.
  data::DataLoader padded(ds, {.batch_size = 11, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2, .shards = 2,
                               .shard = 1, .pad_last = true});
  const auto p = epoch_labels(padded);
  REQUIRE(p.size() == 5);
  CHECK(p[4] == std::vector<std::int64_t>{45, 0, 2, 4, 6});  // the tail 44, 45, 46 then 0, 1, ..., 7: odd positions
  data::DataLoader dropped(ds, {.batch_size = 11, .shuffle = false, .drop_last = true, .seed = 0, .prefetch = 2, .shards = 3,
                                .shard = 0});
  CHECK(epoch_labels(dropped).size() == 4);
  CHECK_THROWS_AS(data::DataLoader(ds, {.batch_size = 2, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2,
                                        .shards = 3, .shard = 0}),
                  value_error);
  CHECK_THROWS_AS(data::DataLoader(ds, {.batch_size = 8, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2,
                                        .shards = 3, .shard = 3}),
                  value_error);
}

TEST_CASE("DataLoader: leaving an epoch early stops its producer; producer errors reach the loop") {
  auto ds = numbered(1000);
  data::DataLoader loader(ds, {.batch_size = 10, .shuffle = true, .drop_last = false, .seed = 1, .prefetch = 4});
  int n = 0;
  for (auto& batch : loader) {
    (void)batch;
    if (++n == 3) break;  // the destructor must join the prefetching thread, not hang
  }
  CHECK(n == 3);
  CHECK(epoch_labels(loader).size() == 100);  // the next epoch is complete

  auto failing = [](auto& batch, Generator&) {
    if (std::get<1>(batch)(0) >= 20) throw std::runtime_error("transform failed on purpose");
  };
  data::DataLoader bad(ds, {.batch_size = 10, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2}, failing);
  int good = 0;
  CHECK_THROWS_WITH([&] {
    for (auto& batch : bad) {
      (void)batch;
      ++good;
    }
  }(), "transform failed on purpose");
  CHECK(good == 2);  // batches prepared before the failure arrive first
}

TEST_CASE("on_device: the wrapped loader's batches, epochs and size (here onto the CPU itself)") {
  const auto ds = numbered(10);
  data::DataLoader plain(ds, {.batch_size = 4, .shuffle = true, .drop_last = false, .seed = 3, .prefetch = 1});
  data::DataLoader wrapped_source(ds, {.batch_size = 4, .shuffle = true, .drop_last = false, .seed = 3, .prefetch = 1});
  auto wrapped = data::on_device<cpu>(wrapped_source);
  static_assert(std::is_same_v<decltype(wrapped)::Batch, std::tuple<Tensor<float, 2>, Tensor<std::int64_t, 1>>>);
  CHECK(wrapped.size() == 3);
  CHECK(epoch_labels(wrapped) == epoch_labels(plain));
  CHECK(epoch_labels(wrapped) == epoch_labels(plain));  // the second epoch reshuffles alike
  wrapped.set_epoch(0);  // forwarded: epoch 0's order again
  plain.set_epoch(0);
  CHECK(epoch_labels(wrapped) == epoch_labels(plain));
  int batches = 0;
  for (auto it = wrapped.begin(); it != wrapped.end(); ++it) {
    if (++batches == 2) break;  // leaving early ends the wrapped loader's epoch
  }
  CHECK(batches == 2);
}

TEST_CASE("image transforms: normalize, random crop with padding, horizontal flip; seeded per batch") {
  Tensor<float, 4> x(Shape<4>{2, 1, 3, 3});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 9 + 1);
  data::TensorDataset ds(x, Tensor<std::int64_t, 1>{0, 1});
  Generator gen(0);

  auto batch = ds.batch({0, 1});
  data::Normalize({1.0}, {2.0})(batch, gen);
  CHECK(std::get<0>(batch)(0, 0, 0, 0) == 0.0f);
  CHECK(std::get<0>(batch)(1, 0, 2, 2) == 4.0f);
  CHECK_THROWS_AS(data::Normalize({0.5, 0.5}, {1.0}), value_error);

  auto flipped = ds.batch({0, 1});
  data::RandomHorizontalFlip(1.0)(flipped, gen);
  CHECK(std::get<0>(flipped)(0, 0, 0, 0) == 3.0f);
  CHECK(std::get<0>(flipped)(0, 0, 0, 2) == 1.0f);
  auto kept = ds.batch({0, 1});
  data::RandomHorizontalFlip(0.0)(kept, gen);
  CHECK_TENSOR_EQ(std::get<0>(kept), x);

  // A crop with padding 1 shifts each image by at most one pixel, filling with zeros; the sum of
  // the kept pixels is at most the original's and every value comes from the original.
  int shifted = 0;
  for (int trial = 0; trial < 20; ++trial) {
    auto cropped = ds.batch({0});
    data::RandomCrop(1)(cropped, gen);
    const auto& c = std::get<0>(cropped);
    CHECK(Tensor<float, 0>(sum(c))() <= 45.0f);
    if (c(0, 0, 1, 1) != 5.0f) ++shifted;
    for (index_t i = 0; i < c.size(); ++i) CHECK((c.data()[i] >= 0.0f && c.data()[i] <= 9.0f));
  }
  CHECK(shifted > 0);

  // In a loader, transforms see a generator that depends on (seed, epoch, batch) only.
  auto t = data::compose(data::RandomCrop(1), data::RandomHorizontalFlip());
  data::DataLoader l1(ds, {.batch_size = 1, .shuffle = false, .drop_last = false, .seed = 3, .prefetch = 2}, t);
  data::DataLoader l2(ds, {.batch_size = 1, .shuffle = false, .drop_last = false, .seed = 3, .prefetch = 0}, t);
  std::vector<Tensor<float, 4>> r1, r2;
  for (auto& b : l1) r1.push_back(std::get<0>(b));
  for (auto& b : l2) r2.push_back(std::get<0>(b));
  REQUIRE(r1.size() == 2);
  CHECK_TENSOR_EQ(r1[0], r2[0]);
  CHECK_TENSOR_EQ(r1[1], r2[1]);
}
