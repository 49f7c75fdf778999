"""jaxmutate against MMRazor 1.0.0 on MMRazor's own SPOS/DARTS ShuffleNet space, one right after the other.

The network is the one of MMRazor's anchor benchmark
(``shared/anchors/mmrazor_bench``): a 3x3 conv-BN-ReLU stem (3 -> 32), 8 choice
layers over ``{shuffle_3x3, shuffle_5x5, shuffle_7x7, shuffle_xception}``
(``jaxmutate.ops.ShuffleBlock``/``ShuffleXception``, 32 channels, stride 1, 32x32
maps), global average pooling and a 10-way dense layer; random inputs. Figures,
each on the same shapes and optimisers as MMRazor's side:

* ``sample_set``: one jitted ``set_choices(sample_choices(key))`` call, and the
  same per subnet when 10,000 are drawn in one ``vmap``ped call.
* ``spos_train_step``: :func:`jaxmutate.algorithms.make_spos_train_step` at batch
  64 (a new uniformly sampled subnet every step), SGD lr 0.05 momentum 0.9 and
  weight decay 4e-5; median of 50 steps after 10 warm-up steps.
* ``eval_64_subnets``: 64 sampled subnets on one batch of 256 in eval mode, as
  one ``vmap``ped call (and as a loop of single-subnet calls).
* ``darts_step``: ``DiffMutableOP`` layers (softmax mixture of the 4 candidates),
  one forward/backward updating the weights (SGD 0.025, momentum 0.9, weight
  decay 3e-4) and the architecture logits (Adam 3e-4, b1 0.5, L2 1e-3) from the
  same batch of 64, MMRazor's first-order step; plus jaxmutate's own DARTS
  search step (architecture step on a validation batch, then a weight step)
  first- and second-order, for the second/first-order ratio.
* ``compile``: the first call of the SPOS step and of the DARTS step (trace and
  XLA compile, no persistent cache).

The process tunes the allocator the way the ``jaxmutate`` command does
(:func:`jaxmutate.runtime.configure_allocator`; ``--default-allocator`` to
compare). After its own side it runs ``benchmarks/mmrazor_spos.py`` in MMRazor's
virtual environment (``--mmrazor-python``, default ``$MMRAZOR_PYTHON`` or
``../mmrazor_venv/bin/python``), prints both sides with the speed ratios and
writes ``benchmarks/results/vs_mmrazor.json``. Without that environment it says
how to build it and reports its own side only::

  PYTHONPATH=. python benchmarks/vs_mmrazor.py            # ~6 minutes on 2 CPU cores, both sides
  PYTHONPATH=. python benchmarks/vs_mmrazor.py --quick    # tiny smoke run of jaxmutate's side only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO.parent / "shared" / "anchors" / "mmrazor_bench" / "SETUP.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny shapes and few repetitions; no MMRazor side")
  parser.add_argument("--default-allocator", action="store_true", help="keep glibc's default malloc settings")
  parser.add_argument("--no-mmrazor", action="store_true", help="run jaxmutate's side only")
  parser.add_argument(
    "--mmrazor-python",
    default=os.environ.get("MMRAZOR_PYTHON", str(REPO.parent / "mmrazor_venv" / "bin" / "python")),
    help="the Python of MMRazor's virtual environment",
  )
  parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/vs_mmrazor.json)")
  return parser.parse_args(argv)


ARGS = parse_args(None if __name__ == "__main__" else [])

import jaxmutate as jm  # noqa: E402

if not ARGS.default_allocator:
  # Before the first computation, as the CLI does: XLA's threads take their malloc arenas when they start.
  jm.runtime.configure_allocator()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from machine import machine_info  # noqa: E402

from jaxmutate.algorithms import (  # noqa: E402
  apply_in_train_mode,
  classification_loss,
  init_darts_state,
  init_train_state,
  make_darts_steps,
  make_spos_train_step,
)
from jaxmutate.ops import ShuffleBlock, ShuffleXception  # noqa: E402

CHANNELS = 32
LAYERS = 8
CLASSES = 10


def candidates(channels: int) -> dict[str, nn.Module]:
  return {
    "shuffle_3x3": ShuffleBlock(channels, channels, kernel_size=3),
    "shuffle_5x5": ShuffleBlock(channels, channels, kernel_size=5),
    "shuffle_7x7": ShuffleBlock(channels, channels, kernel_size=7),
    "shuffle_xception": ShuffleXception(channels, channels),
  }


class Supernet(nn.Module):
  """MMRazor's anchor network: stem, ``layers`` choice layers of ``mutable``, pool, dense."""

  mutable: type = jm.OneShotMutableOP
  channels: int = CHANNELS
  layers: int = LAYERS

  @nn.compact
  def __call__(self, x: jax.Array, choices: Any, train: bool = False) -> jax.Array:
    x = jm.models.ConvBNReLU(self.channels, 3, name="stem")(x, train=train)
    for i in range(self.layers):
      x = self.mutable(candidates(self.channels), name=f"layers_{i}")(x, choices, train=train)
    return nn.Dense(CLASSES, name="head")(x.mean((1, 2)))


def median_ms(fn: Callable[[], Any], warmup: int, reps: int) -> dict[str, float]:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  ms = np.asarray(times) * 1e3
  return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max()), "n": reps}


def first_call_s(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def data(batch: int, seed: int) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3)), jnp.float32)
  return x, jnp.asarray(rng.integers(0, CLASSES, batch), jnp.int32)


def bench_spos(quick: bool) -> dict[str, Any]:
  net = Supernet(layers=2 if quick else LAYERS)
  x, y = data(8 if quick else 64, 0)
  optimizer = optax.chain(optax.add_decayed_weights(4e-5), optax.sgd(0.05, momentum=0.9))
  state, variables = init_train_state(net, optimizer, jax.random.key(0), x)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  step = make_spos_train_step(net, mutator, optimizer)
  keys = iter(jax.random.split(jax.random.key(1), 1000))
  holder = [state]

  def one_step():
    holder[0], metrics = step(holder[0], x, y, next(keys))
    return metrics

  results: dict[str, Any] = {"compile_first_call_s": first_call_s(one_step)}
  results["first_loss"] = float(one_step()["loss"])
  results.update(median_ms(one_step, 2 if quick else 10, 3 if quick else 50))
  results["last_loss"] = float(one_step()["loss"])
  results["batch"] = int(x.shape[0])

  # Sample + set: one jitted call, and amortised over 10,000 subnets in one vmapped call.
  sample_set = jax.jit(lambda k: mutator.set_choices(mutator.sample_choices(k)))
  many = jax.jit(jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k))))
  population_keys = jax.random.split(jax.random.key(2), 10_000)
  results["sample_set_us_per_call"] = median_ms(lambda: sample_set(next(keys)), 20, 200)["median_ms"] * 1e3
  results["sample_set_us_per_subnet_vmapped_10000"] = median_ms(lambda: many(population_keys), 2, 10)["median_ms"] / 10
  return results


def bench_eval(quick: bool) -> dict[str, Any]:
  net = Supernet(layers=2 if quick else LAYERS)
  x, _ = data(16 if quick else 256, 1)
  variables = jm.init_supernet(net, jax.random.key(0), x)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  count = 4 if quick else 64
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(3), count))

  # Weights and images are arguments, not constants: XLA would otherwise fold the stem into the program.
  def logits(variables, x, group_choices):
    return net.apply(variables, x, mutator.set_choices(group_choices), train=False)

  apply_one = jax.jit(logits)
  apply_all = jax.jit(jax.vmap(logits, in_axes=(None, None, 0)))
  members = [{g: v[i] for g, v in population.items()} for i in range(count)]
  results: dict[str, Any] = {"compile_first_call_s": first_call_s(lambda: apply_all(variables, x, population))}
  vmapped = median_ms(lambda: apply_all(variables, x, population), 1, 3)
  jax.block_until_ready(apply_one(variables, x, members[0]))
  looped = median_ms(lambda: [apply_one(variables, x, m) for m in members], 0, 3)
  np.testing.assert_allclose(
    np.asarray(apply_all(variables, x, population))[-1], np.asarray(apply_one(variables, x, members[-1])), atol=1e-4
  )
  results.update(
    subnets=count,
    unique_subnets=len({tuple(int(v[i]) for v in population.values()) for i in range(count)}),
    batch=int(x.shape[0]),
    vmapped_total_s=vmapped["median_ms"] / 1e3,
    loop_total_s=looped["median_ms"] / 1e3,
  )
  return results


def bench_darts(quick: bool) -> dict[str, Any]:
  net = Supernet(mutable=jm.DiffMutableOP, layers=2 if quick else LAYERS)
  x, y = data(8 if quick else 64, 2)
  variables = jm.init_supernet(net, jax.random.key(0), x)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  weight_opt = optax.chain(optax.add_decayed_weights(3e-4), optax.sgd(0.025, momentum=0.9))
  arch_opt = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(3e-4, b1=0.5, b2=0.999))
  arch_params = mutator.init_arch_params(jax.random.key(1))
  params, batch_stats = variables["params"], variables["batch_stats"]
  opt_states = (weight_opt.init(params), arch_opt.init(arch_params))

  @jax.jit
  def joint_step(params, batch_stats, arch_params, opt_states, x, y):
    # MMRazor's step: one loss, one backward, both optimisers step on its gradients.
    def loss_of(params, arch_params):
      logits, stats = apply_in_train_mode(net, params, batch_stats, x, mutator.set_choices(arch_params))
      return classification_loss(logits, y), stats

    (loss, stats), (w_grads, a_grads) = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)(params, arch_params)
    w_updates, w_state = weight_opt.update(w_grads, opt_states[0], params)
    a_updates, a_state = arch_opt.update(a_grads, opt_states[1], arch_params)
    new = (optax.apply_updates(params, w_updates), stats, optax.apply_updates(arch_params, a_updates))
    return (*new, (w_state, a_state)), loss

  carry = [(params, batch_stats, arch_params, opt_states)]

  def one_step():
    carry[0], loss = joint_step(*carry[0], x, y)
    return loss

  results: dict[str, Any] = {"compile_first_call_s": first_call_s(one_step)}
  results.update(median_ms(one_step, 2 if quick else 10, 3 if quick else 50))
  results["batch"] = int(x.shape[0])

  # jaxmutate's DARTS search step (arch step on a validation batch, then a weight step): second vs first order.
  xv, yv = data(x.shape[0], 3)
  state, darts_mutator, _ = init_darts_state(net, jm.DiffModuleMutator(), weight_opt, arch_opt, jax.random.key(4), x)
  for name, unroll in (("search_step_first_order", False), ("search_step_second_order", True)):
    steps = make_darts_steps(net, darts_mutator, weight_opt, arch_opt, unroll=unroll, unroll_lr=0.025)
    fn = lambda steps=steps: steps.search_step(state, (x, y), (xv, yv), jax.random.key(5))  # noqa: E731
    results[f"{name}_compile_first_call_s"] = first_call_s(fn)
    results[name] = median_ms(fn, 1, 3 if quick else 10)
  results["second_vs_first_order"] = (
    results["search_step_second_order"]["median_ms"] / results["search_step_first_order"]["median_ms"]
  )
  return results


def run_mmrazor(python: str) -> dict[str, Any] | str:
  """MMRazor's side in its own environment, or why it could not run."""
  if not Path(python).is_file():
    return (
      f"MMRazor's environment was not found at {python!r}: build it as {SETUP} describes "
      "(torch CPU, mmengine, mmrazor 1.0.0, mmcv-lite, mmcls), then pass --mmrazor-python PATH or set MMRAZOR_PYTHON."
    )
  out = REPO / "benchmarks" / "results" / "mmrazor_spos.json"
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "PYTHONPATH")}
  done = subprocess.run(
    [python, str(REPO / "benchmarks" / "mmrazor_spos.py"), "--out", str(out)], env=env, capture_output=True, text=True
  )
  if done.returncode != 0:
    return f"MMRazor's side failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
  return json.loads(out.read_text())


def comparison(ours: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, float, float, float]]:
  """``(figure, MMRazor, jaxmutate, speed ratio)`` rows; a ratio above 1 means jaxmutate is faster."""
  rows = [
    ("SPOS train step, b64 (ms)", theirs["spos_train_step"]["median_ms"], ours["spos"]["median_ms"]),
    (
      "evaluate 64 subnets, b256 (s)",
      theirs["eval_64_subnets"]["total_s_median"],
      ours["eval"]["vmapped_total_s"],
    ),
    ("DARTS first-order step, b64 (ms)", theirs["darts_step"]["median_ms"], ours["darts"]["median_ms"]),
    (
      "sample + set one subnet (us)",
      theirs["sample_set"]["sample_plus_set_us_per_call"],
      ours["spos"]["sample_set_us_per_call"],
    ),
  ]
  return [(name, mm, jx, mm / jx) for name, mm, jx in rows]


def format_table(results: dict[str, Any]) -> str:
  ours = results["jaxmutate"]
  lines = []
  if isinstance(results.get("mmrazor"), dict):
    lines += ["| | MMRazor | jaxmutate | jaxmutate / MMRazor speed |", "|---|---|---|---|"]
    lines += [f"| {name} | {mm:.4g} | {jx:.4g} | {ratio:.2f}x |" for name, mm, jx, ratio in results["comparison"]]
  elif results.get("mmrazor"):
    lines.append(str(results["mmrazor"]))
  lines += [
    "",
    f"jaxmutate SPOS step {ours['spos']['median_ms']:.1f} ms (first call {ours['spos']['compile_first_call_s']:.1f} s);"
    f" sample+set {ours['spos']['sample_set_us_per_call']:.1f} us per call,"
    f" {ours['spos']['sample_set_us_per_subnet_vmapped_10000']:.3f} us per subnet in a vmapped batch of 10,000",
    f"evaluate {ours['eval']['subnets']} subnets: vmapped {ours['eval']['vmapped_total_s']:.2f} s,"
    f" loop {ours['eval']['loop_total_s']:.2f} s",
    f"DARTS joint first-order step {ours['darts']['median_ms']:.1f} ms (first call"
    f" {ours['darts']['compile_first_call_s']:.1f} s); search step second/first order"
    f" {ours['darts']['second_vs_first_order']:.2f}x",
  ]
  return "\n".join(lines)


def main() -> dict[str, Any]:
  results: dict[str, Any] = {
    "machine": machine_info(),
    "allocator_tuned": jm.runtime.configure_allocator() if not ARGS.default_allocator else False,
    "load_average_start": os.getloadavg(),
    "quick": ARGS.quick,
  }
  results["jaxmutate"] = {
    "spos": bench_spos(ARGS.quick),
    "eval": bench_eval(ARGS.quick),
    "darts": bench_darts(ARGS.quick),
  }
  results["load_average_after_jaxmutate"] = os.getloadavg()
  if not (ARGS.quick or ARGS.no_mmrazor):
    results["mmrazor"] = run_mmrazor(ARGS.mmrazor_python)
    if isinstance(results["mmrazor"], dict):
      results["comparison"] = comparison(results["jaxmutate"], results["mmrazor"])
  results["load_average_end"] = os.getloadavg()
  print(format_table(results))
  out = ARGS.out or (None if ARGS.quick else REPO / "benchmarks" / "results" / "vs_mmrazor.json")
  if out is not None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
  return results


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
