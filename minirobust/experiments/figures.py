"""Figures as PNG files (matplotlib, imported only when a figure is drawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MinirobustError


def _plt():
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise MinirobustError("figures need matplotlib: pip install 'minirobust[plot]'") from exc
    return plt


def plot_accuracy_vs_eps(curves: dict, path, title="accuracy under the fast method", xlabel="eps (pixel scale)"):
    """curves: {label: [(eps, accuracy), ...]} -> one line per label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for label, points in curves.items():
        e, a = zip(*points)
        ax.plot(e, 100 * np.asarray(a), marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_adversarial_grid(x_clean, x_adv, pred_clean, pred_adv, path, title="clean (top) vs adversarial (bottom)",
                          max_images=8, mark_changed=False):
    """Two rows: clean images with their predicted labels above, adversarial ones below.

    x_*: (M, C, H, W) in [0, 1]. ``mark_changed`` circles the pixels that differ (single-pixel attacks).
    """
    plt = _plt()
    m = min(max_images, len(x_clean))
    fig, axes = plt.subplots(2, m, figsize=(1.3 * m, 3.4), dpi=120, squeeze=False)
    for j in range(m):
        for row, (imgs, preds) in enumerate(((x_clean, pred_clean), (x_adv, pred_adv))):
            ax = axes[row, j]
            img = np.asarray(imgs[j])
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
            ax.set_title(f"pred {int(preds[j])}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if mark_changed and row == 1:
                diff = np.abs(np.asarray(x_adv[j]) - np.asarray(x_clean[j])).sum(axis=0)
                ys, xs = np.nonzero(diff > 0)
                ax.scatter(xs, ys, s=60, facecolors="none", edgecolors="red", linewidths=1)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
