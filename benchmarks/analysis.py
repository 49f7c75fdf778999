"""Channel analysis of an unmodified model: how long it takes, how many traces, and what pruning buys.

Measures, in one process:

a. ``analyze_channels`` on torchvision's ResNet-50 at 224x224 (abstract variables and input: nothing runs at
   224 during the analysis): wall time (median of repeats, each a fresh analysis), the number of times
   ``model.apply`` is traced (must be 1), units found, MACs and parameters before/after pruning 50% of every
   unit (``round_to=8``).
b. The exported (rewritten) pruned network against the unpruned one: latency ratio and MACs ratio side by side
   (ResNet-18, batch 8; interleaved runs, median of per-repetition ratios).

``--quick`` is a smoke run (ResNet-18 at 64x64, few repetitions). Writes ``benchmarks/results/analysis.json``.

Run: ``PYTHONPATH=. python benchmarks/analysis.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))
from analysis_zoo import torchvision_resnet  # noqa: E402

from jaxmutate.analysis import analyze_channels, pruned_function  # noqa: E402


def analysis_time(depth: int, size: int, repeats: int) -> dict:
  net = torchvision_resnet(depth)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  traces = []

  def apply(v, *args):
    traces[-1] += 1
    return net.apply(v, *args)

  times = []
  for _ in range(repeats):
    traces.append(0)
    start = time.perf_counter()
    analysis = analyze_channels(apply, variables, x)
    times.append(time.perf_counter() - start)
  counts = analysis.uniform_counts(0.5, round_to=8)
  kept = analysis.first_channels(counts)
  before, after = analysis.costs(), analysis.costs(analysis.kept_masks(kept))
  return {
    "model": f"ResNet-{depth}",
    "input": [1, size, size, 3],
    "analysis_s_median": statistics.median(times),
    "analysis_s_all": times,
    "traces_per_analysis": traces,
    "units": len(analysis.groups),
    "excluded": len(analysis.excluded),
    "params_before": float(before["params"]),
    "params_after": float(after["params"]),
    "macs_before": float(before["macs"]),
    "macs_after": float(after["macs"]),
  }


def latency(depth: int, size: int, batch: int, repeats: int) -> dict:
  net = torchvision_resnet(depth)
  x = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x)
  variables = jax.tree_util.tree_map(lambda s: (np.abs(rng.normal(size=s.shape)) * 0.1 + 0.5).astype(s.dtype), shapes)
  analysis = analyze_channels(net, variables, x)
  kept = analysis.first_channels(analysis.uniform_counts(0.5, round_to=8))
  small = analysis.slice_variables(variables, kept)
  full_fn = jax.jit(net.apply)
  pruned_fn = jax.jit(pruned_function(analysis, kept))
  full_fn(variables, x).block_until_ready()
  pruned_fn(small, x).block_until_ready()

  def timed(fn, v):
    start = time.perf_counter()
    fn(v, x).block_until_ready()
    return time.perf_counter() - start

  ratios, full_times, pruned_times = [], [], []
  for _ in range(repeats):
    full_t, pruned_t = timed(full_fn, variables), timed(pruned_fn, small)
    full_times.append(full_t)
    pruned_times.append(pruned_t)
    ratios.append(pruned_t / full_t)
  before, after = analysis.costs(), analysis.costs(analysis.kept_masks(kept))
  return {
    "model": f"ResNet-{depth}",
    "input": [batch, size, size, 3],
    "latency_ratio_median": statistics.median(ratios),
    "macs_ratio": float(after["macs"]) / float(before["macs"]),
    "params_ratio": float(after["params"]) / float(before["params"]),
    "full_ms_median": 1e3 * statistics.median(full_times),
    "pruned_ms_median": 1e3 * statistics.median(pruned_times),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="smoke run: small inputs, few repetitions")
  parser.add_argument("--out", default="benchmarks/results/analysis.json")
  args = parser.parse_args()
  if args.quick:
    result = {"analysis": analysis_time(18, 64, 2), "latency": latency(18, 64, 2, 3)}
  else:
    result = {"analysis": analysis_time(50, 224, 5), "latency": latency(18, 224, 8, 15)}
  result["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "jax": jax.__version__}
  a, b = result["analysis"], result["latency"]
  print(
    f"{a['model']} {a['input']}: analysis {a['analysis_s_median']:.2f} s (median), traces per analysis "
    f"{a['traces_per_analysis']}, {a['units']} units; params {a['params_before'] / 1e6:.2f} M -> "
    f"{a['params_after'] / 1e6:.2f} M, MACs {a['macs_before'] / 1e9:.3f} G -> {a['macs_after'] / 1e9:.3f} G"
  )
  print(
    f"{b['model']} {b['input']} pruned 50%: latency ratio {b['latency_ratio_median']:.3f} vs MACs ratio "
    f"{b['macs_ratio']:.3f} (full {b['full_ms_median']:.1f} ms, pruned {b['pruned_ms_median']:.1f} ms)"
  )
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
