// Files: crash-safe writes, safetensors, checkpoints, TensorBoard summaries and model graphs.
#pragma once

#include "tessera/io/file.hpp"
#include "tessera/io/safetensors.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/summary.hpp"
#include "tessera/io/graph.hpp"
#include "tessera/io/onnx.hpp"
