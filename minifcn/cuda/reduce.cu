// Per-channel sums over the batch and every pixel, accumulated in double precision
// (see minifcn/functional/reduce.py for the NumPy form and why).
//
// a, b: (N, C, P) with P = H*W pixels. For every channel c:
//     sum_a[c]  = sum over n, p of a[n, c, p]
//     sum_ab[c] = sum over n, p of a[n, c, p] * b[n, c, p]
// Batch norm needs both (mean and variance forward; dbeta and dgamma backward), and
// float32 running sums over ~10^5 values per channel lose the digits its backward pass
// lives on, so every partial sum here is a double, whatever T is.
//
// The work: each channel is cut into S slices, one block per (channel, slice), so that a
// layer with few channels still fills the GPU. The threads of a block stride through their
// slice, each keeping its own partial sums; block_sum (common.cuh) adds them up, and thread
// 0 writes them to partial[0, c, s] and partial[1, c, s]. The caller adds the S slices
// (a (2, C, S) -> (2, C) sum), so no atomics are needed and the result is deterministic.

#include "common.cuh"

template <typename T>
__device__ void channel_sums(const T* a, const T* b, double* partial, int N, int C, long long P, int S) {
    const long long stride = (long long)S * threads_in_block();  // elements between a thread's steps
    for (int block = block_index(); block < C * S; block += block_count()) {
        const int c = block / S, s = block % S;
        double sum_a = 0.0, sum_ab = 0.0;
        for (int n = 0; n < N; ++n) {
            const T* a_nc = a + ((long long)n * C + c) * P;
            const T* b_nc = b + ((long long)n * C + c) * P;
            for (long long p = (long long)s * threads_in_block() + thread_in_block(); p < P; p += stride) {
                const double x = (double)a_nc[p];
                sum_a += x;
                sum_ab += x * (double)b_nc[p];
            }
        }
        sum_a = block_sum(sum_a);
        sum_ab = block_sum(sum_ab);
        if (thread_in_block() == 0) {
            partial[(long long)c * S + s] = sum_a;
            partial[((long long)C + c) * S + s] = sum_ab;
        }
    }
}

extern "C" __global__ void channel_sums_f32(const float* a, const float* b, double* partial, int N, int C,
                                            long long P, int S) {
    channel_sums<float>(a, b, partial, N, C, P, S);
}
extern "C" __global__ void channel_sums_f64(const double* a, const double* b, double* partial, int N, int C,
                                            long long P, int S) {
    channel_sums<double>(a, b, partial, N, C, P, S);
}
