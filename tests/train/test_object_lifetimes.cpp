// Objects whose running parts point back at them -- a thread started with `this`, a handle closed
// by the destructor -- must not be copied or moved by accident: a copy would close the handle
// twice, a moved-from object would leave its thread pointing at the old address. The audit of
// every such type, as compile-time facts (each line says why), and the runtime behaviour of the
// ones that may move. (Also: Tape copies in autodiff/test_tape.cpp, an early-left DataLoader epoch
// in data/test_loader.cpp, dist::Communicator and serve::Server in their own tests.)
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <type_traits>

using namespace tessera;

namespace {
template <class T>
constexpr bool pinned_v = !std::is_copy_constructible_v<T> && !std::is_move_constructible_v<T> &&
                          !std::is_copy_assignable_v<T> && !std::is_move_assignable_v<T>;
template <class T>
constexpr bool move_only_v = !std::is_copy_constructible_v<T> && std::is_move_constructible_v<T> &&
                             !std::is_copy_assignable_v<T> && std::is_move_assignable_v<T>;

using Dataset = data::TensorDataset<Tensor<float, 2>, Tensor<std::int64_t, 1>>;
using Model = decltype(nn::sequential(nn::Linear<float>(2, 2)));
}  // namespace

// An epoch's prefetch thread reads its loader (and the loader its dataset, by reference).
static_assert(pinned_v<data::DataLoader<Dataset>>);
// The background flush thread is started with the writer's address.
static_assert(pinned_v<io::EventFileWriter>);
// summary::Writer holds its EventFileWriter on the heap: moving hands the pointer over and the
// flush thread keeps its address (test_summary.cpp writes through a moved writer).
static_assert(move_only_v<summary::Writer>);
// Own an OS handle (a file descriptor, a gzip stream) that the destructor closes.
static_assert(pinned_v<io::detail::FileDescriptor>);
static_assert(pinned_v<data::detail::GzReader>);
// The tape's recorded steps get the tape's adjoints as an argument, so copies are independent.
static_assert(std::is_copy_constructible_v<Tape> && std::is_move_constructible_v<Tape>);
// Callbacks that refer to a model and an optimizer by reference may be copied: the copy refers to
// the same ones (as the learning-rate schedules refer to their optimizer).
static_assert(std::is_copy_constructible_v<train::ModelCheckpoint<Model, optim::SGD<float>>>);
static_assert(std::is_copy_constructible_v<optim::StepLR<optim::SGD<float>>>);

TEST_CASE("an optimizer copy shares nothing it will write: its state is made on first use, per copy") {
  // Tensors are shared handles (as in PyTorch), so a copy of a *stepped* optimizer would share its
  // moment buffers; a copy made before the first step, the usual case, starts its own.
  Generator gen(1);
  auto model_a = nn::sequential(nn::Linear<float>(2, 2, {.bias = true, .generator = &gen}));
  Generator gen_b(1);
  auto model_b = nn::sequential(nn::Linear<float>(2, 2, {.bias = true, .generator = &gen_b}));
  auto grads = nn::sequential(nn::Linear<float>(2, 2));
  optim::Adam<float> a({.lr = 0.1});
  optim::Adam<float> b = a;
  a.step(model_a, grads);
  a.step(model_a, grads);
  b.step(model_b, grads);
  b.step(model_b, grads);
  // Had b shared a's moments, its two steps would have seen a's and differed.
  std::vector<float> pa, pb;
  nn::for_each_parameter(model_a, [&](const std::string&, const auto& t) { pa.insert(pa.end(), t.data(), t.data() + t.size()); });
  nn::for_each_parameter(model_b, [&](const std::string&, const auto& t) { pb.insert(pb.end(), t.data(), t.data() + t.size()); });
  CHECK(pa == pb);
}
