// libtessera_c: the C API (tessera_c.h) for the example architectures: the Fashion-MNIST CNN and
// MLP (../fashion_models.hpp) and the character language models (../char_models.hpp). A library
// for your own model types is this file with your registration function.
#include <tessera/serve/c_api.hpp>

#include "../char_models.hpp"
#include "../fashion_models.hpp"

namespace {
void register_example_models(tessera::serve::ModelRegistry& registry) {
  fashion::register_models(registry);
  char_models::register_models(registry);
}
}  // namespace

TESSERA_C_API(register_example_models)
