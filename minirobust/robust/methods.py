"""Training methods: what one step of robust training descends on.

Every method answers one question for a minibatch (x, y): which loss, on which inputs, do the
parameters descend? The trainer (``trainer.py``) does the rest (the optimiser step, epochs,
checkpoints), so a new method is one small class here.

    paper     Algorithm 1 (Shaham et al.): x' = one steepest-ascent step (or k projected steps
              from x itself); descend CE(x', y). ``alpha`` gives Goodfellow's mix
              alpha * CE(x) + (1 - alpha) * CE(x').
    pgd       Madry et al. 2018: x' = k projected steps from a uniform random point of the ball,
              step size 2.5 * eps / k by default; descend CE(x', y) at the last iterate.
    fgsm-rs   Wong, Rice & Kolter 2020: a uniform random start, ONE step of size 1.25 * eps,
              projected back onto the ball; descend CE(x', y).
    trades    Zhang et al. 2019: x' = k steps ascending KL(p(x) || p(x')) from x + 0.001 N(0, 1);
              descend CE(x, y) + beta * KL(p(x) || p(x')), whose gradient reaches the
              parameters through BOTH the clean and the perturbed forward pass.
    ibp       Gowal et al. 2018: no ascent; descend kappa * CE(x) + (1 - kappa) * CE of the
              worst-case logits that interval bounds allow over the whole l_inf box.

The ascent of every method is ``ascent.ascend``, the routine the attacks use. Random starts come
from the trainer's own generator (``noise_rng``), saved in checkpoints, so a resumed run draws
the same starts as an uninterrupted one.
"""

from __future__ import annotations

from ..backend import get_xp
from ..errors import InputError
from ..losses import SoftmaxCrossEntropy, log_softmax
from .ascent import ascend


def descend_on(model, x, y):
    """(loss, {parameter: gradient}, correct) of the mean cross-entropy at (x, y), training mode.
    No input gradient: a descent step needs only the parameters' (for a convnet this skips the
    first convolution's col2im)."""
    logits = model.forward(x, train=True)
    loss_fn = SoftmaxCrossEntropy()
    loss = float(loss_fn.forward(logits, y))
    model.backward(loss_fn.backward(), param_grads=True, input_grad=False)
    return loss, model.gradients(), int((logits.argmax(axis=1) == y).sum())


def _copied(grads):
    """A second backward pass reuses the layers' gradient slots: keep a copy of the first's."""
    return {k: v.copy() for k, v in grads.items()}


class Method:
    """One training method. ``step`` returns (loss, grads, correct) for a batch; ``perturb``
    the inputs the method trains on (the ascent); ``ball`` carries the norm and this step's
    eps (the trainer shrinks it during an eps ramp)."""

    name = ""
    random_start = False
    default_steps = 1

    def __init__(self, config):
        self.config = config
        self.steps = config.ascent_steps or self.default_steps
        self.bounds = tuple(config.bounds) if config.clip else None
        self.train_mode = config.attack_mode == "train"

    def start(self, x, ball, rng):
        """The ascent's starting offset from x (host array), or None to start at x."""
        return ball.sample(x.shape, rng, dtype=x.dtype) if self.random_start else None

    def step_size(self, ball):
        return self.config.ascent_step_size  # None: ascend's default, 2.5 * eps / steps

    def perturb(self, model, x, y, ball, rng):
        start = self.start(x, ball, rng)
        step_size = self.step_size(ball)
        if self.steps == 1 and start is None:
            step_size = None  # the paper's single step of size eps
        return ascend(model, x, y, ball, steps=self.steps, step_size=step_size, start=start,
                      bounds=self.bounds, train=self.train_mode)

    def step(self, model, x, y, ball, rng):
        if ball is None or ball.eps == 0:
            return descend_on(model, x, y)
        return descend_on(model, self.perturb(model, x, y, ball, rng), y)


class Paper(Method):
    """Algorithm 1: ascent from x itself, descent on the perturbed batch (or Goodfellow's mix)."""

    name = "paper"

    def step(self, model, x, y, ball, rng):
        if ball is None or ball.eps == 0:
            return descend_on(model, x, y)
        x_adv = self.perturb(model, x, y, ball, rng)
        loss, grads, correct = descend_on(model, x_adv, y)
        alpha = self.config.alpha
        if alpha is not None:
            grads = _copied(grads)
            clean_loss, clean_grads, _ = descend_on(model, x, y)
            grads = {k: alpha * clean_grads[k] + (1 - alpha) * grads[k] for k in grads}
            loss = alpha * clean_loss + (1 - alpha) * loss
        return loss, grads, correct


class PGD(Method):
    """Madry et al.: k projected steps from a uniform random start in the ball."""

    name = "pgd"
    random_start = True
    default_steps = 10


class FGSMRandomStart(Method):
    """Wong et al.: a uniform random start, one projected step of 1.25 * eps."""

    name = "fgsm-rs"
    random_start = True

    def step_size(self, ball):
        given = self.config.ascent_step_size
        return 1.25 * ball.eps if given is None else given


class Trades(Method):
    """Zhang et al.: CE on the clean batch plus beta times the KL divergence between the clean
    and the perturbed predictions; the perturbation ascends that KL term."""

    name = "trades"
    default_steps = 10
    start_scale = 0.001  # x + 0.001 * N(0, 1), TRADES's start

    def start(self, x, ball, rng):
        return (self.start_scale * rng.standard_normal(x.shape)).astype(x.dtype)

    def perturb(self, model, x, y, ball, rng):
        x = model.on_device(x, "training batch")
        p_clean = get_xp(x).exp(log_softmax(model.forward(x, train=self.train_mode)))

        def kl_gradient(x_adv):  # d/dx' of sum_i KL(p_i || q_i(x')): dz' = q - p per row
            z_adv = model.forward(x_adv, train=self.train_mode)
            q = get_xp(z_adv).exp(log_softmax(z_adv))
            return model.backward((q - p_clean).astype(z_adv.dtype, copy=False), param_grads=False)

        return ascend(model, x, y, ball, steps=self.steps, step_size=self.step_size(ball),
                      start=self.start(x, ball, rng), bounds=self.bounds, gradient=kl_gradient)

    def step(self, model, x, y, ball, rng):
        if ball is None or ball.eps == 0:
            return descend_on(model, x, y)
        return trades_loss_and_grads(model, x, self.perturb(model, x, y, ball, rng), y, self.config.beta)


def trades_loss_and_grads(model, x, x_adv, y, beta):
    """(loss, grads, correct) of  mean_i [CE(z_i, y_i) + beta * KL(p_i || q_i)],  z = f(x),
    p = softmax(z), q = softmax(f(x')), with x' held fixed. Training mode.

    The loss depends on the parameters through both passes:
        dL/dz  = (p - onehot(y)) + beta * p * (a - <p, a>),   a = log p - log q
        dL/dz' = beta * (q - p)
    (each over N for the mean). One forward cache at a time: the perturbed pass is run and
    taken back first, then the clean pass is run again for its own backward; the parameter
    gradients of the two add up. (With dropout the re-run draws a new mask; the nets trained
    this way here have none.)
    """
    xp = get_xp(x_adv)
    N = x_adv.shape[0]
    logp = log_softmax(model.forward(x, train=True))
    logq = log_softmax(model.forward(x_adv, train=True))  # the cache now holds the perturbed pass
    p, q = xp.exp(logp), xp.exp(logq)
    kl = (p * (logp - logq)).sum(axis=1)
    dz_adv = beta * (q - p) / N
    model.backward(dz_adv.astype(logq.dtype, copy=False), param_grads=True, input_grad=False)
    grads_adv = _copied(model.gradients())
    correct = int((logq.argmax(axis=1) == y).sum())  # accuracy on the inputs the step trained on
    logits = model.forward(x, train=True)  # the clean pass again, for its own backward
    loss_fn = SoftmaxCrossEntropy()
    ce = float(loss_fn.forward(logits, y))
    a = logp - logq
    dz = loss_fn.backward() + beta * p * (a - (p * a).sum(axis=1, keepdims=True)) / N
    model.backward(dz.astype(logits.dtype, copy=False), param_grads=True, input_grad=False)
    grads = {k: v + grads_adv[k] for k, v in model.gradients().items()}
    return ce + beta * float(kl.mean()), grads, correct


class IBP(Method):
    """Gowal et al. 2018: kappa * CE(clean) + (1 - kappa) * CE(worst-case logits of the interval
    bounds over the l_inf box), kappa going from 1 to 1/2 while eps ramps up. No ascent: the
    bounds cover every point of the box at once (certify/intervals.py)."""

    name = "ibp"
    final_kappa = 0.5

    def perturb(self, model, x, y, ball, rng):
        raise InputError("the ibp method trains on interval bounds, not on perturbed inputs")

    def kappa(self, ball) -> float:
        fraction = ball.eps / self.config.eps if self.config.eps else 1.0
        return 1.0 - (1.0 - self.final_kappa) * fraction

    def step(self, model, x, y, ball, rng):
        from ..certify.ibp import ibp_loss_and_grads  # noqa: PLC0415 - certify builds on robust

        if ball is None or ball.eps == 0:
            return descend_on(model, x, y)
        kappa = self.kappa(ball)
        clean_loss, clean_grads, _ = descend_on(model, x, y)
        clean_grads = _copied(clean_grads)
        bound_loss, bound_grads, certified = ibp_loss_and_grads(model, x, y, ball.eps, self.bounds)
        grads = {k: kappa * clean_grads[k] + (1 - kappa) * bound_grads[k] for k in clean_grads}
        return kappa * clean_loss + (1 - kappa) * bound_loss, grads, certified  # "correct": certified


METHODS = {m.name: m for m in (Paper, PGD, FGSMRandomStart, Trades, IBP)}


def make_method(config) -> Method:
    if config.method not in METHODS:
        raise InputError(f"unknown training method {config.method!r}: choose one of {', '.join(METHODS)}")
    return METHODS[config.method](config)
