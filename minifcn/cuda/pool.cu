// Max and average pooling on the GPU (see minifcn/functional/pool.py for the NumPy form).
//
// Geometry as there: output (oy, ox) reads input rows oy*sh - ph + kh*dh and columns
// ox*sw - pw + kw*dw for the window taps (kh, kw). Positions outside the image are
// padding: -inf for max pooling (it never wins), 0 for average pooling. Ceil mode needs
// nothing special here: the last window simply hangs over the edge.
//
// Forward: one thread per output element. Backward: one thread per INPUT element,
// gathering from every output window that covers it, so no atomics are needed.

#include "common.cuh"

// Max pooling forward: the value, and which tap k = kh*KW + kw held it (the first on
// ties, as Caffe and PyTorch; a NaN anywhere in the window wins, as in NumPy's form).
template <typename T>
__device__ void max_pool_forward(const T* x, T* y, int* argmax, int N, int C, int H, int W, int OH, int OW,
                                 int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw) {
    const long long total = (long long)N * C * OH * OW;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int ox = i % OW, oy = (i / OW) % OH;
        const long long plane = i / ((long long)OW * OH);  // n * C + c
        T best = T(0);
        int best_k = 0;
        for (int kh = 0; kh < KH; ++kh) {
            for (int kw = 0; kw < KW; ++kw) {
                const int yy = oy * sh - ph + kh * dh, xx = ox * sw - pw + kw * dw;
                const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < W;
                const T v = inside ? x[(plane * H + yy) * W + xx] : -infinity<T>();
                const int k = kh * KW + kw;
                if (k == 0 || v > best || v != v) {  // v != v: v is NaN
                    best = v;
                    best_k = k;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_k;
    }
}

// Max pooling backward: input pixel (y, x) collects dy of each window whose argmax is it.
template <typename T>
__device__ void max_pool_backward(const T* gy, const int* argmax, T* gx, int N, int C, int H, int W, int OH, int OW,
                                  int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw) {
    const long long total = (long long)N * C * H * W;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int xx = i % W, yy = (i / W) % H;
        const long long plane = i / ((long long)W * H);
        T sum = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int ty = yy + ph - kh * dh;  // oy * sh, if tap kh of some window oy lands here
            if (ty < 0 || ty % sh != 0 || ty / sh >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int tx = xx + pw - kw * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                const long long o = (plane * OH + ty / sh) * OW + tx / sw;
                if (argmax[o] == kh * KW + kw) sum += gy[o];
            }
        }
        gx[i] = sum;
    }
}

// Average pooling: zero padding counts in the divisor; the overhang of a last ceil-mode
// window past the padded input does not (Caffe's AVE pooling, PyTorch's count_include_pad).
__device__ inline int window_count(int o, int s, int k, int size, int p) {
    const int room = size + 2 * p - o * s;
    return room < k ? room : k;
}

template <typename T>
__device__ void avg_pool_forward(const T* x, T* y, int N, int C, int H, int W, int OH, int OW,
                                 int KH, int KW, int sh, int sw, int ph, int pw) {
    const long long total = (long long)N * C * OH * OW;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int ox = i % OW, oy = (i / OW) % OH;
        const long long plane = i / ((long long)OW * OH);
        T sum = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int yy = oy * sh - ph + kh;
            if (yy < 0 || yy >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int xx = ox * sw - pw + kw;
                if (xx >= 0 && xx < W) sum += x[(plane * H + yy) * W + xx];
            }
        }
        y[i] = sum / T(window_count(oy, sh, KH, H, ph) * window_count(ox, sw, KW, W, pw));
    }
}

template <typename T>
__device__ void avg_pool_backward(const T* gy, T* gx, int N, int C, int H, int W, int OH, int OW,
                                  int KH, int KW, int sh, int sw, int ph, int pw) {
    const long long total = (long long)N * C * H * W;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int xx = i % W, yy = (i / W) % H;
        const long long plane = i / ((long long)W * H);
        T sum = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int ty = yy + ph - kh;
            if (ty < 0 || ty % sh != 0 || ty / sh >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int tx = xx + pw - kw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                const int oy = ty / sh, ox = tx / sw;
                const T count = T(window_count(oy, sh, KH, H, ph) * window_count(ox, sw, KW, W, pw));
                sum += gy[(plane * OH + oy) * OW + ox] / count;
            }
        }
        gx[i] = sum;
    }
}

#define MAX_GEOMETRY int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw
#define MAX_ARGS N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw
#define AVG_GEOMETRY int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw
#define AVG_ARGS N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw

extern "C" __global__ void max_pool_forward_f32(const float* x, float* y, int* argmax, MAX_GEOMETRY) { max_pool_forward<float>(x, y, argmax, MAX_ARGS); }
extern "C" __global__ void max_pool_forward_f64(const double* x, double* y, int* argmax, MAX_GEOMETRY) { max_pool_forward<double>(x, y, argmax, MAX_ARGS); }
extern "C" __global__ void max_pool_backward_f32(const float* gy, const int* argmax, float* gx, MAX_GEOMETRY) { max_pool_backward<float>(gy, argmax, gx, MAX_ARGS); }
extern "C" __global__ void max_pool_backward_f64(const double* gy, const int* argmax, double* gx, MAX_GEOMETRY) { max_pool_backward<double>(gy, argmax, gx, MAX_ARGS); }
extern "C" __global__ void avg_pool_forward_f32(const float* x, float* y, AVG_GEOMETRY) { avg_pool_forward<float>(x, y, AVG_ARGS); }
extern "C" __global__ void avg_pool_forward_f64(const double* x, double* y, AVG_GEOMETRY) { avg_pool_forward<double>(x, y, AVG_ARGS); }
extern "C" __global__ void avg_pool_backward_f32(const float* gy, float* gx, AVG_GEOMETRY) { avg_pool_backward<float>(gy, gx, AVG_ARGS); }
extern "C" __global__ void avg_pool_backward_f64(const double* gy, double* gx, AVG_GEOMETRY) { avg_pool_backward<double>(gy, gx, AVG_ARGS); }
