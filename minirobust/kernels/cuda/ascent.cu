// The steepest-ascent steps and the projections of robust/balls.py, per example: g and delta are
// (N, D) with D = all the non-batch axes. Elementwise ones run one thread per entry; the others
// one thread per example, which walks its row (a row is a few thousand values; N is the batch).
// That keeps them gathers without shared memory, so host emulation checks them too; a block per
// example with a shared-memory reduction would use the card better at small batches.
#include "common.cuh"

// l_inf: eps * sign(g)
extern "C" __global__ void linf_ascent_step(const real_t* g, real_t* out, real_t eps, index_t n) {
    GRID_STRIDE_LOOP(k, n) {
        const real_t v = g[k];
        out[k] = v > 0 ? eps : (v < 0 ? -eps : (real_t)0);
    }
}

// ||row||_2 of one example's D values
__device__ __forceinline__ real_t row_l2_norm(const real_t* row, index_t D) {
    real_t sum = 0;
    for (index_t i = 0; i < D; ++i) sum += row[i] * row[i];
    return sqrt(sum);
}

__device__ __forceinline__ void scale_row(const real_t* row, real_t* out, real_t scale, index_t D) {
    for (index_t i = 0; i < D; ++i) out[i] = row[i] * scale;
}

// l_2: eps * g / ||g||_2, and 0 for a zero gradient
extern "C" __global__ void l2_ascent_step(const real_t* g, real_t* out, real_t eps, index_t N, index_t D) {
    GRID_STRIDE_LOOP(n, N) {
        const real_t norm = row_l2_norm(g + n * D, D);
        scale_row(g + n * D, out + n * D, norm > 0 ? eps / norm : (real_t)0, D);
    }
}

// l_1: all of eps on the first coordinate of largest |g|, with its sign
extern "C" __global__ void l1_ascent_step(const real_t* g, real_t* out, real_t eps, index_t N, index_t D) {
    GRID_STRIDE_LOOP(n, N) {
        const real_t* row = g + n * D;
        index_t top = 0;
        for (index_t i = 1; i < D; ++i)
            if (fabs(row[i]) > fabs(row[top])) top = i;
        for (index_t i = 0; i < D; ++i) out[n * D + i] = 0;
        const real_t v = row[top];
        out[n * D + top] = v > 0 ? eps : (v < 0 ? -eps : (real_t)0);
    }
}

// l_p, 1 < p < inf: eps * sign(g) |g|^(q-1) / || |g|^(q-1) ||_p with 1/p + 1/q = 1; |g| is
// scaled by its maximum first so that the powers neither overflow nor underflow
extern "C" __global__ void lp_ascent_step(const real_t* g, real_t* out, real_t p, real_t eps, index_t N,
                                          index_t D) {
    const real_t q = p / (p - 1);
    GRID_STRIDE_LOOP(n, N) {
        const real_t* row = g + n * D;
        real_t m = 0;
        for (index_t i = 0; i < D; ++i) m = fabs(row[i]) > m ? fabs(row[i]) : m;
        const real_t safe_m = m > 0 ? m : (real_t)1;
        real_t sum = 0;  // ||r||_p^p with r = (|g| / m)^(q-1), whose maximum is 1 (or 0)
        for (index_t i = 0; i < D; ++i) sum += pow(pow(fabs(row[i]) / safe_m, q - 1), p);
        const real_t denom = pow(sum, (real_t)1 / p);
        const real_t scale = denom > 0 ? eps / denom : (real_t)0;
        for (index_t i = 0; i < D; ++i) {
            const real_t v = row[i];
            const real_t r = pow(fabs(v) / safe_m, q - 1);
            out[n * D + i] = (v > 0 ? r : (v < 0 ? -r : (real_t)0)) * scale;
        }
    }
}

// projections: the closest point of the eps-ball (per example)
extern "C" __global__ void linf_projection(const real_t* delta, real_t* out, real_t eps, index_t n) {
    GRID_STRIDE_LOOP(k, n) {
        const real_t v = delta[k];
        out[k] = v > eps ? eps : (v < -eps ? -eps : v);
    }
}

extern "C" __global__ void l2_projection(const real_t* delta, real_t* out, real_t eps, index_t N, index_t D) {
    GRID_STRIDE_LOOP(n, N) {  // rescale only the examples outside the ball
        const real_t norm = row_l2_norm(delta + n * D, D);
        scale_row(delta + n * D, out + n * D, norm > eps ? eps / norm : (real_t)1, D);
    }
}

// l_1 (Duchi et al. 2008): soft-threshold |v| at theta with sum(max(|v| - theta, 0)) = eps. The
// reference finds theta from the sorted magnitudes; here bisection brackets theta, and theta is
// then computed exactly from the entries above it, (sum of those |v| - eps) / their count.
extern "C" __global__ void l1_projection(const real_t* delta, real_t* out, real_t eps, index_t N, index_t D) {
    GRID_STRIDE_LOOP(n, N) {
        const real_t* row = delta + n * D;
        real_t total = 0, top = 0;
        for (index_t i = 0; i < D; ++i) {
            total += fabs(row[i]);
            top = fabs(row[i]) > top ? fabs(row[i]) : top;
        }
        if (total <= eps) {  // already inside: unchanged
            for (index_t i = 0; i < D; ++i) out[n * D + i] = row[i];
            continue;
        }
        real_t lo = 0, hi = top;  // f(theta) = sum max(|v| - theta, 0) falls from total to 0
        for (int it = 0; it < 100; ++it) {
            const real_t mid = (lo + hi) / 2;
            real_t f = 0;
            for (index_t i = 0; i < D; ++i) f += fabs(row[i]) > mid ? fabs(row[i]) - mid : (real_t)0;
            if (f > eps) lo = mid; else hi = mid;
        }
        real_t above = 0;
        index_t count = 0;
        for (index_t i = 0; i < D; ++i)
            if (fabs(row[i]) > lo) { above += fabs(row[i]); ++count; }
        const real_t theta = count > 0 ? (above - eps) / count : (real_t)0;
        for (index_t i = 0; i < D; ++i) {
            const real_t v = row[i], w = fabs(v) > theta ? fabs(v) - theta : (real_t)0;
            out[n * D + i] = v > 0 ? w : (v < 0 ? -w : (real_t)0);
        }
    }
}
