// libFuzzer target: arbitrary bytes as a CSV file. parse_csv must return or throw io_error.
#include <tessera/tessera.hpp>

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)data::parse_csv<float, std::int64_t>(text, "fuzz.csv");
  } catch (const io_error&) {
  }
  try {
    (void)data::parse_csv<double, double>(text, "fuzz.csv", {.header = false, .delimiter = ';', .label = "", .label_index = 0});
  } catch (const io_error&) {
  }
  return 0;
}
