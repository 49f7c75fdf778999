"""GroupFisher importance of a batch: per-example gradients by ``vmap`` in one jitted call vs a Python loop.

The network is the pruning config's ``PlainCNN`` (three conv-BN-relu blocks
16/32/64, global pooling, a classifier) on digits-sized 8x8x1 images (and,
with ``--image 32``, 32x32x3). Fisher importance needs each example's gradient
of its own loss with respect to every unit's channel mask, squared and summed
over the batch:

* ``vmap``: :func:`jaxmutate.pruning.fisher_importance`, one jitted call for the
  batch (``jax.vmap`` of ``jax.grad`` over the examples);
* ``loop``: the same per-example program, jitted for one example, called in a
  Python loop over the batch and summed (what a per-example hook loop does).

Both must give the same numbers (checked: max relative difference). Times are
medians over interleaved rounds, the ratio is measured in the same round.
Also recorded: Taylor importance of the batch (one gradient of the batch loss)
for scale.

Usage::

  PYTHONPATH=. python benchmarks/pruning.py            # batch 64, 8x8x1, ~1 minute on 2 cores
  PYTHONPATH=. python benchmarks/pruning.py --image 32 --out benchmarks/results/pruning_32x32.json
  PYTHONPATH=. python benchmarks/pruning.py --quick    # smoke run

Writes ``benchmarks/results/pruning.json`` (``--out`` to change; ``--quick``
writes only with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from machine import machine_info

import jaxmutate as jm
from jaxmutate import pruning
from jaxmutate.algorithms import classification_loss
from jaxmutate.analysis import analyze_channels
from jaxmutate.models import PlainCNN


def timed(fn: Any) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--image", type=int, default=8, help="8: digits (1 channel); otherwise HxWx3")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=Path, default=None)
  args = parser.parse_args()
  jm.runtime.configure_allocator()
  if args.quick:
    args.batch, args.rounds = 8, 2
  channels = 1 if args.image == 8 else 3
  model = PlainCNN(features=(16, 32, 64), strides=(1, 2, 2), num_classes=10)
  images = jax.random.normal(jax.random.key(1), (args.batch, args.image, args.image, channels))
  labels = jnp.arange(args.batch) % 10
  key = jax.random.key(0)
  variables = jax.jit(model.init).lower(key, images[:1]).compile({"xla_backend_optimization_level": 0})(key, images[:1])
  groups = analyze_channels(model, variables, images[:1]).groups

  def loss_fn(v: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return classification_loss(model.apply(v, x), y)

  fisher_vmap = jax.jit(lambda v, x, y: pruning.fisher_importance(loss_fn, v, groups, x, y))
  # The loop runs the same per-example program, jitted for one example.
  one = jax.jit(lambda v, x, y: pruning.per_example_mask_grads(loss_fn, v, groups, x, y))
  ones = pruning.full_masks(groups)

  def fisher_loop() -> dict[str, jax.Array]:
    total = {k: jnp.zeros_like(v) for k, v in ones.items()}
    for i in range(args.batch):
      g = one(variables, images[i : i + 1], labels[i : i + 1])
      total = {k: total[k] + g[k][0] ** 2 for k in total}
    return total

  taylor = jax.jit(pruning.make_importance_fn("taylor", groups, loss_fn))

  start = time.perf_counter()
  a = jax.block_until_ready(fisher_vmap(variables, images, labels))
  compile_vmap = time.perf_counter() - start
  start = time.perf_counter()
  b = jax.block_until_ready(fisher_loop())
  compile_loop = time.perf_counter() - start
  jax.block_until_ready(taylor(variables, images, labels))
  rel = max(float(jnp.max(jnp.abs(a[k] - b[k]) / (jnp.abs(b[k]) + 1e-12 * jnp.max(jnp.abs(b[k]))))) for k in a)

  rows = []
  for _ in range(args.rounds):
    t_vmap = timed(lambda: fisher_vmap(variables, images, labels))
    t_loop = timed(fisher_loop)
    t_taylor = timed(lambda: taylor(variables, images, labels))
    rows.append((t_vmap, t_loop, t_taylor))
  rows_np = np.asarray(rows)
  result = {
    "benchmark": "pruning: GroupFisher importance, vmap of per-example gradients vs a Python loop",
    "network": "PlainCNN(16, 32, 64), strides (1, 2, 2)",
    "batch": args.batch,
    "image": [args.image, args.image, channels],
    "vmap_ms": 1e3 * float(np.median(rows_np[:, 0])),
    "loop_ms": 1e3 * float(np.median(rows_np[:, 1])),
    "taylor_batch_ms": 1e3 * float(np.median(rows_np[:, 2])),
    "speedup_vmap_over_loop": float(np.median(rows_np[:, 1] / rows_np[:, 0])),
    "max_relative_difference": rel,
    "first_call_s": {"vmap": compile_vmap, "loop": compile_loop},
    "rounds": args.rounds,
    # The machine is shared: its load says how much the absolute times are inflated (the ratio less so).
    "load_average_1min": os.getloadavg()[0],
    "machine": machine_info(),
  }
  print(json.dumps(result, indent=2))
  out = args.out or (None if args.quick else Path(__file__).parent / "results" / "pruning.json")
  if out is not None:
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()
