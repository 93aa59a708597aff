// libFuzzer target: arbitrary bytes as the body of a TensorFlow Serving predict request (row and
// column forms) for the model of serving_signature.hpp. parse_predict must return or throw the
// ServingError that becomes a 400 response; any other exception, a crash or a bad memory access is
// a bug.
#include <tessera/serve/protocol.hpp>

#include <cstdint>
#include <string_view>

#include "serving_signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera::serve;
  const Signature& signature = fuzz_signature();
  try {
    (void)parse_predict(std::string_view(reinterpret_cast<const char*>(data), size), signature);
  } catch (const ServingError&) {
  }
  return 0;
}
