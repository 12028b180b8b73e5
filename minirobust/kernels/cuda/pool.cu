// Max-pooling forward (value and argmax) and backward (a gather: no atomics).
// Padding never wins: only positions inside the image are compared (padding <= kernel / 2, so
// every window has one). Ties go to the first position in row-major window order (strict >);
// the first NaN of a window wins, so NaN propagates as in the reference tier.
#include "common.cuh"

extern "C" __global__ void maxpool_forward(const real_t* x, real_t* y, index_t* argmax, index_t N, index_t C,
                                           index_t H, index_t W, index_t KH, index_t KW, index_t SH, index_t SW,
                                           index_t PH, index_t PW, index_t OH, index_t OW) {
    GRID_STRIDE_LOOP(idx, N * C * OH * OW) {
        const index_t ow = idx % OW, oh = (idx / OW) % OH, nc = idx / (OH * OW);
        const real_t* plane = x + nc * H * W;
        index_t best_k = -1;
        real_t best = 0;
        for (index_t i = 0; i < KH; ++i) {
            const index_t h = oh * SH + i - PH;
            if (h < 0 || h >= H) continue;
            for (index_t j = 0; j < KW; ++j) {
                const index_t w = ow * SW + j - PW;
                if (w < 0 || w >= W) continue;
                const real_t v = plane[h * W + w];
                // the first NaN wins and stays, as NumPy's max/argmax do (a NaN is never hidden)
                if (best_k < 0 || v > best || (v != v && best == best)) { best = v; best_k = i * KW + j; }
            }
        }
        y[idx] = best;
        argmax[idx] = best_k;
    }
}

// Each input pixel sums the gradients of the windows it won.
extern "C" __global__ void maxpool_backward(const real_t* dy, const index_t* argmax, real_t* dx, index_t N,
                                            index_t C, index_t H, index_t W, index_t KH, index_t KW, index_t SH,
                                            index_t SW, index_t PH, index_t PW, index_t OH, index_t OW) {
    GRID_STRIDE_LOOP(idx, N * C * H * W) {
        const index_t w = idx % W, h = (idx / W) % H, nc = idx / (H * W);
        real_t sum = 0;
        for (index_t i = 0; i < KH; ++i) {
            const index_t th = h + PH - i;
            if (th < 0 || th % SH != 0 || th / SH >= OH) continue;
            for (index_t j = 0; j < KW; ++j) {
                const index_t tw = w + PW - j;
                if (tw < 0 || tw % SW != 0 || tw / SW >= OW) continue;
                const index_t out = (nc * OH + th / SH) * OW + tw / SW;
                if (argmax[out] == i * KW + j) sum += dy[out];
            }
        }
        dx[idx] = sum;
    }
}
