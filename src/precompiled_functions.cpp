// tessera::precompiled: the functions declared with TESSERA_OUT_OF_LINE (core/config.hpp), compiled
// here once instead of in every program that calls them. Every header that declares some is
// included: the umbrella header brings most, the serving headers below are the others.
#define TESSERA_PRECOMPILED_DEFINITIONS
#include <tessera/tessera.hpp>

#include <tessera/io/png.hpp>
#include <tessera/serve/export.hpp>
#include <tessera/serve/registry.hpp>
#include <tessera/serve/signature.hpp>
