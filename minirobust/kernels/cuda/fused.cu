// Bias + ReLU + max-pool of a convolution's product rows, and its backward onto the rows
// (the fused Conv2D -> ReLU -> MaxPool2D stage, minirobust/fused.py). Pooling first is exact:
// relu(max z) = max relu(z). pos: the winner's flat position oh*OW + ow in its (OH, OW) plane,
// or -1 where the window's maximum is <= 0 (ReLU passes nothing).
#include "common.cuh"

extern "C" __global__ void rows_relu_maxpool(const real_t* rows, const real_t* b, real_t* y, int* pos, index_t N,
                                             index_t F, index_t OH, index_t OW, index_t KH, index_t KW, index_t SH,
                                             index_t SW, index_t QH, index_t QW) {
    GRID_STRIDE_LOOP(idx, N * F * QH * QW) {
        const index_t qw = idx % QW, qh = (idx / QW) % QH, f = (idx / (QH * QW)) % F, n = idx / (F * QH * QW);
        const real_t* plane = rows + (f * N + n) * OH * OW;
        index_t best_p = -1;
        real_t best = 0;
        for (index_t i = 0; i < KH; ++i) {
            for (index_t j = 0; j < KW; ++j) {
                const index_t p = (qh * SH + i) * OW + qw * SW + j;
                const real_t v = plane[p] + b[f];  // compare with the bias added, as the layers do
                if (best_p < 0 || v > best || (v != v && best == best)) { best = v; best_p = p; }  // NaN wins
            }
        }
        const bool live = best > (real_t)0;
        y[idx] = live || best != best ? best : (real_t)0;  // relu(NaN) = NaN, with no gradient
        pos[idx] = live ? (int)best_p : -1;
    }
}

// drows[f, n*OH*OW + p] = the sum of dy over the windows whose winner is p (a gather).
extern "C" __global__ void relu_maxpool_to_rows(const real_t* dy, const int* pos, real_t* drows, index_t N,
                                                index_t F, index_t OH, index_t OW, index_t KH, index_t KW,
                                                index_t SH, index_t SW, index_t QH, index_t QW) {
    GRID_STRIDE_LOOP(idx, F * N * OH * OW) {
        const index_t ow = idx % OW, oh = (idx / OW) % OH, n = (idx / (OH * OW)) % N, f = idx / (N * OH * OW);
        const index_t p = oh * OW + ow;
        real_t sum = 0;
        const index_t qh_last = oh / SH < QH - 1 ? oh / SH : QH - 1;
        const index_t qw_last = ow / SW < QW - 1 ? ow / SW : QW - 1;
        for (index_t qh = first_window(oh, KH, SH); qh <= qh_last; ++qh) {
            for (index_t qw = first_window(ow, KW, SW); qw <= qw_last; ++qw) {
                const index_t out = ((n * F + f) * QH + qh) * QW + qw;
                if (pos[out] == p) sum += dy[out];
            }
        }
        drows[idx] = sum;
    }
}
