// Training over several processes (docs/distributed.md): MPI set up from the launcher, collectives
// on tensors, and the data-parallel strategy train::fit uses. Needs MPI: link tessera::dist.
#pragma once

#include "tessera/dist/communicator.hpp"
#include "tessera/dist/data_parallel.hpp"
#include "tessera/dist/sync_batch_norm.hpp"
