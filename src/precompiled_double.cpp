// tessera::precompiled: the CPU kernels' instantiations for double (backend/cpu/precompiled.hpp).
#include <tessera/tessera.hpp>

namespace tessera {
TESSERA_CPU_KERNEL_INSTANCES(, double)
}  // namespace tessera
