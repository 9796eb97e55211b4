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
// Block-wise kernels (reduce.cu): one block, of one thread, whose sum is its own value.
static inline int block_index() { return 0; }
static inline int block_count() { return 1; }
static inline int thread_in_block() { return 0; }
static inline int threads_in_block() { return 1; }
static inline double block_sum(double v) { return v; }
#else
__device__ inline long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ inline long long index_stride() { return (long long)blockDim.x * gridDim.x; }
// +infinity from its IEEE bit pattern (NVRTC has no INFINITY macro).
template <typename T> __device__ inline T infinity();
template <> __device__ inline float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ inline double infinity<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
// Block-wise kernels (reduce.cu): each block owns a slice of the work, its threads share it.
__device__ inline int block_index() { return blockIdx.x; }
__device__ inline int block_count() { return gridDim.x; }
__device__ inline int thread_in_block() { return threadIdx.x; }
__device__ inline int threads_in_block() { return blockDim.x; }
// The sum of v over the threads of a block (blockDim.x a multiple of 32), valid in thread 0.
// Every thread of the block must call it: a warp sums by shuffles, then warp 0 sums the warps.
__device__ inline double block_sum(double v) {
    __shared__ double warp_sums[32];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // an earlier call's warp_sums have been read
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? warp_sums[lane] : 0.0;
    if (warp == 0)
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}
#endif
