// libFuzzer target: arbitrary bytes as a safetensors checkpoint. Parsing and loading into a model
// and optimizer must either succeed or throw tessera::io_error -- any other exception, a crash or
// an out-of-bounds read (AddressSanitizer) is a bug.
#include <tessera/tessera.hpp>

#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  static auto model = nn::sequential(nn::Linear<float>(4, 3), nn::BatchNorm1d<float>(3), nn::Linear<float>(3, 2));
  static optim::Adam<float> opt;
  try {
    const auto file = io::SafetensorsFile::parse(std::vector<unsigned char>(data, data + size), "fuzz.safetensors");
    for (const auto& e : file.entries()) {
      if (e.dtype == "F32" && e.shape.size() == 2) (void)file.tensor<float, 2>(e.name);
    }
    io::load_module(file, model, /*strict=*/false);
    io::load_optimizer(file, opt, model);
  } catch (const io_error&) {
  }
  return 0;
}
