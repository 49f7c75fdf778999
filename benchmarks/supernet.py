"""Cost of running subnets through a jaxmutate supernet, against baselines measured in the same run.

The supernet has ``layers`` layers, each a :class:`jaxmutate.OneShotMutableOP`
over ``{conv3, conv5, conv7, skip}`` (conv = conv-BN-ReLU, ``channels`` wide).
Figures:

* ``forward``: one subnet through the supernet (choices traced under ``jit``,
  BN in inference mode) / the same network written by hand in plain Flax (only
  the chosen ops, no conditionals), both jitted, same batch. One ratio per
  sampled architecture, each the median of interleaved runs; min/median/max.
* ``train_step``: the same for forward + backward (``jax.grad`` with BN in
  training mode, ``batch_stats`` updated).
* ``vmap_population``: ``jax.vmap`` of the supernet over P sampled subnets /
  a Python loop of the jitted supernet over the same subnets (outputs compared).
* ``naive_vmap``: a supernet written with ``flax.linen.switch`` under ``vmap``
  (every branch runs for every member) / its own Python loop, on a small shape.
* ``sample_set_choices``: ``jit(vmap(sample_choices + set_choices))`` for 10,000
  subnets, first call (with compilation) and steady state.
* ``compilations``: executables in each jitted function's cache after every
  subnet has run through it (1 = switching subnets never recompiles).

Usage::

  PYTHONPATH=. python benchmarks/supernet.py           # real sizes (minutes on 2 CPU cores)
  PYTHONPATH=. python benchmarks/supernet.py --quick   # tiny smoke run (seconds)

Prints a table; writes ``benchmarks/results/supernet.json`` (``--out`` to change; a
``--quick`` run writes JSON only with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from machine import machine_info

import jaxmutate as jm

CANDIDATES = ("conv3", "conv5", "conv7", "skip")
KERNEL_SIZES = {"conv3": 3, "conv5": 5, "conv7": 7}


@dataclass(frozen=True)
class Sizes:
  """Shapes and repetition counts of one benchmark run."""

  batch: int
  channels: int
  resolution: int
  layers: int
  forward_archs: int
  train_archs: int
  populations: tuple[int, ...]
  population_reps: int
  reps: int
  naive_batch: int
  naive_channels: int
  naive_resolution: int
  naive_population: int
  num_subnets: int


REAL = Sizes(
  batch=64,
  channels=32,
  resolution=32,
  layers=8,
  forward_archs=12,
  train_archs=6,
  populations=(8, 32),
  population_reps=3,
  reps=7,
  naive_batch=32,
  naive_channels=16,
  naive_resolution=16,
  naive_population=8,
  num_subnets=10_000,
)
QUICK = Sizes(
  batch=4,
  channels=8,
  resolution=8,
  layers=3,
  forward_archs=3,
  train_archs=2,
  populations=(4,),
  population_reps=2,
  reps=3,
  naive_batch=4,
  naive_channels=8,
  naive_resolution=8,
  naive_population=4,
  num_subnets=1_000,
)


class ConvBNReLU(nn.Module):
  """conv (no bias) → BatchNorm → ReLU, keeping the channel count."""

  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.relu(x)


def skip(x: jax.Array, train: bool = False) -> jax.Array:
  """The identity candidate."""
  del train
  return x


class Supernet(nn.Module):
  """``layers`` × OneShotMutableOP over conv3/conv5/conv7/skip (mutable names ``layer{i}``)."""

  layers: int
  channels: int

  @nn.compact
  def __call__(self, x: jax.Array, choices: Any, train: bool = False) -> jax.Array:
    for i in range(self.layers):
      candidates: dict[str, Any] = {name: ConvBNReLU(self.channels, KERNEL_SIZES[name]) for name in CANDIDATES[:3]}
      candidates["skip"] = skip
      x = jm.OneShotMutableOP(candidates, name=f"layer{i}")(x, choices, train=train)
    return x


class HandWritten(nn.Module):
  """The subnet ``arch`` (candidate indices) as a plain Flax network: the chosen convs only."""

  arch: tuple[int, ...]
  channels: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, choice in enumerate(self.arch):
      name = CANDIDATES[choice]
      if name != "skip":
        x = ConvBNReLU(self.channels, KERNEL_SIZES[name], name=f"layer{i}_{name}")(x, train=train)
    return x


def hand_written_variables(variables: dict[str, Any], arch: Sequence[int]) -> dict[str, Any]:
  """The supernet's variables of the chosen candidates, renamed for :class:`HandWritten`."""
  return {
    col: {
      f"layer{i}_{CANDIDATES[c]}": variables[col][f"layer{i}"][CANDIDATES[c]]
      for i, c in enumerate(arch)
      if CANDIDATES[c] != "skip"
    }
    for col in ("params", "batch_stats")
  }


class NaiveLayer(nn.Module):
  """One layer written with ``flax.linen.switch``: the naive baseline."""

  channels: int

  def setup(self) -> None:
    self.convs = [ConvBNReLU(self.channels, KERNEL_SIZES[name]) for name in CANDIDATES[:3]]

  def __call__(self, x: jax.Array, index: jax.Array) -> jax.Array:
    branches = [lambda module, x, i=i: module.convs[i](x) for i in range(3)] + [lambda module, x: x]
    if self.is_initializing():
      # nn.switch needs every branch's variables to exist before it runs.
      for branch in branches:
        branch(self, x)
    return nn.switch(index, branches, self, x)


class NaiveSupernet(nn.Module):
  """``layers`` × :class:`NaiveLayer`; ``arch`` is an int32 vector of choices."""

  layers: int
  channels: int

  @nn.compact
  def __call__(self, x: jax.Array, arch: jax.Array) -> jax.Array:
    for i in range(self.layers):
      x = NaiveLayer(self.channels, name=f"layer{i}")(x, arch[i])
    return x


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], reps: int, warmup: int = 2) -> list[float]:
  """Seconds per call of ``fn`` after ``warmup`` calls (steady state: caches and pages warm)."""
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return times


def time_pair(fn: Callable[[], Any], baseline: Callable[[], Any], reps: int, warmup: int = 2) -> dict[str, float]:
  """Interleaved timing of ``fn`` and ``baseline``: both see the same machine load.

  Returns the median seconds of each and the median of the per-repetition ratios.
  """
  for _ in range(warmup):
    block(fn())
    block(baseline())
  fn_times, base_times = [], []
  for _ in range(reps):
    start = time.perf_counter()
    block(fn())
    fn_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    block(baseline())
    base_times.append(time.perf_counter() - start)
  ratios = np.asarray(fn_times) / np.asarray(base_times)
  return {
    "s": float(np.median(fn_times)),
    "baseline_s": float(np.median(base_times)),
    "ratio": float(np.median(ratios)),
  }


def summary(ratios: Sequence[float]) -> dict[str, float]:
  return {"min": float(np.min(ratios)), "median": float(np.median(ratios)), "max": float(np.max(ratios))}


def sample_archs(mutator: Any, key: jax.Array, count: int) -> list[dict[str, jax.Array]]:
  keys = jax.random.split(key, count)
  return [mutator.set_choices(mutator.sample_choices(k)) for k in keys]


def arch_of(choices: dict[str, jax.Array], layers: int) -> tuple[int, ...]:
  return tuple(int(choices[f"layer{i}"]) for i in range(layers))


def bench_forward(
  sizes: Sizes, net: Supernet, variables: dict[str, Any], x: jax.Array, archs: list[Any]
) -> dict[str, Any]:
  supernet_fn = jax.jit(lambda v, x, c: net.apply(v, x, c))
  rows = []
  for choices in archs:
    arch = arch_of(choices, sizes.layers)
    hand = HandWritten(arch, sizes.channels)
    hand_vars = hand_written_variables(variables, arch)
    hand_fn = jax.jit(hand.apply)
    max_diff = float(jnp.max(jnp.abs(supernet_fn(variables, x, choices) - hand_fn(hand_vars, x))))
    timing = time_pair(lambda: supernet_fn(variables, x, choices), lambda: hand_fn(hand_vars, x), sizes.reps)
    rows.append({"arch": [CANDIDATES[c] for c in arch], "max_abs_diff": max_diff, **timing})
    print(
      f"  forward {arch}: {timing['s'] * 1e3:8.1f} ms vs {timing['baseline_s'] * 1e3:8.1f} ms  x{timing['ratio']:.3f}",
      flush=True,
    )
  return {"rows": rows, "ratio": summary([r["ratio"] for r in rows]), "compilations": supernet_fn._cache_size()}


def bench_train_step(
  sizes: Sizes, net: Supernet, variables: dict[str, Any], x: jax.Array, archs: list[Any]
) -> dict[str, Any]:
  def supernet_loss(params, batch_stats, x, choices):
    y, state = net.apply(
      {"params": params, "batch_stats": batch_stats}, x, choices, train=True, mutable=["batch_stats"]
    )
    return jnp.mean(y**2), state["batch_stats"]

  supernet_step = jax.jit(jax.grad(supernet_loss, has_aux=True))
  rows = []
  for choices in archs:
    arch = arch_of(choices, sizes.layers)
    hand = HandWritten(arch, sizes.channels)
    hand_vars = hand_written_variables(variables, arch)

    def hand_loss(params, batch_stats, x, hand=hand):
      y, state = hand.apply({"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
      return jnp.mean(y**2), state["batch_stats"]

    hand_step = jax.jit(jax.grad(hand_loss, has_aux=True))
    grads, stats = supernet_step(variables["params"], variables["batch_stats"], x, choices)
    hand_grads, hand_stats = hand_step(hand_vars["params"], hand_vars["batch_stats"], x)
    chosen = hand_written_variables({"params": grads, "batch_stats": stats}, arch)
    max_diff = (
      max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
          jax.tree.leaves((chosen["params"], chosen["batch_stats"])), jax.tree.leaves((hand_grads, hand_stats))
        )
      )
      if hand_vars["params"]
      else 0.0
    )
    timing = time_pair(
      lambda: supernet_step(variables["params"], variables["batch_stats"], x, choices),
      lambda: hand_step(hand_vars["params"], hand_vars["batch_stats"], x),
      max(3, sizes.reps // 2),
    )
    rows.append({"arch": [CANDIDATES[c] for c in arch], "max_abs_diff": max_diff, **timing})
    print(
      f"  train   {arch}: {timing['s'] * 1e3:8.1f} ms vs {timing['baseline_s'] * 1e3:8.1f} ms  x{timing['ratio']:.3f}",
      flush=True,
    )
  return {"rows": rows, "ratio": summary([r["ratio"] for r in rows]), "compilations": supernet_step._cache_size()}


def bench_population(
  sizes: Sizes, net: Supernet, variables: dict[str, Any], x: jax.Array, mutator: Any, key: jax.Array, population: int
) -> dict[str, Any]:
  supernet_fn = jax.jit(lambda v, x, c: net.apply(v, x, c))
  population_fn = jax.jit(jax.vmap(lambda v, x, c: net.apply(v, x, c), in_axes=(None, None, 0)))
  batched = jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k)))(jax.random.split(key, population))
  members = [jax.tree.map(lambda a, i=i: a[i], batched) for i in range(population)]

  def loop():
    return [supernet_fn(variables, x, c) for c in members]

  max_diff = float(jnp.max(jnp.abs(population_fn(variables, x, batched) - jnp.stack(loop()))))
  timing = time_pair(lambda: population_fn(variables, x, batched), loop, sizes.population_reps, warmup=1)
  print(
    f"  vmap P={population}: {timing['s'] * 1e3:8.1f} ms vs loop {timing['baseline_s'] * 1e3:8.1f} ms  "
    f"x{timing['ratio']:.3f}  max|diff| {max_diff:.1e}",
    flush=True,
  )
  return {
    "population": population,
    "max_abs_diff_vs_loop": max_diff,
    **timing,
    "compilations": {"vmap": population_fn._cache_size(), "loop": supernet_fn._cache_size()},
  }


def bench_naive(sizes: Sizes, key: jax.Array) -> dict[str, Any]:
  """vmap of a ``flax.linen.switch`` supernet vs its own loop, and jaxmutate's vmap vs loop, small shape."""
  shape = (sizes.naive_batch, sizes.naive_resolution, sizes.naive_resolution, sizes.naive_channels)
  x = jax.random.normal(key, shape)
  archs = jax.random.randint(jax.random.fold_in(key, 1), (sizes.naive_population, sizes.layers), 0, len(CANDIDATES))
  naive = NaiveSupernet(sizes.layers, sizes.naive_channels)
  naive_vars = naive.init(jax.random.fold_in(key, 2), x, jnp.zeros((sizes.layers,), jnp.int32))
  naive_one = jax.jit(naive.apply)
  naive_vmap = jax.jit(jax.vmap(naive.apply, in_axes=(None, None, 0)))

  def naive_loop():
    return [naive_one(naive_vars, x, archs[i]) for i in range(sizes.naive_population)]

  naive_timing = time_pair(
    lambda: naive_vmap(naive_vars, x, archs), naive_loop, max(2, sizes.population_reps), warmup=1
  )
  net = Supernet(sizes.layers, sizes.naive_channels)
  variables = net.init(jax.random.fold_in(key, 3), x, None)
  choices = {f"layer{i}": archs[:, i].astype(jnp.int32) for i in range(sizes.layers)}
  members = [{k: v[i] for k, v in choices.items()} for i in range(sizes.naive_population)]
  one = jax.jit(lambda v, x, c: net.apply(v, x, c))
  population = jax.jit(jax.vmap(lambda v, x, c: net.apply(v, x, c), in_axes=(None, None, 0)))
  ours_timing = time_pair(
    lambda: population(variables, x, choices),
    lambda: [one(variables, x, c) for c in members],
    max(2, sizes.population_reps),
    warmup=1,
  )
  print(
    f"  naive nn.switch vmap P={sizes.naive_population} {shape}: x{naive_timing['ratio']:.2f} its loop; "
    f"jaxmutate vmap: x{ours_timing['ratio']:.2f} its loop",
    flush=True,
  )
  return {
    "shape": list(shape),
    "population": sizes.naive_population,
    "naive_nn_switch": naive_timing,
    "jaxmutate": ours_timing,
  }


def bench_sample_set(sizes: Sizes, mutator: Any, key: jax.Array) -> dict[str, Any]:
  sample_set = jax.jit(jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k))))
  keys = jax.random.split(key, sizes.num_subnets)
  block(keys)
  start = time.perf_counter()
  block(sample_set(keys))
  first = time.perf_counter() - start
  steady = float(np.median(time_call(lambda: sample_set(keys), reps=max(5, sizes.reps))))
  print(
    f"  sample+set {sizes.num_subnets} subnets: first call {first * 1e3:.1f} ms, steady {steady * 1e3:.2f} ms",
    flush=True,
  )
  return {
    "num_subnets": sizes.num_subnets,
    "first_call_s": first,
    "steady_s": steady,
    "compilations": sample_set._cache_size(),
  }


def _ms(seconds: float) -> str:
  """Milliseconds with about three significant digits."""
  ms = seconds * 1e3
  return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


def format_table(results: dict[str, Any]) -> str:
  """A Markdown table of every figure."""
  lines = ["| figure | ratio (min / median / max) | absolute median | target |", "|---|---|---|---|"]
  fwd, train = results["forward"], results["train_step"]
  lines.append(
    f"| subnet forward via supernet / hand-written ({len(fwd['rows'])} archs) | "
    f"{fwd['ratio']['min']:.3f} / **{fwd['ratio']['median']:.3f}** / {fwd['ratio']['max']:.3f} | "
    f"{_ms(np.median([r['s'] for r in fwd['rows']]))} ms vs {_ms(np.median([r['baseline_s'] for r in fwd['rows']]))} ms"
    " | ≤ 1.10 |"
  )
  lines.append(
    f"| train step (fwd+bwd) via supernet / hand-written ({len(train['rows'])} archs) | "
    f"{train['ratio']['min']:.3f} / **{train['ratio']['median']:.3f}** / {train['ratio']['max']:.3f} | "
    f"{_ms(np.median([r['s'] for r in train['rows']]))} ms vs {_ms(np.median([r['baseline_s'] for r in train['rows']]))} ms"
    " | — |"
  )
  for pop in results["vmap_population"]:
    lines.append(
      f"| `vmap` over P={pop['population']} subnets / Python loop of jitted supernet | **{pop['ratio']:.3f}** | "
      f"{_ms(pop['s'])} ms vs {_ms(pop['baseline_s'])} ms (max abs diff {pop['max_abs_diff_vs_loop']:.1e}) | ≤ 1.3 |"
    )
  naive = results["naive_vmap"]
  lines.append(
    f"| naive `nn.switch` supernet under `vmap`, P={naive['population']}, shape {tuple(naive['shape'])} / its loop | "
    f"{naive['naive_nn_switch']['ratio']:.2f} | {_ms(naive['naive_nn_switch']['s'])} ms vs "
    f"{_ms(naive['naive_nn_switch']['baseline_s'])} ms | context |"
  )
  lines.append(
    f"| jaxmutate `vmap`, same small shape / its loop | {naive['jaxmutate']['ratio']:.2f} | "
    f"{_ms(naive['jaxmutate']['s'])} ms vs {_ms(naive['jaxmutate']['baseline_s'])} ms | ≤ 1.3 |"
  )
  sample = results["sample_set_choices"]
  lines.append(
    f"| `jit(vmap(sample_choices + set_choices))`, {sample['num_subnets']} subnets | — | "
    f"first call {_ms(sample['first_call_s'])} ms (incl. compile), steady {sample['steady_s'] * 1e3:.2f} ms | — |"
  )
  comp = results["compilations"]
  lines.append(
    f"| compilations after all subnets ran (forward / train / vmap / sample+set) | — | "
    f"{comp['forward']} / {comp['train_step']} / {comp['vmap']} / {comp['sample_set']} | 1 each |"
  )
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny shapes, a few seconds (smoke test)")
  parser.add_argument(
    "--out",
    type=Path,
    default=None,
    help="JSON path (default: benchmarks/results/supernet.json; a --quick run writes none unless given)",
  )
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  sizes = QUICK if args.quick else REAL
  key = jax.random.key(args.seed)
  x = jax.random.normal(jax.random.fold_in(key, 0), (sizes.batch, sizes.resolution, sizes.resolution, sizes.channels))
  net = Supernet(sizes.layers, sizes.channels)
  variables = dict(net.init(jax.random.fold_in(key, 1), x[:2], None))
  # Non-trivial BN statistics so that inference-mode BN is not the identity.
  variables["batch_stats"] = jax.tree.map(
    lambda a: a + 0.1 * jax.random.uniform(jax.random.fold_in(key, 2), a.shape), variables["batch_stats"]
  )
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  print(f"supernet: {sizes.layers} layers x {CANDIDATES}, x {x.shape}; {jax.default_backend()} backend", flush=True)
  archs = sample_archs(mutator, jax.random.fold_in(key, 3), sizes.forward_archs)
  results: dict[str, Any] = {"sizes": asdict(sizes), "machine": machine_info(), "quick": args.quick}
  results["forward"] = bench_forward(sizes, net, variables, x, archs)
  results["train_step"] = bench_train_step(sizes, net, variables, x, archs[: sizes.train_archs])
  results["vmap_population"] = [
    bench_population(sizes, net, variables, x, mutator, jax.random.fold_in(key, 4 + p), p) for p in sizes.populations
  ]
  results["naive_vmap"] = bench_naive(sizes, jax.random.fold_in(key, 5))
  results["sample_set_choices"] = bench_sample_set(sizes, mutator, jax.random.fold_in(key, 6))
  results["compilations"] = {
    "forward": results["forward"]["compilations"],
    "train_step": results["train_step"]["compilations"],
    "vmap": max(p["compilations"]["vmap"] for p in results["vmap_population"]),
    "sample_set": results["sample_set_choices"]["compilations"],
  }
  results["table"] = format_table(results)
  print()
  print(results["table"])
  out = args.out if args.out is not None or args.quick else Path(__file__).parent / "results" / "supernet.json"
  if out is not None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
  return results


if __name__ == "__main__":
  main()
