// Helpers the core tests share: element reads by hand through shape() and strides() (no library
// evaluation), shape strings, and doctest printing of std::vector.
#pragma once

#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <array>
#include <sstream>
#include <string>
#include <vector>

namespace doctest {
template <class T>
struct StringMaker<std::vector<T>> {
  static String convert(const std::vector<T>& v) {
    std::ostringstream os;
    os.precision(17);
    os << '{';
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << static_cast<T>(v[i]);
    os << '}';
    return os.str().c_str();
  }
};
}  // namespace doctest

namespace core_test {

/// Elements in row-major order, read through shape() and strides() by hand (no library evaluation).
template <class T, std::size_t R>
std::vector<T> elements(const tessera::Tensor<T, R>& t) {
  std::vector<T> out;
  if (t.size() == 0) return out;
  std::array<tessera::index_t, R> idx{};
  for (tessera::index_t n = 0; n < t.size(); ++n) {
    tessera::index_t off = 0;
    for (std::size_t k = 0; k < R; ++k) off += idx[k] * t.strides()[k];
    out.push_back(t.data()[off]);
    for (std::size_t k = R; k-- > 0;) {
      if (++idx[k] < t.shape()[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

template <class T, std::size_t R>
std::string shape_of(const tessera::Tensor<T, R>& t) {
  return tessera::shape_to_string(t.shape());
}
template <class T, std::size_t R>
std::string strides_of(const tessera::Tensor<T, R>& t) {
  return tessera::shape_to_string(t.strides());
}

}  // namespace core_test
