// Shared by every kernel of the GPU tier (minirobust/kernels/gpu.py).
//
// dtype: each source is compiled once per floating type with -DREAL=float or -DREAL=double,
// and every kernel computes in real_t: nothing is hard-coded to float.
// Indexing: 64-bit, and every kernel is ONE grid-stride loop over its outputs, so any grid size
// covers the whole problem. Each thread writes only its own outputs (gathers, no atomics), so
// results do not depend on scheduling: the same numbers on every run.
// Host emulation (tests): with -DMINIROBUST_HOST_EMULATION, g++ compiles the same sources with
// host_shim.h, where a launch is one "thread" that walks the whole grid-stride loop serially.
#pragma once
#ifdef MINIROBUST_HOST_EMULATION
#include "host_shim.h"
#endif

#ifndef REAL
#error "compile each kernel source with -DREAL=float or -DREAL=double"
#endif
typedef REAL real_t;
typedef long long index_t;

#define GRID_STRIDE_LOOP(i, n)                                                   \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);    \
         i += (index_t)blockDim.x * gridDim.x)

// The first pooling/convolution window that contains output position `pos` along one axis,
// and the last one (inclusive): windows start at q*S and cover K positions.
__device__ __forceinline__ index_t first_window(index_t pos, index_t K, index_t S) {
    index_t q = pos - K + 1;
    return q <= 0 ? 0 : (q + S - 1) / S;
}
