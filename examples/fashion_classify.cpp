// A small inference program: classifies Fashion-MNIST images with a model exported for serving
// (the main job's runs/fashion_mnist/export/<version>/, or mlp_fashion's), reading IDX files or
// PNG images. It links no server and no HTTP: only the model types, the weights reader and the
// image readers, so it builds as one static binary for x86-64 or aarch64
// (scripts/static-classify.sh, which also reports its size).
//
//   fashion_classify VERSION_DIR --idx IMAGES.gz [--labels LABELS.gz] [--limit N]
//   fashion_classify VERSION_DIR IMAGE.png...      (28x28, light garment on a dark ground)
//
// Prints one line per image (index or file, class, probability), and with --labels the accuracy.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "fashion_models.hpp"

using namespace tessera;

namespace {

const char* const classes[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/// Pixels in [0, 1], [N, 28, 28] -> the signature's input ([N, 1, 28, 28] or [N, 784]).
serve::HostTensor as_input(const std::vector<float>& pixels, std::int64_t n, const serve::TensorSpec& spec) {
  std::vector<std::int64_t> shape{n, 1, 28, 28};
  if (spec.shape.size() == 2) shape = {n, 784};
  serve::HostTensor t(serve::DataType::float32, shape);
  std::copy(pixels.begin(), pixels.end(), t.data<float>());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr,
                   "usage: fashion_classify VERSION_DIR --idx IMAGES.gz [--labels LABELS.gz] [--limit N]\n"
                   "       fashion_classify VERSION_DIR IMAGE.png...\n");
      return 2;
    }
    serve::ModelRegistry registry;
    fashion::register_models(registry);
    serve::Manifest manifest;
    const auto model = serve::detail::load_servable(registry, argv[1], manifest);
    std::string idx, labels_path;
    std::vector<std::string> pngs;
    index_t limit = 0;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--idx" && i + 1 < argc) idx = argv[++i];
      else if (a == "--labels" && i + 1 < argc) labels_path = argv[++i];
      else if (a == "--limit" && i + 1 < argc) limit = std::stol(argv[++i]);
      else pngs.push_back(a);
    }
    std::vector<float> pixels;
    std::vector<std::string> names;
    if (!idx.empty()) {
      const auto images = data::read_idx<float, 3>(idx);
      index_t n = images.shape()[0];
      if (limit > 0 && limit < n) n = limit;
      if (images.shape()[1] != 28 || images.shape()[2] != 28) throw value_error(idx + ": the images are not 28x28");
      const Tensor<float, 3> scaled = images.slice(0, 0, n) * (1.0f / 255.0f);
      pixels.assign(scaled.data(), scaled.data() + scaled.size());
      for (index_t k = 0; k < n; ++k) names.push_back(std::to_string(k));
    }
    for (const auto& path : pngs) {
      const io::GrayImage g = io::read_png_gray(path);
      if (g.width != 28 || g.height != 28) {
        throw value_error(path + ": " + std::to_string(g.width) + "x" + std::to_string(g.height) + ", expected 28x28");
      }
      for (auto p : g.pixels) pixels.push_back(float(p) / 255.0f);
      names.push_back(path);
    }
    if (names.empty()) throw value_error("no images: give --idx FILE or PNG files");
    const std::int64_t n = std::int64_t(names.size());
    const auto out = model->run({as_input(pixels, n, manifest.signature.inputs[0])});
    const float* p = out[0].data<float>();
    std::vector<int> predicted;
    for (std::int64_t k = 0; k < n; ++k) {
      int best = 0;
      for (int c = 1; c < 10; ++c) {
        if (p[k * 10 + c] > p[k * 10 + best]) best = c;
      }
      predicted.push_back(best);
      if (n <= 20 || k < 10) std::printf("%s: %s (%.3f)\n", names[std::size_t(k)].c_str(), classes[best], double(p[k * 10 + best]));
    }
    if (!labels_path.empty()) {
      const auto labels = data::read_idx<std::int64_t, 1>(labels_path);
      if (labels.shape()[0] < n) throw value_error(labels_path + ": fewer labels than images");
      std::int64_t right = 0;
      for (std::int64_t k = 0; k < n; ++k) right += labels(index_t(k)) == predicted[std::size_t(k)];
      std::printf("accuracy: %.4f on %lld images\n", double(right) / double(n), static_cast<long long>(n));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_classify: %s\n", e.what());
    return 1;
  }
}
