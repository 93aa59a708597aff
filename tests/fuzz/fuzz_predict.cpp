// libFuzzer target: arbitrary bytes as the body of a TensorFlow Serving predict request (row and
// column forms, named and unnamed inputs, b64 values) for a model with three inputs of different
// types. parse_predict must return or throw the ServingError that becomes a 400 response; any
// other exception, a crash or a bad memory access is a bug.
#include <tessera/serve/protocol.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera::serve;
  static const Signature signature = [] {
    Signature s;
    s.inputs = {{"images", DataType::float32, {-1, 2, 2}}, {"ids", DataType::int64, {-1}}, {"mask", DataType::boolean, {-1, 3}}};
    s.outputs = {{"scores", DataType::float32, {-1, 3}}, {"label", DataType::int32, {-1}}};
    return s;
  }();
  try {
    (void)parse_predict(std::string_view(reinterpret_cast<const char*>(data), size), signature);
  } catch (const ServingError&) {
  }
  return 0;
}
