// libFuzzer target: arbitrary bytes as an open-inference-protocol (KServe v2, Triton) infer request,
// with or without the binary tensor extension. The first input byte chooses: odd means an
// Inference-Header-Content-Length taken from the next two bytes (little-endian); the rest is the
// body. The model is that of serving_signature.hpp. parse_infer must return or throw the
// ServingError that becomes a 400 response.
#include <tessera/serve/protocol.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

#include "serving_signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera::serve;
  const Signature& signature = fuzz_signature();
  if (size < 3) return 0;
  std::optional<std::size_t> json_length;
  if (data[0] & 1) json_length = std::size_t(data[1]) | std::size_t(data[2]) << 8;
  try {
    (void)parse_infer(std::string_view(reinterpret_cast<const char*>(data + 3), size - 3), json_length, signature);
  } catch (const ServingError&) {
  }
  return 0;
}
