"""A run's metrics log: metrics.csv (one row per epoch) and metrics.png (its curves)."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

from f2f_cam.atomic import atomic_path, write_text

PLOT_EVERY_S = 30.0  # the plot costs ~0.3 s: at most this often, and once more at the end


class MetricsLog:
    """The rows of a run so far (restored from a checkpoint when resuming), written to
    ``run_dir`` after every epoch."""

    def __init__(self, run_dir: Path, history: list[dict] | None = None):
        self.run_dir = Path(run_dir)
        self.history: list[dict] = list(history or [])
        self._last_plot = -math.inf

    def add(self, row: dict) -> None:
        """Append an epoch's row; rewrite the CSV, and the plot when it is due."""
        self.history.append(row)
        plot = time.monotonic() - self._last_plot >= PLOT_EVERY_S
        self.write(plot=plot)

    def write(self, plot: bool = True) -> None:
        if not self.history:
            return
        write_csv(self.run_dir / "metrics.csv", self.history)
        if plot:
            plot_metrics(self.history, self.run_dir / "metrics.png")
            self._last_plot = time.monotonic()


def write_csv(path: Path, rows: list[dict]) -> None:
    """All rows, columns in order of first appearance."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def plot_metrics(history: list[dict], path: Path) -> None:
    """Training losses, validation PSNR, validation SSIM and L1, against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("loss_D", "loss_G_gan"):
        axes[0].plot(ep, [r.get(key, math.nan) for r in history], marker=".", label=key)
    axes[0].plot(ep, [r.get("loss_G_l1", math.nan) * 10 for r in history], marker=".", label="loss_G_l1 x10")
    axes[0].set_title("training losses (last step of each epoch)")
    axes[1].plot(ep, [r["val_psnr"] for r in history], marker=".", color="tab:green")
    axes[1].set_title("validation PSNR (dB)")
    axes[2].plot(ep, [r["val_ssim"] for r in history], marker=".", color="tab:purple", label="SSIM")
    axes[2].plot(ep, [r["val_l1"] for r in history], marker=".", color="tab:red", label="L1")
    axes[2].set_title("validation SSIM and L1")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # keeps the .png suffix: matplotlib picks the format from it
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
