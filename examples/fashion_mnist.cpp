// The main job: a small CNN (two conv + batch-norm + pooling stages, dropout, two dense layers)
// trained with Adam on Fashion-MNIST from Debian's dataset-fashion-mnist package by train::fit,
// evaluated on the 10,000 test images after every epoch. After every epoch it writes a checkpoint
// (model, optimizer, progress), a CSV log and TensorBoard summaries under the output directory
// (`tensorboard --logdir runs` shows the curves, histograms, sample inputs, the confusion matrix,
// the hyperparameters and the model graph); --resume continues an interrupted run exactly where
// its last checkpoint left it.
//
//   fashion_mnist [--data DIR] [--out DIR] [--epochs N] [--batch B] [--lr X] [--threads T]
//                 [--seed S] [--limit N] [--device cpu|cuda] [--resume | --resume=CHECKPOINT] [--export DIR]
//                 [--export-onnx PATH]
//
//   --out DIR     where checkpoint.safetensors, log.csv and the TensorBoard event file go
//                 (default runs/fashion_mnist)
//   --limit N     train on the first N images only (a quick smoke run)
//   --channels C  width of the first conv layer (the second has 2C); --hidden H: dense units
//   --export DIR  where the trained model is exported for serving, as DIR/<next version>/
//                 (default <out>/export; `--export none` skips it); serve it with
//                 `tessera-serve --model_name fashion --model_base_path DIR`
//   --export-onnx PATH  also write the trained network as an ONNX model (io::export_onnx): inputs
//                 normalized with the training pixels' mean 0.2860 and deviation 0.3530, logits out
//   --device cuda trains on the GPU: the same program compiled by nvcc (target fashion_mnist_cuda,
//                 examples/fashion_mnist_cuda.cu, where it is the default); data stay on the host
//                 and batches are copied
//
// Several processes (data-parallel training, docs/distributed.md): `mpirun -np 2 fashion_mnist`.
// Each process trains a replica on its share of every global batch of --batch images; gradients
// are averaged over the global batch after each step, so the result matches one process. Rank 0
// alone writes the checkpoint, logs, TensorBoard summaries and exports, and prints the result line.
// fashion_mnist_cuda under mpirun takes one GPU per process and sums gradients with NCCL.
//   --threads T   per process; default: the cores divided among the processes on this host
//   --watchdog S  abort the job when a rank waits S seconds for the others (default 300)
//
// Ends with one machine-readable line:
//   {"test_accuracy": 0.9046, "train_seconds": 14.9, "epochs": 2}
#if defined(__CUDACC__)
#include <tessera/cuda.hpp>
#else
#include <tessera/tessera.hpp>
#endif

#if defined(TESSERA_EXAMPLE_DIST)
#include <tessera/dist/dist.hpp>
#endif
#if defined(TESSERA_EXAMPLE_NCCL)
#include <tessera/dist/nccl.hpp>
#endif

#include "fashion_models.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <thread>
#include <string>

namespace {

using namespace tessera;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out = "runs/fashion_mnist";
  int epochs = 2;
  index_t batch = 64;
  double lr = 2e-3;
  int threads = 0;  // 0: all cores
  std::uint64_t seed = 1;
  index_t limit = 0;   // 0: all training images
  // 16 -> 32 channels: about 90.4% in 15 s for 2 epochs on the 2-core machine (scripts/run.sh's
  // build); 32 -> 64 reaches about 90.9% (docs/cpu-performance.md has the times of both widths).
  // Both widths are the same type: --channels only changes extents.
  index_t channels = 16;  // of the first conv; the second has twice as many
  index_t hidden = 128;   // units of the dense layer
  std::string resume;  // checkpoint to continue from ("" : start afresh)
  std::string export_dir;  // the trained model goes to <export_dir>/<next version>/ ("": <out>/export; "none": not)
  std::string export_onnx;  // "": no ONNX file; else the trained network as ONNX
  double watchdog = 300;    // seconds a rank may wait for the others (several processes)
#if defined(__CUDACC__)
  std::string device = "cuda";  // fashion_mnist_cuda: the GPU build
#else
  std::string device = "cpu";
#endif
};

const char* const usage =
    "usage: fashion_mnist [--data DIR] [--out DIR] [--epochs N] [--batch B] [--lr X] [--threads T] [--seed S]\n"
    "                     [--limit N] [--channels C] [--hidden H] [--device cpu|cuda] [--resume | --resume=CHECKPOINT]\n"
    "                     [--export DIR] [--export-onnx PATH] [--watchdog SECONDS]\n"
    "       mpirun -np N fashion_mnist [...]   (data-parallel over N processes)\n";

Options parse(int argc, char** argv) {
  Options o;
  bool resume = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") o.data = value();
    else if (a == "--out") o.out = value();
    else if (a == "--epochs") o.epochs = std::stoi(value());
    else if (a == "--batch") o.batch = std::stol(value());
    else if (a == "--lr") o.lr = std::stod(value());
    else if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--limit") o.limit = std::stol(value());
    else if (a == "--channels") o.channels = std::stol(value());
    else if (a == "--hidden") o.hidden = std::stol(value());
    else if (a == "--device") o.device = value();
    else if (a == "--export") o.export_dir = value();
    else if (a == "--export-onnx") o.export_onnx = value();
    else if (a == "--watchdog") o.watchdog = std::stod(value());
    else if (a == "--resume") resume = true;
    else if (a.rfind("--resume=", 0) == 0) o.resume = a.substr(9);
    else if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown flag " + a + "\n" + usage);
    }
  }
  if (o.epochs < 1 || o.batch < 1 || !(o.lr > 0) || o.limit < 0 || o.channels < 1 || o.hidden < 1 || !(o.watchdog >= 0)) {
    throw std::invalid_argument("epochs, batch, lr, channels and hidden must be positive, --watchdog not negative");
  }
  if (o.device != "cpu" && o.device != "cuda") throw std::invalid_argument("--device must be cpu or cuda, got " + o.device);
  if (resume && o.resume.empty()) o.resume = o.out + "/checkpoint.safetensors";
  if (o.export_dir.empty()) o.export_dir = o.out + "/export";
  if (o.export_dir == "none") o.export_dir.clear();
  return o;
}

/// Images as [N, 1, 28, 28] floats in [0, 1] and labels as int64.
data::TensorDataset<Tensor<float, 4>, Tensor<std::int64_t, 1>> load(const std::string& dir, const std::string& split,
                                                                   index_t limit) {
  const auto images = data::read_idx<float, 3>(dir + "/" + split + "-images-idx3-ubyte.gz");
  const auto labels = data::read_idx<std::int64_t, 1>(dir + "/" + split + "-labels-idx1-ubyte.gz");
  index_t n = images.shape()[0];
  if (limit > 0 && limit < n) n = limit;
  Tensor<float, 4> x = reshape(images.slice(0, 0, n) * (1.0f / 255.0f), Shape<4>{n, 1, images.shape()[1], images.shape()[2]});
  return data::TensorDataset(x, Tensor<std::int64_t, 1>(labels.slice(0, 0, n)));
}

/// conv(1 -> c) + BN + ReLU + pool, conv(c -> 2c) + BN + ReLU + pool, dense(49 * 2c -> hidden) +
/// ReLU + dropout, dense(hidden -> 10). The widths are run-time extents: one type for all of them.
/// B: the backend the model lives on (cpu, or tessera::cuda).
using TrainSet = data::TensorDataset<Tensor<float, 4>, Tensor<std::int64_t, 1>>;

/// Trains and evaluates on backend B, alone or (`dist`) as one rank of several; returns the
/// process's exit status.
template <class B>
int train_on(const Options& o, const TrainSet& train_set, const TrainSet& test_set, train::Distributed* dist) {
  const bool chief = !dist || dist->rank() == 0;  // writes files and prints
  const index_t shards = dist ? dist->world_size() : 1, shard = dist ? dist->rank() : 0;
  {  // everything that holds device memory ends before the return
    manual_seed(o.seed);
    auto model = fashion::cnn<B>(o.channels, o.hidden);
    if (chief) std::cout << nn::summary(model, zeros<float, B>({o.batch, 1, 28, 28}));
    // Each rank its own dropout masks (fit starts every replica from rank 0's weights).
    if (shard > 0) manual_seed(o.seed + 0x9E3779B97F4A7C15ull * std::uint64_t(shard));
    optim::Adam<float, B> opt({.lr = o.lr});

    // Mean and standard deviation of the training pixels.
    const data::Normalize normalize({0.2860}, {0.3530});
    // --batch is the global batch: with several processes each takes its share of every batch.
    data::DataLoader train_loader(train_set, {.batch_size = o.batch, .shuffle = true, .drop_last = false, .seed = o.seed, .prefetch = 2,
                                              .shards = shards, .shard = shard},
                                  normalize);
    data::DataLoader test_loader(test_set, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2,
                                            .shards = shards, .shard = shard},
                                 normalize);
    // The confusion matrix (rank 0) covers the whole test set.
    data::DataLoader full_test_loader(test_set, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2},
                                      normalize);
    // The loaders batch, shuffle and prefetch on the host; these views copy each batch to B as it
    // is read (on the CPU they pass the batches through).
    auto train_batches = data::on_device<B>(train_loader);
    auto test_batches = data::on_device<B>(test_loader);
    auto full_test_batches = data::on_device<B>(full_test_loader);

    // Warm up for 10% of the steps (at most 100), then cosine decay to 0 at the last step.
    const std::int64_t total_steps = std::int64_t(train_loader.size()) * o.epochs;
    optim::CosineWithWarmup cosine(opt, std::min<std::int64_t>(100, total_steps / 10), total_steps);
    train::LearningRateScheduler schedule(cosine, /*per_batch=*/true);

    const auto loss = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };
    train::FitOptions fit_options{.epochs = o.epochs, .initial_epoch = 0, .initial_step = 0, .verbose = 1,
                                  .callbacks = {&schedule}, .distributed = dist};
    // What writes files exists on rank 0 only (the schedule runs on every rank).
    std::optional<train::ModelCheckpoint<decltype(model), decltype(opt)>> checkpoint;
    std::optional<train::CSVLogger> log;
    std::optional<summary::Writer> writer;
    std::optional<train::TensorBoard<decltype(model)>> tensorboard;
    if (chief) {
      io::create_directories(o.out);
      checkpoint.emplace(o.out + "/checkpoint.safetensors", model, opt);
      log.emplace(o.out + "/log.csv", /*append=*/!o.resume.empty());
      writer.emplace(o.out);
      tensorboard.emplace(*writer, model,
                          train::TensorBoardOptions{.update_freq = 10, .histograms = true,
                                                    .hparams = {{"lr", o.lr}, {"batch_size", double(o.batch)}, {"epochs", o.epochs},
                                                                {"channels", double(o.channels)}, {"hidden", double(o.hidden)},
                                                                {"processes", double(shards)}}});
      tensorboard->sample_images(std::get<0>(train_set.tensors()).slice(0, 0, 16));  // pixels in [0, 1]
      // The Graphs tab: the model and its loss, traced from their expression types (nothing runs).
      const auto one_label = zeros<std::int64_t, B>({1});
      writer->graph(io::model_graph(model, zeros<float, B>({1, 1, 28, 28}),
                                    [&](const auto& logits) { return nn::cross_entropy(logits, one_label); }));
      tensorboard->confusion_matrix_on(loss, full_test_batches);
      fit_options.callbacks = {&*tensorboard, &schedule, &*checkpoint, &*log};
    }
    if (!o.resume.empty() && chief) {
      // The schedule was built from the configured learning rate above; the checkpoint restores
      // weights, batch-norm statistics, Adam's moments, the step count and the dropout stream.
      // With several processes rank 0 loads it and fit hands it to the others.
      const io::TrainingProgress p = io::load_checkpoint(o.resume, model, opt);
      fit_options.initial_epoch = int(std::min<std::int64_t>(p.epoch, o.epochs));
      fit_options.initial_step = p.step;
      std::printf("resuming from %s after epoch %ld (step %ld)\n", o.resume.c_str(), long(p.epoch), long(p.step));
    }

    const train::History history = train::fit(model, opt, loss, train_batches, test_batches, fit_options);

    double train_seconds = 0, test_accuracy = 0;
    if (history.epochs.empty()) {
      test_accuracy = train::evaluate(model, loss, full_test_batches).accuracy;  // nothing left to train
    } else {
      for (const double s : history["seconds"]) train_seconds += s;
      test_accuracy = history["val_accuracy"].back();
    }
    if (!chief) return 0;
    if (!o.export_dir.empty()) {
      // For tessera-serve: `tessera-serve --model_name fashion --model_base_path <export_dir>`.
      const std::string version_dir =
          serve::export_model(model, o.export_dir, serve::next_version(o.export_dir), fashion::cnn_signature(),
                              {"fashion_cnn", {{"channels", o.channels}, {"hidden", o.hidden}}});
      std::printf("exported for serving: %s\n", version_dir.c_str());
    }
    if (!o.export_onnx.empty()) {
      // The network itself: inputs normalized as the loader does, logits out (docs/io.md).
      io::export_onnx(model, zeros<float, B>({1, 1, 28, 28}), o.export_onnx);
      std::printf("exported as ONNX: %s\n", o.export_onnx.c_str());
    }
    std::printf("checkpoint: %s/checkpoint.safetensors, log: %s/log.csv, TensorBoard: tensorboard --logdir %s\n",
                o.out.c_str(), o.out.c_str(), io::detail::parent_directory(o.out).c_str());
    std::printf("{\"test_accuracy\": %.4f, \"train_seconds\": %.1f, \"epochs\": %d}\n", test_accuracy, train_seconds, o.epochs);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(TESSERA_EXAMPLE_DIST)
  // Started by mpirun or srun: one rank of a data-parallel job (outside the try, so that an error
  // is printed before the job is aborted).
  std::optional<dist::Environment> mpi;
  std::optional<dist::Communicator> world;
  std::optional<dist::DataParallel> data_parallel;
#endif
#if defined(TESSERA_EXAMPLE_NCCL)
  std::optional<dist::NcclCommunicator> gpus;  // after `world`, so destroyed before it
  std::optional<dist::NcclDataParallel> nccl_data_parallel;
#endif
  try {
    const Options o = parse(argc, argv);
    train::Distributed* dist = nullptr;
    int processes_here = 1;
#if defined(TESSERA_EXAMPLE_DIST)
    if (dist::launched_by_mpi()) {
      mpi.emplace(argc, argv);
      world.emplace(*mpi, o.watchdog);
#if defined(TESSERA_EXAMPLE_NCCL)
      // One GPU per process, by its rank on this host; NCCL sums the gradients where they are.
      const int devices = tessera::cuda::device_count();
      if (devices == 0) throw std::runtime_error("--device cuda: no CUDA device is available here");
      gpus.emplace(*world, mpi->local_rank() % devices, o.watchdog);
      nccl_data_parallel.emplace(*gpus);
      dist = &*nccl_data_parallel;
#else
      data_parallel.emplace(*world);
      dist = &*data_parallel;
#endif
      processes_here = mpi->local_size();
    }
#else
    if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK")) {
      throw std::runtime_error("started by an MPI launcher, but this build has no MPI (tessera::dist): every process "
                               "would train alone");
    }
#endif
    if (o.threads > 0) cpu::set_num_threads(o.threads);
    else if (processes_here > 1) cpu::set_num_threads(std::max(1, int(cpu::num_threads()) / processes_here));
    const auto train_set = load(o.data, "train", o.limit);
    const auto test_set = load(o.data, "t10k", 0);
    if (!dist || dist->rank() == 0) {
      std::printf("Fashion-MNIST: %ld training and %ld test images, %d process(es) of %d thread(s), device %s\n",
                  long(train_set.size()), long(test_set.size()), dist ? dist->world_size() : 1, int(cpu::num_threads()),
                  o.device.c_str());
    }
    // Each build instantiates the training code for one backend only (compiling both into the
    // nvcc build would double its compile time for a path fashion_mnist already has).
#if defined(__CUDACC__)
    if (o.device != "cuda") throw std::invalid_argument("fashion_mnist_cuda trains on the GPU; run fashion_mnist for the CPU");
    if (!tessera::cuda::available()) throw std::runtime_error("--device cuda: no CUDA device is available here");
    return train_on<tessera::cuda>(o, train_set, test_set, dist);
#else
    if (o.device != "cpu") {
      throw std::invalid_argument("--device cuda: this build has no CUDA; run fashion_mnist_cuda (built with TESSERA_CUDA)");
    }
    return train_on<cpu>(o, train_set, test_set, dist);
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
#if defined(TESSERA_EXAMPLE_DIST)
    if (mpi && mpi->world_size() > 1) mpi->abort(1);  // the other ranks may be waiting for this one
#endif
    return 1;
  }
}
