"""Robust optimization: uncertainty sets, attacks, Algorithm 1, evaluation."""

from .apgd import apgd
from .ascent import ascend
from .attack_base import AttackResult, pick_targets
from .attacks import fast_method, per_example_loss, pgd, single_pixel
from .balls import Ball, lp_norm, parse_norm, project_l1, project_lp
from .evaluate import (
    AdversarialSet,
    accuracy_on_set,
    accuracy_vs_eps,
    adversarial_set,
    full_range_check,
    norm_stats,
    robust_accuracy,
)
from .fab import fab
from .masking import masking_checks
from .registry import ATTACKS
from .square import square
from .suite import VERSIONS, SuiteResult, run_suite
from .trainer import RobustTrainer, TrainConfig

__all__ = [
    "ATTACKS", "VERSIONS", "AdversarialSet", "SuiteResult", "apgd", "fab", "masking_checks", "pick_targets", "run_suite",
    "square", "ascend", "AttackResult", "Ball", "RobustTrainer", "TrainConfig", "accuracy_on_set",
    "accuracy_vs_eps", "adversarial_set", "fast_method", "full_range_check", "lp_norm", "norm_stats",
    "parse_norm", "per_example_loss", "pgd", "project_l1", "project_lp", "robust_accuracy", "single_pixel",
]
