// doctest's main() for the programs that run under mpirun (tests/dist/dist.cmake): MPI for the
// whole run, and a failure on any rank fails every rank's exit status.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tessera/dist/communicator.hpp>

int main(int argc, char** argv) {
  tessera::dist::Environment mpi(argc, argv);
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (context.shouldExit()) return status;
  int worst = status;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
