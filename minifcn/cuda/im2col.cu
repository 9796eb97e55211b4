// im2col and col2im on the GPU: the two halves of minifcn's convolution (see
// minifcn/functional/conv.py for the NumPy form and the matrix products around them).
//
// One thread per output element, in a grid-stride loop: element i of the output is
// computed by thread i (mod the grid), so any launch size covers everything.
//
// Both work on a band of output rows r0 <= oy < r1 (all of them: r0 = 0, r1 = OH), so
// that a large layer can be done a band at a time in bounded memory. R = r1 - r0.
//
// im2col: cols has shape (C*KH*KW, N*R*OW). Row r = (c, kh, kw), column q = (n, oy - r0, ox):
//     cols[r, q] = x[n, c, oy*sh - ph + kh*dh, ox*sw - pw + kw*dw]   (0 outside the image)
// The padding is implicit: no padded copy of x is made.
//
// col2im is the adjoint: every input pixel (n, c, y, x) gathers the column entries that
// im2col copied from it, over the kernel taps (kh, kw) whose output position
//     oy = (y + ph - kh*dh) / sh,   ox = (x + pw - kw*dw) / sw
// is a whole number inside the band, and ADDS their sum to x[n, c, y, x] (so the bands
// of one layer add up; start from zeros). Each thread writes its own pixel: no atomics.
//
// Both come in float32 (_f32) and float64 (_f64) versions of one template.

#include "common.cuh"

template <typename T>
__device__ void im2col(const T* x, T* cols, int N, int C, int H, int W, int KH, int KW, int r0, int r1, int OW,
                       int sh, int sw, int ph, int pw, int dh, int dw) {
    const int R = r1 - r0;
    const long long n_cols = (long long)N * R * OW;
    const long long total = (long long)C * KH * KW * n_cols;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const long long r = i / n_cols, q = i % n_cols;  // row (c, kh, kw), column (n, oy - r0, ox)
        const int kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
        const int ox = q % OW, oy = r0 + (q / OW) % R, n = q / ((long long)OW * R);
        const int y = oy * sh - ph + kh * dh, xx = ox * sw - pw + kw * dw;
        cols[i] = (y >= 0 && y < H && xx >= 0 && xx < W) ? x[(((long long)n * C + c) * H + y) * W + xx] : T(0);
    }
}

template <typename T>
__device__ void col2im(const T* cols, T* x, int N, int C, int H, int W, int KH, int KW, int r0, int r1, int OW,
                       int sh, int sw, int ph, int pw, int dh, int dw) {
    const int R = r1 - r0;
    const long long n_cols = (long long)N * R * OW;
    const long long total = (long long)N * C * H * W;
    for (long long i = first_index(); i < total; i += index_stride()) {
        const int xx = i % W, y = (i / W) % H, c = (i / ((long long)W * H)) % C, n = i / ((long long)W * H * C);
        T sum = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int ty = y + ph - kh * dh;  // oy * sh, if this tap reached (y, x) from some oy
            if (ty < 0 || ty % sh != 0 || ty / sh < r0 || ty / sh >= r1) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int tx = xx + pw - kw * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= OW) continue;
                const long long r = ((long long)c * KH + kh) * KW + kw;
                const long long q = ((long long)n * R + (ty / sh - r0)) * OW + tx / sw;
                sum += cols[r * n_cols + q];
            }
        }
        x[i] += sum;
    }
}

#define GEOMETRY int N, int C, int H, int W, int KH, int KW, int r0, int r1, int OW, int sh, int sw, int ph, int pw, int dh, int dw
#define GEOMETRY_ARGS N, C, H, W, KH, KW, r0, r1, OW, sh, sw, ph, pw, dh, dw

extern "C" __global__ void im2col_f32(const float* x, float* cols, GEOMETRY) { im2col<float>(x, cols, GEOMETRY_ARGS); }
extern "C" __global__ void im2col_f64(const double* x, double* cols, GEOMETRY) { im2col<double>(x, cols, GEOMETRY_ARGS); }
extern "C" __global__ void col2im_f32(const float* cols, float* x, GEOMETRY) { col2im<float>(cols, x, GEOMETRY_ARGS); }
extern "C" __global__ void col2im_f64(const double* cols, double* x, GEOMETRY) { col2im<double>(cols, x, GEOMETRY_ARGS); }
