// Lets g++ compile the CUDA sources for a serial run on the host (tests only).
// Every kernel is a grid-stride loop, so one "thread" (block 0 of 1, thread 0 of 1) that runs the
// loop visits every index once: the launch becomes a plain function call.
#pragma once
#define __global__
#define __device__
#define __forceinline__ inline
struct mr_dim3 { unsigned int x, y, z; };
static const mr_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static const mr_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#include <cmath>
using std::fabs;  // the device math functions the kernels call, with float and double overloads
using std::pow;
using std::sqrt;
