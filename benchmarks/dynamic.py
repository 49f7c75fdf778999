"""Cost of traced widths in a net of jaxmutate.dynamic layers, against the static net in the same run.

The net is MMRazor's channel benchmark network (``shared/anchors/mmrazor_bench``,
section f, ``TinyResNet``): stem conv 3->32, two residual blocks of two 3x3
convs (32), a stride-2 conv 32->64, one residual block (64), global pooling and
a dense head; every conv is followed by BatchNorm + ReLU. Its 5 channel units
(the stem tied to the residual outputs of its stage, each block's inner conv,
the stride-2 conv tied to the last block's output) take the candidates
0.25/0.5/0.75/1.0 of their width, as in MMRazor's run.

Figures (forward, eval-mode BatchNorm, batch 256, 32x32x3, everything jitted):

* ``static_full``: the same net written with ``nn.Conv``/``nn.BatchNorm`` (the
  baseline, same variables);
* ``static_min``: the static net sliced by hand to the min widths (the floor a
  traced width can approach);
* ``concrete_min``: the dynamic net with concrete min widths (each layer the
  sliced static layer, outputs zero-padded to the full width);
* ``traced_max`` / ``traced_min`` / ``traced_random_i``: the dynamic net with
  the widths passed as traced int32 arguments (one compile for all); convs
  dispatch among ``--conv-buckets`` buckets per axis, norms mask at full
  width (``--norm-buckets 1``, the layers' default).

Ratios are medians over rounds of interleaved runs of the ratio to
``static_full`` measured in the same round. Also recorded: the compile time of
the traced net and the number of traces after every width ran (1 = switching
widths never recompiles).

Usage::

  PYTHONPATH=. python benchmarks/dynamic.py           # real sizes (~2 minutes on 2 cores)
  PYTHONPATH=. python benchmarks/dynamic.py --quick   # smoke run (seconds)

For steady-state figures run it with the allocator setting of the README
(``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184``):
without it every 33 MB activation is mmapped and page-faulted afresh.
Writes ``benchmarks/results/dynamic.json`` (``--out`` to change; ``--quick``
writes only with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from machine import machine_info

from jaxmutate import dynamic

RATIOS = (0.25, 0.5, 0.75, 1.0)
# unit name -> full width
UNITS = {"stem": 32, "block1": 32, "block2": 32, "down": 64, "block3": 64}


class TinyResNet(nn.Module):
  """MMRazor's TinyResNet with dynamic layers; ``widths`` maps unit -> width (None: static full net)."""

  static: bool = False
  norm_buckets: int = 1
  conv_buckets: int = dynamic.DEFAULT_MAX_BUCKETS

  def conv_bn(self, x, features, stride, name, out_w=None, in_w=None, relu=True):
    if self.static:
      x = nn.Conv(features, (3, 3), strides=stride, use_bias=False, name=f"{name}_conv")(x)
      x = nn.BatchNorm(use_running_average=True, name=f"{name}_bn")(x)
    else:
      x = dynamic.DynamicConv(
        features, (3, 3), strides=stride, use_bias=False, max_buckets=self.conv_buckets, name=f"{name}_conv"
      )(x, out_w, in_w)
      x = dynamic.DynamicBatchNorm(use_running_average=True, max_buckets=self.norm_buckets, name=f"{name}_bn")(x, out_w)
    return nn.relu(x) if relu else x

  @nn.compact
  def __call__(self, x, widths: dict[str, Any] | None = None):
    w = widths or {}
    stem, b1, b2, down, b3 = (w.get(u) for u in UNITS)
    size = lambda unit, full: full if w.get(unit) is None or not self.static else w[unit]  # noqa: E731
    x = self.conv_bn(x, size("stem", 32), 1, "stem", stem)
    for name, inner in (("block1", b1), ("block2", b2)):
      y = self.conv_bn(x, size(name, 32), 1, f"{name}a", inner, stem)
      x = nn.relu(x + self.conv_bn(y, size("stem", 32), 1, f"{name}b", stem, inner, relu=False))
    x = self.conv_bn(x, size("down", 64), 2, "down", down, stem)
    y = self.conv_bn(x, size("block3", 64), 1, "block3a", b3, down)
    x = nn.relu(x + self.conv_bn(y, size("down", 64), 1, "block3b", down, b3, relu=False))
    x = x.mean((1, 2))
    if self.static:
      return nn.Dense(10, name="fc")(x)
    return dynamic.DynamicDense(10, name="fc")(x, in_width=down)


def unit_widths(ratios: dict[str, float]) -> dict[str, int]:
  return {u: int(UNITS[u] * r) for u, r in ratios.items()}


def traced_widths(values: dict[str, jax.Array]) -> dict[str, dynamic.Width]:
  return {
    u: dynamic.Width(v, UNITS[u], candidates=tuple(int(UNITS[u] * r) for r in RATIOS), unit=u)
    for u, v in values.items()
  }


# layer -> (input unit, output unit); None is the fixed 3-channel input or the 10 logits.
LAYERS = {
  "stem": (None, "stem"),
  "block1a": ("stem", "block1"),
  "block1b": ("block1", "stem"),
  "block2a": ("stem", "block2"),
  "block2b": ("block2", "stem"),
  "down": ("stem", "down"),
  "block3a": ("down", "block3"),
  "block3b": ("block3", "down"),
}


def sliced_variables(variables: dict, widths: dict[str, int]) -> dict:
  """The static net's variables at ``widths``: every kernel, norm and head sliced by hand."""
  params, stats = dict(variables["params"]), dict(variables["batch_stats"])
  for layer, (unit_in, unit_out) in LAYERS.items():
    n_in = 3 if unit_in is None else widths[unit_in]
    n_out = widths[unit_out]
    params[f"{layer}_conv"] = {"kernel": params[f"{layer}_conv"]["kernel"][:, :, :n_in, :n_out]}
    params[f"{layer}_bn"] = {k: v[:n_out] for k, v in params[f"{layer}_bn"].items()}
    stats[f"{layer}_bn"] = {k: v[:n_out] for k, v in stats[f"{layer}_bn"].items()}
  params["fc"] = {"kernel": params["fc"]["kernel"][: widths["down"]], "bias": params["fc"]["bias"]}
  return {"params": params, "batch_stats": stats}


def paired(fns: dict[str, Any], rounds: int, warmup: int) -> dict[str, dict[str, float]]:
  """Round-robin timing; per-round ratios to the first entry; medians."""
  for f in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(f())
  times = {n: [] for n in fns}
  for _ in range(rounds):
    for n, f in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f())
      times[n].append(time.perf_counter() - t)
  base = np.asarray(times[next(iter(fns))])
  return {
    n: {
      "median_ms": float(np.median(t) * 1e3),
      "ratio": float(np.median(np.asarray(t) / base)),
      "ratio_of_min_times": float(np.min(t) / np.min(base)),
    }
    for n, t in times.items()
  }


def run(
  batch: int, resolution: int, rounds: int, warmup: int, num_random: int, norm_buckets: int, conv_buckets: int
) -> dict[str, Any]:
  key = jax.random.key(0)
  x = jax.random.normal(key, (batch, resolution, resolution, 3))
  dyn = TinyResNet(norm_buckets=norm_buckets, conv_buckets=conv_buckets)
  variables = dyn.init(jax.random.key(1), x[:2])
  # Non-trivial statistics, so that eval-mode BatchNorm does real work.
  variables = jax.tree.map(lambda v: v + 0.01, variables)
  static = TinyResNet(static=True)

  traces = []

  # Variables and images are arguments, never constants that XLA would fold.
  def traced_forward(variables, x, values):
    traces.append(1)
    return dyn.apply(variables, x, traced_widths(values))

  traced = jax.jit(traced_forward)
  full_values = {u: jnp.int32(n) for u, n in UNITS.items()}
  t0 = time.perf_counter()
  compiled = traced.lower(variables, x, full_values).compile()
  compile_s = time.perf_counter() - t0

  rng = np.random.default_rng(3)
  configs = {"traced_max": {u: 1.0 for u in UNITS}, "traced_min": {u: 0.25 for u in UNITS}}
  for i in range(num_random):
    configs[f"traced_random_{i}"] = {u: float(rng.choice(RATIOS)) for u in UNITS}
  min_widths = unit_widths(configs["traced_min"])
  min_variables = sliced_variables(variables, min_widths)
  static_full = jax.jit(static.apply)
  static_min = jax.jit(lambda v, x: static.apply(v, x, min_widths))
  concrete_min = jax.jit(lambda v, x: dyn.apply(v, x, min_widths))  # concrete widths: sliced, zero-padded
  fns: dict[str, Any] = {
    "static_full": lambda: static_full(variables, x),
    "static_min": lambda: static_min(min_variables, x),
    "concrete_min": lambda: concrete_min(variables, x),
  }
  for name, ratios in configs.items():
    values = {u: jnp.int32(n) for u, n in unit_widths(ratios).items()}
    fns[name] = lambda values=values: traced(variables, x, values)

  # The traced net agrees with the concrete (sliced) one and, at full width, with the static net.
  for name, ratios in configs.items():
    widths = unit_widths(ratios)
    values = {u: jnp.int32(n) for u, n in widths.items()}
    error = float(jnp.max(jnp.abs(traced(variables, x, values) - dyn.apply(variables, x, widths))))
    assert error < 1e-3, (name, error)
  assert float(jnp.max(jnp.abs(traced(variables, x, full_values) - fns["static_full"]()))) < 1e-3
  assert float(jnp.max(jnp.abs(fns["static_min"]() - fns["concrete_min"]()))) < 1e-3

  timings = paired(fns, rounds, warmup)
  return {
    "sizes": {
      "batch": batch,
      "resolution": resolution,
      "rounds": rounds,
      "norm_buckets": norm_buckets,
      "conv_buckets": conv_buckets,
    },
    "configs": {n: unit_widths(r) for n, r in configs.items()},
    "timings": timings,
    "compile_s": compile_s,
    "traces_after_all_widths": len(traces),
    "compiled_cost_flops": compiled.cost_analysis().get("flops") if compiled.cost_analysis() else None,
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    "machine": machine_info(),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=None)
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--norm-buckets", type=int, default=1)
  parser.add_argument("--conv-buckets", type=int, default=dynamic.DEFAULT_MAX_BUCKETS)
  args = parser.parse_args()
  if args.quick:
    result = run(8, 8, args.rounds or 3, 1, 2, args.norm_buckets, args.conv_buckets)
  else:
    result = run(256, 32, args.rounds or 9, 2, 3, args.norm_buckets, args.conv_buckets)
  for name, t in result["timings"].items():
    widths = result["configs"].get(name, "")
    print(f"{name:18s} {t['median_ms']:8.1f} ms  x{t['ratio']:.3f} of static_full  {widths}")
  print(
    f"compile (traced widths): {result['compile_s']:.1f} s; traces after every width ran: "
    f"{result['traces_after_all_widths']}"
  )
  out = args.out or (None if args.quick else str(Path(__file__).parent / "results" / "dynamic.json"))
  if out:
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
  main()
