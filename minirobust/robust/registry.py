"""Every attack by name, in one place (the command line's --method, and anyone choosing an
attack by its name). Each follows the contract of attack_base.py. The suite's versions
(suite.py) are not attacks but lists of these with budgets.
"""

from __future__ import annotations

from .apgd import apgd
from .attacks import fast_method, pgd, single_pixel
from .fab import fab
from .square import square

ATTACKS = {"fast": fast_method, "pgd": pgd, "single-pixel": single_pixel, "apgd": apgd, "square": square, "fab": fab}
