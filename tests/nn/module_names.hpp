// The hierarchical names a module reports, as vectors the nn tests compare against.
#pragma once

#include <string>
#include <vector>

#include <tessera/tessera.hpp>

namespace nn_test {

template <class M>
std::vector<std::string> parameter_names(M& m) {
  std::vector<std::string> names;
  tessera::nn::for_each_parameter(m, [&](const std::string& n, const auto&) { names.push_back(n); });
  return names;
}

template <class M>
std::vector<std::string> buffer_names(M& m) {
  std::vector<std::string> names;
  tessera::nn::for_each_buffer(m, [&](const std::string& n, const auto&) { names.push_back(n); });
  return names;
}

}  // namespace nn_test
