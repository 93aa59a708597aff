// The main job compiled by nvcc (target fashion_mnist_cuda): `fashion_mnist_cuda --device cuda`
// trains on the GPU; see fashion_mnist.cpp and docs/cuda.md.
#include "fashion_mnist.cpp"
