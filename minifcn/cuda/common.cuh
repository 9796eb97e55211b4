// What every minifcn kernel shares: the grid-stride loop's start and step.
//
// The kernels are CUDA, but simple enough to compile as plain C++ too: the tests
// (tests/test_cuda_sources.py) include them with MINIFCN_HOST defined, where
// __global__ and __device__ mean nothing and a single "thread" (index 0, stride 1)
// walks every element, computing exactly what the GPU's threads compute together.
#pragma once

//
// CuPy compiles these files with NVRTC, which has the math functions (exp, log) built in
// but no standard headers: nothing here may need <cmath> on the GPU, not even INFINITY.

#ifdef MINIFCN_HOST
#include <cmath>  // exp, log, INFINITY (built into CUDA)
#define __global__
#define __device__
static inline long long first_index() { return 0; }
static inline long long index_stride() { return 1; }
template <typename T> inline T infinity() { return T(INFINITY); }
#else
__device__ inline long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ inline long long index_stride() { return (long long)blockDim.x * gridDim.x; }
// +infinity from its IEEE bit pattern (NVRTC has no INFINITY macro).
template <typename T> __device__ inline T infinity();
template <> __device__ inline float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ inline double infinity<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
#endif
