"""Plots of a search: the architecture weights of a DARTS search per epoch; a SPOS search's accuracy against FLOPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def plot_pareto(
  path: str | Path,
  flops: Sequence[float] | np.ndarray,
  val_accuracy: Sequence[float] | np.ndarray,
  searched: tuple[float, float, float],
  random_flops: Sequence[float] | np.ndarray = (),
  random_val_accuracy: Sequence[float] | np.ndarray = (),
  random_test_accuracy: Sequence[float] | np.ndarray = (),
  constraints_range: Mapping[str, Any] | None = None,
) -> bool:
  """Plots accuracy against MFLOPs of a SPOS search into a PNG file (two panels).

  Left, validation accuracy (what the search ranked by): every subnet the
  search rated, the random subnets and the searched one. Right, held-out test
  accuracy: the random subnets (their median dashed) and the searched one.
  A FLOPs bound of ``constraints_range`` is drawn as a vertical line.

  Args:
    path: the image to write.
    flops: MFLOPs per image of the rated subnets.
    val_accuracy: their validation accuracies.
    searched: ``(MFLOPs, validation accuracy, test accuracy)`` of the searched subnet.
    random_flops: MFLOPs of the random (constrained) subnets.
    random_val_accuracy: their validation accuracies.
    random_test_accuracy: their test accuracies.
    constraints_range: the search's constraints (only ``flops`` is drawn).

  Returns:
    Whether a plot was written (``False`` without matplotlib).

  Example:
    >>> import pathlib, tempfile
    >>> from jaxmutate.runners.plots import plot_pareto
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   plot_pareto(pathlib.Path(folder) / "pareto.png", [0.3, 0.4], [0.8, 0.9], (0.4, 0.9, 0.88),
    ...               [0.35], [0.85], [0.84], {"flops": (0.0, 0.45)})
    True
  """
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  fig, (val_ax, test_ax) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
  val_ax.plot(np.asarray(flops), np.asarray(val_accuracy), ".", color="0.65", markersize=4, label="rated by the search")
  if len(random_flops):
    val_ax.plot(random_flops, random_val_accuracy, "x", color="tab:orange", label="random, same constraint")
    test_ax.plot(random_flops, random_test_accuracy, "x", color="tab:orange", label="random, same constraint")
    median = float(np.median(np.asarray(random_test_accuracy)))
    test_ax.axhline(median, color="tab:orange", linestyle="--", linewidth=1, label=f"random median {median:.3f}")
  val_ax.plot(searched[0], searched[1], "*", color="tab:red", markersize=14, label="searched")
  test_ax.plot(searched[0], searched[2], "*", color="tab:red", markersize=14, label=f"searched {searched[2]:.3f}")
  bounds = (constraints_range or {}).get("flops")
  high = bounds if isinstance(bounds, (int, float)) else (bounds[1] if bounds else None)
  for ax, title in ((val_ax, "validation accuracy (what the search ranked by)"), (test_ax, "test accuracy (held out)")):
    if high is not None:
      ax.axvline(float(high), color="0.3", linestyle=":", linewidth=1, label=f"FLOPs budget {float(high):g}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("MFLOPs per image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  val_ax.set_ylabel("accuracy (supernet weights, BN recalibrated)", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


__all__ = ["plot_arch_weights", "plot_pareto"]
