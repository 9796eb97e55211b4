// Per-pixel softmax cross-entropy with an ignore label, fused with its log-softmax
// (see minifcn/functional/loss.py for the NumPy form).
//
// scores: (N, C, P) with P = H*W pixels; labels: (N, P), int64, in [0, C) or `ignore`;
// weight: (C,), each class's weight in the loss (all ones when the loss has none).
// One thread per pixel (n, p) walks its C scores:
//     m   = max_c s_c                       (subtracted so exp never overflows)
//     lse = m + log(sum_c exp(s_c - m))     log of the softmax's denominator
//     loss = w[label] * (lse - s_label)     = -w[label] * log softmax(s)_label
// Forward writes each pixel's loss (0 where ignored) and its weight w[label] as "counted" (0
// where ignored); the caller sums both. Backward writes
// dL/ds_c = (softmax_c - [c == label]) * w[label] * scale[0], 0 where
// ignored, recomputing the softmax from the scores instead of storing it. scale is read
// from GPU memory (dL/dloss times 1/count, computed there), so the host never waits for it.
//
// The denominator is found in one pass over a pixel's C scores ("online" log-sum-exp):
// keep the largest score m seen so far and the sum of exp(s - m); when a larger score
// arrives, rescale the sum by exp(m_old - m_new). Neighbouring threads read neighbouring
// pixels, so every read of class c is one coalesced sweep of the (N, C, P) scores.

#include "common.cuh"

template <typename T>
__device__ T log_sum_exp(const T* s, long long stride, int C) {
    T m = s[0], total = T(1);
    for (int c = 1; c < C; ++c) {
        const T v = s[c * stride];
        if (v > m) {
            total = total * exp(m - v) + T(1);
            m = v;
        } else {
            total += exp(v - m);  // a NaN score lands here and makes the result NaN
        }
    }
    return m + log(total);
}

template <typename T>
__device__ void softmax_loss_forward(const T* scores, const long long* labels, const T* weight, T* loss, T* counted,
                                     int N, int C, long long P, long long ignore) {
    const long long total = (long long)N * P;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const long long n = i / P, p = i % P;
        const T* s = scores + n * C * P + p;  // class c of this pixel is s[c * P]
        const long long label = labels[i];
        if (label == ignore) {
            loss[i] = T(0);
            counted[i] = T(0);
            continue;
        }
        const T w = weight[label];
        loss[i] = w * (log_sum_exp(s, P, C) - s[label * P]);
        counted[i] = w;
    }
}

template <typename T>
__device__ void softmax_loss_backward(const T* scores, const long long* labels, const T* weight, T* grad, int N,
                                      int C, long long P, long long ignore, const T* scale) {
    const long long total = (long long)N * P;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const long long n = i / P, p = i % P;
        const T* s = scores + n * C * P + p;
        T* g = grad + n * C * P + p;
        const long long label = labels[i];
        if (label == ignore) {
            for (int c = 0; c < C; ++c) g[c * P] = T(0);
            continue;
        }
        const T lse = log_sum_exp(s, P, C), k = weight[label] * scale[0];
        for (int c = 0; c < C; ++c) g[c * P] = (exp(s[c * P] - lse) - (c == label ? T(1) : T(0))) * k;
    }
}

extern "C" __global__ void softmax_loss_forward_f32(const float* scores, const long long* labels, const float* weight,
                                                    float* loss, float* counted, int N, int C, long long P,
                                                    long long ignore) {
    softmax_loss_forward<float>(scores, labels, weight, loss, counted, N, C, P, ignore);
}
extern "C" __global__ void softmax_loss_forward_f64(const double* scores, const long long* labels,
                                                    const double* weight, double* loss, double* counted, int N, int C,
                                                    long long P, long long ignore) {
    softmax_loss_forward<double>(scores, labels, weight, loss, counted, N, C, P, ignore);
}
extern "C" __global__ void softmax_loss_backward_f32(const float* scores, const long long* labels,
                                                     const float* weight, float* grad, int N, int C, long long P,
                                                     long long ignore, const float* scale) {
    softmax_loss_backward<float>(scores, labels, weight, grad, N, C, P, ignore, scale);
}
extern "C" __global__ void softmax_loss_backward_f64(const double* scores, const long long* labels,
                                                     const double* weight, double* grad, int N, int C, long long P,
                                                     long long ignore, const double* scale) {
    softmax_loss_backward<double>(scores, labels, weight, grad, N, C, P, ignore, scale);
}
