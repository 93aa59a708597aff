// The element types a tensor may hold and their printable names.
#pragma once

#include <cstdint>
#include <type_traits>

namespace tessera {

/// True for the element types tessera supports: float, double, int32, int64 (labels) and bool.
template <class T>
inline constexpr bool is_supported_dtype_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, bool>;

/// Short NumPy-style name of an element type ("float32", "int64", ...).
template <class T>
constexpr const char* dtype_name() noexcept {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else return "unknown";
}

}  // namespace tessera
