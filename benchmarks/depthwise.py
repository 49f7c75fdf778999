"""Benchmark: jaxmutate's depthwise conv vs XLA's grouped conv on CPU.

Measures, in one process (ratios are against the baseline of the same run):
  * forward and forward+backward of a 16-channel depthwise conv at 32x32,
    batch 64 and 256, k = 3, 5, 7: ``depthwise_conv`` (implementation
    "shifted") vs ``lax.conv_general_dilated(feature_group_count=C)``;
  * one SGD-momentum train step (BatchNorm in train mode) of a hand-written
    network of MMRazor's SPOS ShuffleNet ops: stem 3x3 conv → 8 blocks
    (ShuffleBlock k=3/5/7 and ShuffleXception, 32 ch, stride 1) → global pool →
    10-way dense, batch 64, 32x32 input. Three variants of the same network
    and parameters: "flax" is the textbook Flax network (``nn.Conv`` for every
    conv, grouped for the depthwise ones, ``nn.BatchNorm``, concatenate then
    channel shuffle), i.e. the "before" of the issue; "grouped" is
    jaxmutate's blocks with ``implementation="xla"`` (the exact grouped
    ``lax.conv_general_dilated`` call ``nn.Conv(feature_group_count=C)``
    makes, everything else as in "shifted"); "shifted" is jaxmutate's blocks
    on their default CPU path.

Usage:
  python benchmarks/depthwise.py            # full run, writes results/depthwise.json
  python benchmarks/depthwise.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine_info  # noqa: E402

from jaxmutate.ops import (  # noqa: E402
  ShuffleBlock,
  ShuffleXception,
  channel_shuffle,
  depthwise_conv,
)


def grouped_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(
    x,
    kernel[:, :, None, :],
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=x.shape[-1],
  )


def shifted_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return depthwise_conv(x, kernel, implementation="shifted")


def compile_seconds(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
  """Lowers and compiles the jitted ``fn`` for ``args``: (executable, seconds)."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  return compiled, time.perf_counter() - start


def time_fn(fn: Callable[..., Any], args: tuple, warmup: int, iters: int) -> tuple[float, float]:
  """(median wall ms of ``fn(*args)`` after compile and warm-up, compile s)."""
  fn, seconds = compile_seconds(fn, args)
  jax.block_until_ready(fn(*args))
  for _ in range(warmup):  # steady state: page faults of cold buffers are slow
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3, seconds


def bench_convs(batches, kernels, size, channels, warmup, iters) -> list[dict]:
  rows = []
  for batch in batches:
    for k in kernels:
      kx, kk, kg = jax.random.split(jax.random.key(k), 3)
      x = jax.random.normal(kx, (batch, size, size, channels))
      kernel = jax.random.normal(kk, (k, k, channels))
      g = jax.random.normal(kg, x.shape)
      row = dict(batch=batch, kernel_size=k, shape=[batch, size, size, channels])
      for name, conv in (("grouped", grouped_conv), ("shifted", shifted_conv)):
        fwd = jax.jit(conv)
        fwd_bwd = jax.jit(lambda x, k, g, conv=conv: jax.vjp(conv, x, k)[1](g))
        row[f"{name}_fwd_ms"], row[f"{name}_fwd_compile_s"] = time_fn(fwd, (x, kernel), warmup, iters)
        row[f"{name}_fwd_bwd_ms"], row[f"{name}_fwd_bwd_compile_s"] = time_fn(fwd_bwd, (x, kernel, g), warmup, iters)
      row["fwd_speedup"] = row["grouped_fwd_ms"] / row["shifted_fwd_ms"]
      row["fwd_bwd_speedup"] = row["grouped_fwd_bwd_ms"] / row["shifted_fwd_bwd_ms"]
      rows.append(row)
      print(
        f"  b={batch:4d} k={k}  fwd {row['grouped_fwd_ms']:8.2f} -> "
        f"{row['shifted_fwd_ms']:7.2f} ms ({row['fwd_speedup']:5.1f}x)   "
        f"fwd+bwd {row['grouped_fwd_bwd_ms']:8.2f} -> "
        f"{row['shifted_fwd_bwd_ms']:7.2f} ms ({row['fwd_bwd_speedup']:5.1f}x)   "
        f"fwd+bwd compile {row['grouped_fwd_bwd_compile_s']:.2f} -> "
        f"{row['shifted_fwd_bwd_compile_s']:.2f} s",
        flush=True,
      )
  return rows


class TextbookConvBN(nn.Module):
  """``nn.Conv`` (grouped when depthwise) → ``nn.BatchNorm`` → optional ReLU."""

  features: int
  kernel_size: int = 1
  depthwise: bool = False
  relu: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels, pad = x.shape[-1], self.kernel_size // 2
    x = nn.Conv(
      channels if self.depthwise else self.features,
      (self.kernel_size, self.kernel_size),
      padding=((pad, pad), (pad, pad)),
      feature_group_count=channels if self.depthwise else 1,
      use_bias=False,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
    return nn.relu(x) if self.relu else x


class TextbookShuffleBlock(nn.Module):
  """A stride-1 SPOS ShuffleNet block as one writes it in plain Flax."""

  channels: int
  kernel_size: int
  xception: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    branch = self.channels // 2
    x1, x2 = jnp.split(x, 2, axis=-1)
    if self.xception:
      for i in range(3):
        x2 = TextbookConvBN(branch, 3, True, name=f"branch2_{i}_dw")(x2, train)
        x2 = TextbookConvBN(branch, 1, relu=True, name=f"branch2_{i}_pw")(x2, train)
    else:
      x2 = TextbookConvBN(branch, 1, relu=True, name="branch2_0")(x2, train)
      x2 = TextbookConvBN(branch, self.kernel_size, True, name="branch2_1")(x2, train)
      x2 = TextbookConvBN(branch, 1, relu=True, name="branch2_2")(x2, train)
    return channel_shuffle(jnp.concatenate([x1, x2], axis=-1), 2)


class ShuffleNetOps(nn.Module):
  """Stem, 8 SPOS ShuffleNet blocks (stride 1), pool, classifier.

  ``implementation`` "textbook" builds the blocks from plain Flax layers
  (:class:`TextbookShuffleBlock`), otherwise it is jaxmutate's depthwise
  implementation for ``ShuffleBlock``/``ShuffleXception``.
  """

  channels: int = 32
  num_classes: int = 10
  implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    for i in range(8):
      c, impl, xception = self.channels, self.implementation, i % 4 == 3
      k = 3 if xception else (3, 5, 7)[i % 4]
      name = f"block{i}"  # the same parameter paths in every variant
      if impl == "textbook":
        block = TextbookShuffleBlock(c, k, xception, name=name)
      elif xception:
        block = ShuffleXception(c, c, 1, implementation=impl, name=name)
      else:
        block = ShuffleBlock(c, c, k, 1, implementation=impl, name=name)
      x = block(x, train=train)
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def bench_train_step(batch, size, warmup, iters) -> dict:
  x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  tx = optax.sgd(0.05, momentum=0.9)
  row: dict[str, Any] = dict(batch=batch, input=[batch, size, size, 3])
  steps, states = {}, {}
  variants = (("flax", "textbook"), ("grouped", "xla"), ("shifted", "shifted"))
  for name, impl in variants:
    model = ShuffleNetOps(implementation=impl)
    # The same initial weights in all three (same paths, shapes, initialisers).
    variables = model.init(jax.random.key(2), x, train=False)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, stats, opt_state, x, y, model=model):
      def loss_fn(params):
        logits, updates = model.apply(
          {"params": params, "batch_stats": stats},
          x,
          train=True,
          mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates["batch_stats"]

      (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), stats, opt_state, loss

    state = (params, stats, opt_state)
    steps[name], row[f"{name}_compile_s"] = compile_seconds(step, (*state, x, y))
    row[f"{name}_temp_mib"] = steps[name].memory_analysis().temp_size_in_bytes / 2**20
    for _ in range(warmup + 1):  # a few real steps first (page faults)
      state = steps[name](*state, x, y)[:3]
    states[name] = jax.block_until_ready(state)
  # The variants alternate step by step, so that load from other jobs on
  # a shared machine hits both alike and the ratio stays meaningful.
  times: dict[str, list[float]] = {name: [] for name in steps}
  for _ in range(iters):
    for name, step in steps.items():
      start = time.perf_counter()
      out = step(*states[name], x, y)
      jax.block_until_ready(out)
      times[name].append(time.perf_counter() - start)
      states[name] = out[:3]
  for name in steps:
    row[f"{name}_step_ms"] = statistics.median(times[name]) * 1e3
    row[f"{name}_step_min_ms"] = min(times[name]) * 1e3
    print(
      f"  train step ({name}): median {row[f'{name}_step_ms']:.1f} ms (min "
      f"{row[f'{name}_step_min_ms']:.1f}), compile "
      f"{row[f'{name}_compile_s']:.2f} s, XLA temp buffer "
      f"{row[f'{name}_temp_mib']:.0f} MiB",
      flush=True,
    )
  row["speedup"] = row["grouped_step_ms"] / row["shifted_step_ms"]
  row["speedup_vs_flax"] = row["flax_step_ms"] / row["shifted_step_ms"]
  # Load from other jobs comes and goes over seconds: the median of the
  # ratios of steps timed back to back is the steadiest figure.
  for base, key in (("grouped", "paired_speedup"), ("flax", "paired_speedup_vs_flax")):
    row[key] = statistics.median(b / s for b, s in zip(times[base], times["shifted"]))
  print(
    f"  speedup (ratio of medians / median of paired ratios): "
    f"{row['speedup_vs_flax']:.2f}x / {row['paired_speedup_vs_flax']:.2f}x vs "
    f"textbook flax, {row['speedup']:.2f}x / {row['paired_speedup']:.2f}x vs "
    "the same blocks with grouped convs",
    flush=True,
  )
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny smoke run")
  parser.add_argument("--step-only", action="store_true", help="only the train step (no write)")
  parser.add_argument(
    "--out",
    default=str(Path(__file__).resolve().parent / "results" / "depthwise.json"),
    help="where to write the JSON results (the quick run does not write)",
  )
  args = parser.parse_args()
  if args.quick:
    batches, kernels, size, warmup, iters, step_batch, step_iters = ((2,), (3,), 8, 1, 2, 4, 2)
  else:
    batches, kernels, size, warmup, iters, step_batch, step_iters = ((64, 256), (3, 5, 7), 32, 3, 10, 64, 20)
  info = machine_info()
  info["load_average_start"] = list(os.getloadavg())
  print(f"machine: {info}")
  if args.step_only:
    bench_train_step(step_batch, size, warmup, step_iters)
    return
  print("depthwise conv, 16 channels, grouped (lax) -> shifted (jaxmutate):")
  convs = bench_convs(batches, kernels, size, 16, warmup, iters)
  print("SPOS ShuffleNet ops network, 8 blocks, 32 ch:")
  step = bench_train_step(step_batch, size, warmup, step_iters)
  info["load_average_end"] = list(os.getloadavg())
  results = dict(machine=info, quick=args.quick, convs=convs, train_step=step)

  print(
    "\n| batch | k | fwd grouped ms | fwd shifted ms | fwd speedup | "
    "fwd+bwd grouped ms | fwd+bwd shifted ms | fwd+bwd speedup | "
    "fwd+bwd compile grouped / shifted s |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  for r in convs:
    print(
      f"| {r['batch']} | {r['kernel_size']} | {r['grouped_fwd_ms']:.2f} | "
      f"{r['shifted_fwd_ms']:.2f} | {r['fwd_speedup']:.1f}x | "
      f"{r['grouped_fwd_bwd_ms']:.2f} | {r['shifted_fwd_bwd_ms']:.2f} | "
      f"{r['fwd_bwd_speedup']:.1f}x | {r['grouped_fwd_bwd_compile_s']:.2f} / "
      f"{r['shifted_fwd_bwd_compile_s']:.2f} |"
    )
  print(
    f"\n| train step (b{step['batch']}) | flax ms | grouped ms | shifted ms | "
    f"speedup vs flax (paired) | speedup vs grouped (paired) | XLA temp flax / grouped / "
    f"shifted MiB | compile flax / grouped / shifted s |\n"
    f"|---|---|---|---|---|---|---|---|\n| SPOS ShuffleNet ops, 8 blocks | "
    f"{step['flax_step_ms']:.1f} | {step['grouped_step_ms']:.1f} | "
    f"{step['shifted_step_ms']:.1f} | {step['speedup_vs_flax']:.2f}x "
    f"({step['paired_speedup_vs_flax']:.2f}x) | {step['speedup']:.2f}x "
    f"({step['paired_speedup']:.2f}x) | {step['flax_temp_mib']:.0f} / "
    f"{step['grouped_temp_mib']:.0f} / {step['shifted_temp_mib']:.0f} | "
    f"{step['flax_compile_s']:.2f} / {step['grouped_compile_s']:.2f} / "
    f"{step['shifted_compile_s']:.2f} |"
  )
  if not args.quick:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
  main()
