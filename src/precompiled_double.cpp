// tessera::precompiled: the CPU kernels' and the optimizers' updates' instantiations for double
// (backend/cpu/precompiled.hpp, optim/optimizers.hpp).
#include <tessera/tessera.hpp>

namespace tessera {
TESSERA_CPU_KERNEL_INSTANCES(, double)
}  // namespace tessera

namespace tessera::optim {
TESSERA_OPTIMIZER_INSTANCES(, double)
}  // namespace tessera::optim
