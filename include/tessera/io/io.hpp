// Files: crash-safe writes, safetensors, checkpoints.
#pragma once

#include "tessera/io/file.hpp"
#include "tessera/io/safetensors.hpp"
#include "tessera/io/checkpoint.hpp"
