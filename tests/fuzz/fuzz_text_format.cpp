// libFuzzer target: arbitrary bytes as protocol-buffer text format (tessera-serve's
// --model_config_file). parse_text_format must return or throw value_error naming line and column.
#include <tessera/serve/text_format.hpp>

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)tessera::serve::parse_text_format(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.config");
  } catch (const tessera::value_error&) {
  }
  return 0;
}
