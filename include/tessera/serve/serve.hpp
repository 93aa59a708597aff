// The model server's umbrella header: export (serve/export.hpp), the registry of servable
// architectures, model lifecycle and batching, the two wire protocols, and the HTTP server.
// Link tessera::serve (it brings cpp-httplib); export.hpp alone needs only tessera::tessera.
#pragma once

#include "tessera/serve/export.hpp"
#include "tessera/serve/metrics.hpp"
#include "tessera/serve/model_manager.hpp"
#include "tessera/serve/protocol.hpp"
#include "tessera/serve/registry.hpp"
#include "tessera/serve/server.hpp"
#include "tessera/serve/signals.hpp"
#include "tessera/serve/signature.hpp"
#include "tessera/serve/config.hpp"
#include "tessera/serve/text_format.hpp"
