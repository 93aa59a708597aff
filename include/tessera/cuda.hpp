// The umbrella header with the CUDA backend: everything in tessera.hpp plus tessera::cuda.
// Needs the CUDA toolkit (link tessera::cuda).
#pragma once

#include "tessera/backend/cuda/device.hpp"
#include "tessera/tessera.hpp"
