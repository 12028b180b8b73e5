"""Certified robustness: lower bounds on robust accuracy, beside the attacks' upper bounds.

An attack that fails to break a point proves nothing (a stronger one might succeed); a
certificate proves that NO perturbation in the ball changes the prediction. So on the same
weights and points: certified accuracy <= accuracy under any attack <= clean accuracy.

    ibp(model, x, y, eps)                   interval bounds through every layer (l_inf)
    lipschitz_certify(model, x, y, eps)     the product of per-layer operator norms (l_2, l_inf)
    smooth(model, x, y, sigma, n0, n)       randomized smoothing: a certified l_2 radius of a
                                            smoothed classifier (probabilistic, at level alpha)
IBP training is the trainer's ``ibp`` method (robust/methods.py).
"""

from .ibp import Certificate, ibp, ibp_loss_and_grads, worst_case_logits
from .intervals import IntervalPass, input_box
from .lipschitz import layer_norms, lipschitz_certify, lipschitz_constant, spectral_norm
from .smoothing import clopper_pearson_lower, smooth

__all__ = ["Certificate", "IntervalPass", "clopper_pearson_lower", "ibp", "ibp_loss_and_grads", "input_box",
           "layer_norms", "lipschitz_certify", "lipschitz_constant", "smooth", "spectral_norm", "worst_case_logits"]
