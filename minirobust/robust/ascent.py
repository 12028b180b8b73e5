"""The ascent step: the one routine that moves inputs uphill inside an uncertainty set.

Algorithm 1's training step, the fast method and PGD all do the same thing to a batch:

    one step  (the paper's):  x' = clip(x + argmax_{delta in ball} <g, delta>),  g = dJ/dx at x
    k steps   (projected):    x_0 = clip(x + project(start))      (start = 0 without a random start)
                              x_{t+1} = clip(x + project(x_t + step_t - x)),
                              step_t = steepest ascent of size ``step_size`` at x_t

``clip`` keeps the input bounds (skipped when ``bounds`` is None, the paper's unclipped
setting) and ``project`` is the exact projection onto the ball. One step needs no projection:
the steepest-ascent step has norm eps exactly.

The trainer (``RobustTrainer.perturb``) and the attacks (``fast_method``, ``pgd``) call this,
so they cannot drift apart; the attacks add their success flags on top, the trainer does not
need them. The gradient is the model's input gradient, in evaluation mode unless told otherwise.
"""

from __future__ import annotations

from ..backend import get_xp
from ..errors import InputError
from .balls import Ball


def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps (Madry et al.): enough to cross the ball and come back."""
    return 2.5 * eps / steps


def clip_to_bounds(x, bounds):
    """x clipped to ``bounds = (low, high)``; unchanged when bounds is None."""
    if bounds is None:
        return x
    return get_xp(x).clip(x, bounds[0], bounds[1])


def ascent_gradient(model, x, y, targeted=False, train=False):
    """The direction to climb: dJ(x, y)/dx, or minus it for a targeted attack (whose loss on
    the target labels ``y`` goes down). Evaluation mode unless ``train``."""
    g = model.input_gradient(x, y, train=train)
    return -g if targeted else g


def ascend(model, x, y, ball: Ball, steps: int = 1, step_size=None, start=None, bounds=(0.0, 1.0),
           targeted=False, train=False, gradient=None):
    """Worst-case inputs x' in ``ball`` around ``x`` (first order), for labels ``y``.

    x: (N, ...) inputs; y: (N,) labels (host arrays are moved to the model's device, as
    ``model.forward`` moves them); ball: the uncertainty set.
    steps=1 with no ``start``: the paper's single steepest-ascent step of size eps.
    Otherwise ``steps`` projected steps of ``step_size`` (default ``default_step_size``),
    from ``x + project(start)`` when a start offset (N, ...) is given.
    ``train``: take the gradients in training mode (dropout on, BatchNorm on batch statistics),
    as the paper's authors did in Algorithm 1; attacks always use evaluation mode.
    ``gradient``: a function x_adv -> the gradient to climb there, for an objective other than
    the cross-entropy of ``y`` (TRADES climbs a KL divergence); default ``ascent_gradient``.
    Returns x' (a new array; ``x`` is not modified).
    """
    steps = int(steps)
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    x, y = model.on_device(x, "ascent input"), model.on_device(y, "labels")
    start = model.on_device(start, "start offset")
    if gradient is None:
        def gradient(x_at):
            return ascent_gradient(model, x_at, y, targeted, train)
    if steps == 1 and start is None and step_size is None:
        return clip_to_bounds(x + ball.steepest_ascent(gradient(x)), bounds)
    alpha = default_step_size(ball.eps, steps) if step_size is None else float(step_size)
    x_adv = x if start is None else clip_to_bounds(x + ball.project(start), bounds)
    for _ in range(steps):
        x_adv = projected_step(x, x_adv, gradient(x_adv), ball, alpha, bounds)
    return x_adv


def projected_step(x, x_adv, g, ball: Ball, step_size, bounds):
    """One projected step from ``x_adv`` along gradient ``g``: a steepest-ascent step of size
    ``step_size``, projected back onto the ball around ``x`` and clipped to the bounds
    (``ascend`` and PGD share it)."""
    step = ball.steepest_ascent(g, eps=step_size)
    return clip_to_bounds(x + ball.project(x_adv + step - x), bounds)
