// The optimisers' updates. SGD with momentum and weight decay, in place on param and velocity
// (reference.sgd_momentum_step):
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

// Adam with bias correction, in place on param, m and v (reference.adam_step). The host passes
// one_minus_beta1 = 1 - beta1 and the bias corrections c1 = 1 - beta1^t, c2 = 1 - beta2^t.
extern "C" __global__ void adam_step(real_t* param, const real_t* grad, real_t* m, real_t* v, real_t lr, real_t wd,
                                     real_t beta1, real_t beta2, real_t one_minus_beta1, real_t one_minus_beta2,
                                     real_t c1, real_t c2, real_t eps, index_t n) {
    GRID_STRIDE_LOOP(k, n) {
        const real_t g = wd != 0 ? grad[k] + wd * param[k] : grad[k];
        m[k] = m[k] * beta1 + one_minus_beta1 * g;
        v[k] = v[k] * beta2 + one_minus_beta2 * g * g;
        param[k] -= lr * (m[k] / c1) / (sqrt(v[k] / c2) + eps);
    }
}
