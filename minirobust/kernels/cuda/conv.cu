// im2col / col2im and the layout changes of a convolution's product rows (see reference.py for
// the layouts: cols (K, P) with K = C*KH*KW, P = N*OH*OW; rows (F, P); images (N, C, H, W)).
#include "common.cuh"

extern "C" __global__ void im2col(const real_t* x, real_t* cols, index_t N, index_t C, index_t H, index_t W,
                                  index_t KH, index_t KW, index_t SH, index_t SW, index_t PH, index_t PW,
                                  index_t OH, index_t OW) {
    const index_t P = N * OH * OW;
    GRID_STRIDE_LOOP(idx, C * KH * KW * P) {
        const index_t row = idx / P, col = idx % P;
        const index_t c = row / (KH * KW), i = (row / KW) % KH, j = row % KW;
        const index_t n = col / (OH * OW), oh = (col / OW) % OH, ow = col % OW;
        const index_t h = oh * SH + i - PH, w = ow * SW + j - PW;
        cols[idx] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : (real_t)0;
    }
}

// The adjoint of im2col as a gather: each input pixel sums the column entries that copied it.
extern "C" __global__ void col2im(const real_t* cols, real_t* dx, index_t N, index_t C, index_t H, index_t W,
                                  index_t KH, index_t KW, index_t SH, index_t SW, index_t PH, index_t PW,
                                  index_t OH, index_t OW) {
    const index_t P = N * OH * OW;
    GRID_STRIDE_LOOP(idx, N * C * H * W) {
        const index_t w = idx % W, h = (idx / W) % H, c = (idx / (H * W)) % C, n = idx / (C * H * W);
        real_t sum = 0;
        for (index_t i = 0; i < KH; ++i) {
            const index_t th = h + PH - i;  // = oh * SH for the windows that hold this pixel at row i
            if (th < 0 || th % SH != 0 || th / SH >= OH) continue;
            for (index_t j = 0; j < KW; ++j) {
                const index_t tw = w + PW - j;
                if (tw < 0 || tw % SW != 0 || tw / SW >= OW) continue;
                sum += cols[((c * KH + i) * KW + j) * P + (n * OH + th / SH) * OW + tw / SW];
            }
        }
        dx[idx] = sum;
    }
}

// (F, N*S) product rows + bias -> (N, F, S) with S = OH*OW.
extern "C" __global__ void rows_to_nchw(const real_t* rows, const real_t* b, real_t* y, index_t N, index_t F,
                                        index_t S) {
    GRID_STRIDE_LOOP(idx, N * F * S) {
        const index_t s = idx % S, f = (idx / S) % F, n = idx / (F * S);
        y[idx] = rows[(f * N + n) * S + s] + b[f];
    }
}

// (N, F, S) -> (F, N*S): the inverse layout change, for the upstream gradient.
extern "C" __global__ void nchw_to_rows(const real_t* dy, real_t* rows, index_t N, index_t F, index_t S) {
    GRID_STRIDE_LOOP(idx, N * F * S) {
        const index_t s = idx % S, n = (idx / S) % N, f = idx / (N * S);
        rows[idx] = dy[(n * F + f) * S + s];
    }
}
