// What every minifcn kernel shares: the grid-stride loop's start and step.
//
// The kernels are CUDA, but simple enough to compile as plain C++ too: the tests
// (tests/test_cuda_sources.py) include them with MINIFCN_HOST defined, where
// __global__ and __device__ mean nothing and a single "thread" (index 0, stride 1)
// walks every element, computing exactly what the GPU's threads compute together.
#pragma once

#ifdef MINIFCN_HOST
#include <cmath>  // INFINITY, exp, log (CUDA has them built in)
#define __global__
#define __device__
static inline long long first_index() { return 0; }
static inline long long index_stride() { return 1; }
#else
__device__ inline long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ inline long long index_stride() { return (long long)blockDim.x * gridDim.x; }
#endif
