// The model the serving-request fuzz targets parse for: three inputs of different types (one of
// them boolean), two outputs.
#pragma once

#include <tessera/serve/signature.hpp>

inline const tessera::serve::Signature& fuzz_signature() {
  using tessera::serve::DataType;
  static const tessera::serve::Signature signature = [] {
    tessera::serve::Signature s;
    s.inputs = {{"images", DataType::float32, {-1, 2, 2}}, {"ids", DataType::int64, {-1}}, {"mask", DataType::boolean, {-1, 3}}};
    s.outputs = {{"scores", DataType::float32, {-1, 3}}, {"label", DataType::int32, {-1}}};
    return s;
  }();
  return signature;
}
