// libFuzzer target: arbitrary bytes as an open-inference-protocol (KServe v2, Triton) infer request,
// with or without the binary tensor extension. The first input byte chooses: odd means an
// Inference-Header-Content-Length taken from the next two bytes (little-endian); the rest is the
// body. parse_infer must return or throw the ServingError that becomes a 400 response.
#include <tessera/serve/protocol.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera::serve;
  static const Signature signature = [] {
    Signature s;
    s.inputs = {{"images", DataType::float32, {-1, 2, 2}}, {"ids", DataType::int64, {-1}}, {"mask", DataType::boolean, {-1, 3}}};
    s.outputs = {{"scores", DataType::float32, {-1, 3}}, {"label", DataType::int32, {-1}}};
    return s;
  }();
  if (size < 3) return 0;
  std::optional<std::size_t> json_length;
  if (data[0] & 1) json_length = std::size_t(data[1]) | std::size_t(data[2]) << 8;
  try {
    (void)parse_infer(std::string_view(reinterpret_cast<const char*>(data + 3), size - 3), json_length, signature);
  } catch (const ServingError&) {
  }
  return 0;
}
