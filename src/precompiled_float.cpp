// tessera::precompiled: the CPU kernels' and the optimizers' updates' instantiations for float
// (backend/cpu/precompiled.hpp, optim/optimizers.hpp).
#include <tessera/tessera.hpp>

// The settings this library was built with (backend/cpu/precompiled.hpp): programs built with
// others find no definition for theirs.
extern "C" const char TESSERA_PRECOMPILED_SETTINGS = 0;

namespace tessera {
TESSERA_CPU_KERNEL_INSTANCES(, float)
}  // namespace tessera

namespace tessera::optim {
TESSERA_OPTIMIZER_INSTANCES(, float)
}  // namespace tessera::optim
