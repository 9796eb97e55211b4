// What every minifcn kernel shares: the grid-stride loop's start and step.
//
// The kernels are CUDA, but simple enough to compile as plain C++ too: minifcn/cuda/host.py
// builds them with MINIFCN_HOST defined, where __global__ and __device__ mean nothing and
// each block's threads are real threads of the CPU (see below).
#pragma once

//
// CuPy compiles these files with NVRTC, which has the math functions (exp, log) built in
// but no standard headers: nothing here may need <cmath> on the GPU, not even INFINITY.

#ifdef MINIFCN_HOST
// The host build (minifcn/cuda/host.py): the same kernels as C++ for the CPU, each block of a
// launch run by real threads (host.py chooses how many), so that the barriers and warp shuffles
// below execute. The blocks of a launch run one after another, so a static variable is exactly
// a block's shared memory. The math functions are the float overloads where T is float, as on
// the GPU (std::exp(float) is expf), and host.py compiles with FMA contraction, as NVRTC does.
#include <cmath>               // exp, log, sqrt, INFINITY (built into CUDA)
#include <atomic>  // the barrier behind __syncthreads
#include <thread>
using std::exp;
using std::log;
using std::sqrt;
#define __global__
#define __device__
#define __shared__ static
struct HostDim {
    unsigned x;
};
inline thread_local HostDim threadIdx{0}, blockIdx{0};
inline HostDim blockDim{1}, gridDim{1};
// Threads wait here until `count` of them have arrived; then all go on. A waiting thread first gives
// its core away (yield) a few times, since a barrier is crossed every few microseconds; then it sleeps
// until released (C++20's atomic wait, a futex on Linux), so that a block's threads never spin against
// one another, or against another process, on a busy machine.
struct HostBarrier {
    std::atomic<unsigned> arrived{0}, generation{0};
    void wait(unsigned count) {
        const unsigned mine = generation.load();
        if (arrived.fetch_add(1) + 1 == count) {
            arrived.store(0);
            generation.fetch_add(1);  // releases the others; what was written before is visible to them
            generation.notify_all();
        } else {
            for (int tries = 0; tries < 16 && generation.load() == mine; ++tries) std::this_thread::yield();
            while (generation.load() == mine) generation.wait(mine);
        }
    }
};
inline HostBarrier host_block_barrier, host_warp_barriers[32];
inline double host_lanes[1024];  // each thread's value during a shuffle
inline void __syncthreads() { host_block_barrier.wait(blockDim.x); }
// A warp shuffle through memory: the warp's threads post their values, then each reads the one
// `offset` lanes up (its own where that lane is outside the warp), as a warp does in one instruction.
// Only the warp waits for itself, as on a GPU: the other warps may be elsewhere.
inline double __shfl_down_sync(unsigned /*mask*/, double v, int offset) {
    const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31, from = threadIdx.x + offset;
    const unsigned warp_size = blockDim.x - 32 * warp < 32 ? blockDim.x - 32 * warp : 32;
    host_lanes[threadIdx.x] = v;
    host_warp_barriers[warp].wait(warp_size);
    const double shifted = (lane + offset < 32 && from < blockDim.x) ? host_lanes[from] : v;
    host_warp_barriers[warp].wait(warp_size);
    return shifted;
}
template <typename T> inline T infinity() { return T(INFINITY); }
#else
// +infinity from its IEEE bit pattern (NVRTC has no INFINITY macro).
template <typename T> __device__ inline T infinity();
template <> __device__ inline float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ inline double infinity<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
#endif

__device__ inline long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ inline long long index_stride() { return (long long)blockDim.x * gridDim.x; }
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
