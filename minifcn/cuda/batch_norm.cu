// Batch normalisation's per-element work on the GPU, one pass each (see minifcn/functional/norm.py
// for the NumPy form and the formulas; the per-channel sums come from reduce.cu).
//
// x, xhat, y, gy, gx: (N, C, P) with P = H*W; per-channel arrays: (C,). Element i lies in
// channel (i / P) % C. m is the number of values per channel, N*P.
//
// batch_norm_statistics, one thread per channel, from sums = (sum of x, sum of x*x) in double:
//     mean = sum_x / m,  var = sum_xx / m - mean^2 (biased),  inv_std = 1 / sqrt(var + eps)
//     running_mean <- (1 - momentum) * running_mean + momentum * mean
//     running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)
// The one-pass variance is safe here because it is done in double: a float's square is exact
// in double, and double sums keep ~16 digits, so var keeps its digits unless |mean| exceeds
// std by a factor of ~10^5. (The CPU, summing in float32 blocks, subtracts the mean first.)
//
// batch_norm_forward:  xhat = (x - mean) * inv_std;   y = gamma * xhat + beta
// batch_norm_backward, from sums = (sum of gy, sum of gy * xhat) in double (which are also
// dbeta and dgamma, written out in T by the first C threads):
//     gx = gamma * inv_std * (gy - sum_gy / m - xhat * sum_gy_xhat / m)    (training, m > 0)
//     gx = gamma * inv_std * gy                                            (fixed statistics: m = 0)

#include "common.cuh"

template <typename T>
__device__ void batch_norm_statistics(const double* sums, T* mean, T* inv_std, T* running_mean, T* running_var,
                                      int C, long long m, T momentum, T eps) {
    for (long long c = first_index(); c < C; c += index_stride()) {
        const double mu = sums[c] / m, var_raw = sums[C + c] / m - mu * mu;
        const double var = var_raw > 0.0 ? var_raw : 0.0;  // rounding can leave a tiny negative
        const double t = momentum;
        mean[c] = T(mu);
        inv_std[c] = T(1.0 / sqrt(var + (double)eps));
        running_mean[c] = T((1.0 - t) * running_mean[c] + t * mu);
        running_var[c] = T((1.0 - t) * running_var[c] + t * var * ((double)m / (double)(m - 1)));
    }
}

template <typename T>
__device__ void batch_norm_forward(const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta, T* xhat,
                                   T* y, int N, int C, long long P) {
    const long long total = (long long)N * C * P;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int c = (int)((i / P) % C);
        const T h = (x[i] - mean[c]) * inv_std[c];
        xhat[i] = h;
        y[i] = gamma[c] * h + beta[c];
    }
}

template <typename T>
__device__ void batch_norm_backward(const T* gy, const T* xhat, const double* sums, const T* gamma, const T* inv_std,
                                    T* gx, T* dgamma, T* dbeta, int N, int C, long long P, long long m) {
    const long long total = (long long)N * C * P;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int c = (int)((i / P) % C);
        if (i < C) {  // the first C threads also hand over the parameters' gradients, in T
            dbeta[i] = T(sums[i]);
            dgamma[i] = T(sums[C + i]);
        }
        const T scale = gamma[c] * inv_std[c];
        if (m == 0) {
            gx[i] = scale * gy[i];
        } else {
            const T mean_gy = T(sums[c] / m), mean_gy_xhat = T(sums[C + c] / m);
            gx[i] = scale * (gy[i] - mean_gy - xhat[i] * mean_gy_xhat);
        }
    }
}

extern "C" __global__ void batch_norm_statistics_f32(const double* sums, float* mean, float* inv_std,
                                                     float* running_mean, float* running_var, int C, long long m,
                                                     float momentum, float eps) {
    batch_norm_statistics<float>(sums, mean, inv_std, running_mean, running_var, C, m, momentum, eps);
}
extern "C" __global__ void batch_norm_statistics_f64(const double* sums, double* mean, double* inv_std,
                                                     double* running_mean, double* running_var, int C, long long m,
                                                     double momentum, double eps) {
    batch_norm_statistics<double>(sums, mean, inv_std, running_mean, running_var, C, m, momentum, eps);
}
extern "C" __global__ void batch_norm_forward_f32(const float* x, const float* mean, const float* inv_std,
                                                  const float* gamma, const float* beta, float* xhat, float* y, int N,
                                                  int C, long long P) {
    batch_norm_forward<float>(x, mean, inv_std, gamma, beta, xhat, y, N, C, P);
}
extern "C" __global__ void batch_norm_forward_f64(const double* x, const double* mean, const double* inv_std,
                                                  const double* gamma, const double* beta, double* xhat, double* y,
                                                  int N, int C, long long P) {
    batch_norm_forward<double>(x, mean, inv_std, gamma, beta, xhat, y, N, C, P);
}
extern "C" __global__ void batch_norm_backward_f32(const float* gy, const float* xhat, const double* sums,
                                                   const float* gamma, const float* inv_std, float* gx, float* dgamma,
                                                   float* dbeta, int N, int C, long long P, long long m) {
    batch_norm_backward<float>(gy, xhat, sums, gamma, inv_std, gx, dgamma, dbeta, N, C, P, m);
}
extern "C" __global__ void batch_norm_backward_f64(const double* gy, const double* xhat, const double* sums,
                                                   const double* gamma, const double* inv_std, double* gx,
                                                   double* dgamma, double* dbeta, int N, int C, long long P,
                                                   long long m) {
    batch_norm_backward<double>(gy, xhat, sums, gamma, inv_std, gx, dgamma, dbeta, N, C, P, m);
}
