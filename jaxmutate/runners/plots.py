"""Plots of a search: the architecture weights of a DARTS search per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def plot_arch_weights(path: str | Path, log: Mapping[str, Any]) -> bool:
  """Plots each group's architecture weights per epoch into a PNG file.

  Args:
    path: the image to write.
    log: ``{"choice_names": {group alias: [candidate names]}, "history":
      [{"epoch": e, "weights": {group alias: [weight per candidate]}}, ...]}``
      (what :class:`~jaxmutate.runners.DARTS` writes to ``arch_weights.json``).

  Returns:
    Whether a plot was written: ``False`` without matplotlib or history.

  Example:
    >>> import pathlib, tempfile
    >>> from jaxmutate.runners import plot_arch_weights
    >>> log = {"choice_names": {"normal_n2_p0": ["zero", "skip_connect"]},
    ...        "history": [{"epoch": 0, "weights": {"normal_n2_p0": [0.5, 0.5]}},
    ...                    {"epoch": 1, "weights": {"normal_n2_p0": [0.2, 0.8]}}]}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   plot_arch_weights(pathlib.Path(folder) / "arch_weights.png", log)
    True
  """
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  keys = list(log["choice_names"])
  if not log["history"]:
    return False
  cols = min(6, len(keys))
  rows = -(-len(keys) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
  epochs = [h["epoch"] for h in log["history"]]
  # Op groups share one figure legend (their candidates); routes (edge names
  # that differ per node) get their own small legends.
  op_names = max((tuple(names) for names in log["choice_names"].values()), key=len)
  legend_axis = None
  for ax, key in zip(axes.flat, keys):
    series = np.asarray([h["weights"][key] for h in log["history"]])
    for i, name in enumerate(log["choice_names"][key]):
      ax.plot(epochs, series[:, i], label=name)
    ax.set_title(key, fontsize=8)
    ax.tick_params(labelsize=6)
    if tuple(log["choice_names"][key]) == op_names:
      legend_axis = legend_axis or ax
    else:
      ax.legend(fontsize=5)
  for ax in list(axes.flat)[len(keys) :]:
    ax.axis("off")
  handles, labels = (legend_axis or axes.flat[0]).get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7)
  fig.suptitle("DARTS architecture weights (softmax of logits) per epoch")
  fig.tight_layout(rect=(0, 0.06, 1, 0.96))
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return True


__all__ = ["plot_arch_weights"]
