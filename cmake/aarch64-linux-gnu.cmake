# Cross-compiling tessera's tests and examples for 64-bit ARM on Debian (crossbuild-essential-arm64,
# the arm64 zlib and libpng from multiarch), running them under qemu-user (scripts/test-aarch64.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Libraries and packages for the target from the arm64 multiarch folders; header-only packages
# (Eigen, doctest, nlohmann-json) from the host's /usr.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# ctest runs the test programs through qemu: the arm64 loader from the cross toolchain's folder,
# and the C library beside it (first on the path). Other arm64 libraries (zlib, libpng) come from
# multiarch. Without the cross folder first, the host's ld.so.cache sends the loader to multiarch's
# libc6:arm64, a different build of glibc than the cross loader, and the pair hangs in the first
# pthread_create (so in the first parallel kernel).
set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-aarch64;-L;/usr/aarch64-linux-gnu;-E;LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib:/usr/lib/aarch64-linux-gnu)
# GCC notes, for every function taking a small struct by value, that the C++17 ABI on aarch64
# changed in GCC 10.1; tessera is built with one compiler, so the note says nothing here.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
