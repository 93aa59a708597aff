// Files: crash-safe writes, safetensors, checkpoints, TensorBoard summaries.
#pragma once

#include "tessera/io/file.hpp"
#include "tessera/io/safetensors.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/summary.hpp"
