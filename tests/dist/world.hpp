// The communicator of every rank, for the distributed tests (each doctest program runs under
// mpirun; tests/dist/mpi_main.cpp initializes MPI before the tests run).
#pragma once

#include <tessera/dist/dist.hpp>

namespace dist_test {

inline tessera::dist::Communicator& world() {
  static tessera::dist::Environment mpi;  // MPI is already initialized by main: this only reads the ranks
  static tessera::dist::Communicator comm(mpi, /*timeout_seconds=*/60);
  return comm;
}

}  // namespace dist_test
