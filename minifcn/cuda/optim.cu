// The optimisers' updates on the GPU, one launch for a whole flat buffer of parameters
// (see minifcn/optim.py for the NumPy form, which computes the same per element).
//
// w, g and the state arrays are flat, n elements; one thread per element, grid-stride.
// decay is weight_decay * decay_mult, rate the learning rate times lr_mult (for Adam also
// divided by 1 - beta1^t), as optim.py computes them. A zero decay adds nothing (not even
// 0 * w, which would turn an infinite weight into NaN), as in the NumPy form.
//
// SGD (Caffe's form):   v <- momentum * v + rate * (g + decay * w);   w <- w - v
// Adam:                 m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g * g
//                       w <- w - rate * m / (sqrt(v / correction2) + eps)

#include "common.cuh"

template <typename T>
__device__ void sgd_update(T* w, const T* g, T* v, long long n, T rate, T momentum, T decay) {
    for (long long i = first_index(); i < n; i += index_stride()) {
        T grad = g[i];
        if (decay != T(0)) grad += decay * w[i];
        const T velocity = momentum * v[i] + rate * grad;
        v[i] = velocity;
        w[i] -= velocity;
    }
}

template <typename T>
__device__ void adam_update(T* w, const T* g, T* m, T* v, long long n, T rate, T b1, T one_minus_b1, T b2,
                            T one_minus_b2, T correction2, T eps, T decay) {
    for (long long i = first_index(); i < n; i += index_stride()) {
        T grad = g[i];
        if (decay != T(0)) grad += decay * w[i];
        const T mean = b1 * m[i] + one_minus_b1 * grad;
        const T square = b2 * v[i] + one_minus_b2 * (grad * grad);
        m[i] = mean;
        v[i] = square;
        w[i] -= rate * mean / (sqrt(square / correction2) + eps);
    }
}

extern "C" __global__ void sgd_update_f32(float* w, const float* g, float* v, long long n, float rate, float momentum,
                                          float decay) {
    sgd_update<float>(w, g, v, n, rate, momentum, decay);
}
extern "C" __global__ void sgd_update_f64(double* w, const double* g, double* v, long long n, double rate,
                                          double momentum, double decay) {
    sgd_update<double>(w, g, v, n, rate, momentum, decay);
}
extern "C" __global__ void adam_update_f32(float* w, const float* g, float* m, float* v, long long n, float rate,
                                           float b1, float one_minus_b1, float b2, float one_minus_b2,
                                           float correction2, float eps, float decay) {
    adam_update<float>(w, g, m, v, n, rate, b1, one_minus_b1, b2, one_minus_b2, correction2, eps, decay);
}
extern "C" __global__ void adam_update_f64(double* w, const double* g, double* m, double* v, long long n, double rate,
                                           double b1, double one_minus_b1, double b2, double one_minus_b2,
                                           double correction2, double eps, double decay) {
    adam_update<double>(w, g, m, v, n, rate, b1, one_minus_b1, b2, one_minus_b2, correction2, eps, decay);
}
