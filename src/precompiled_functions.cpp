// tessera::precompiled: the functions declared with TESSERA_OUT_OF_LINE and defined under
// TESSERA_OUT_OF_LINE_DEFINITIONS (core/config.hpp: files, checkpoints, summaries, model export,
// training callbacks), compiled here once instead of in every program that calls them. Every header
// that defines some is included: the umbrella header brings most, the serving headers below are
// the others. (The shape rules are src/precompiled_core.cpp's.)
#define TESSERA_PRECOMPILED_DEFINITIONS
#include <tessera/tessera.hpp>

#include <tessera/io/png.hpp>
#include <tessera/serve/export.hpp>
#include <tessera/serve/registry.hpp>
#include <tessera/serve/signature.hpp>
