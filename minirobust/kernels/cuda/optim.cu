// SGD with momentum and weight decay, in place on param and velocity (reference.sgd_momentum_step):
//     v <- momentum * v - (lr * g + lr * wd * W);   W <- W + v
#include "common.cuh"

extern "C" __global__ void sgd_momentum_step(real_t* param, const real_t* grad, real_t* velocity, real_t lr,
                                             real_t wd, real_t momentum, index_t n) {
    GRID_STRIDE_LOOP(k, n) {
        const real_t step = lr * grad[k] + (lr * wd) * param[k];
        velocity[k] = velocity[k] * momentum - step;
        param[k] += velocity[k];
    }
}
