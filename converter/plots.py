"""The converter's figures: headless matplotlib, a log grid, a legend where lines are labelled, and a
PNG written beside the JSON report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def figure(out: Path, figsize: tuple[float, float], cols: int = 1) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, (w, h)) as (fig, ax):`` draw; on leaving, the figure is finished and saved
    (``ax`` is an array of ``cols`` axes when ``cols > 1``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, cols, figsize=figsize)
    try:
        yield fig, axes
        for ax in np.atleast_1d(axes):
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
