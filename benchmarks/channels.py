"""Channel search on MMRazor's TinyResNet space: traced widths, SPOS and sandwich steps, export, sampling.

The network is MMRazor's channel benchmark network (``shared/anchors/mmrazor_bench``,
``bench_spos.py`` section f, ``TinyResNet``), written the way a user writes a
supernet: five declared :class:`jaxmutate.channels.OneShotMutableChannelUnit`
(candidates 0.25/0.5/0.75/1.0, ``choice_mode="ratio"``) whose widths go to
:mod:`jaxmutate.dynamic` layers, prepared with :class:`jaxmutate.OneShotChannelMutator`.
Stem conv 3->32, two basic blocks (32), a stride-2 conv 32->64, one basic block
(64), global pooling and a dense head; every conv is followed by BatchNorm
(+ ReLU). Module paths follow MMRazor's (``stem.0``, ``block1.conv1``, ...) so
the mutator names the units as MMRazor does (``stem.0_(0, 32)_32``, ...).

Figures, each a ratio to a baseline timed in the same process, in paired rounds
(every function once per round, in turn; the ratio is the median over rounds
of the per-round ratio; absolute times are medians):

1. ``forward``: the jitted supernet with traced widths (one compile for every
   width) at the max, min and three sampled widths (``mutator.sample_choices``
   from fixed keys) against the static full-width network (``nn.Conv`` /
   ``nn.BatchNorm``, the same variables), eval-mode BatchNorm; also the static
   network hand-sliced to each of those widths (the XLA floor).
2. ``train_step``: the same for a SPOS-style step (forward, backward, SGD with
   momentum, BatchNorm in train mode) against the static full network's step.
3. ``sandwich``: ``jm.make_sandwich_train_step`` (max + min + 2 random,
   in-place KD) against one max-width step (the static full network's step).
4. ``compile``: compile time of the traced forward, train step and sandwich
   step (XLA's own compile events), and the number of traces and cached
   executables after every width ran (1 = switching widths never recompiles).
5. ``export``: ``jm.export_subnet`` of the sampled and the min widths against a
   hand-written flax network of the same widths (same sliced weights):
   forward ratio, outputs, and parameter count against the analytic count.
6. ``sampling``: 10,000 width configurations sampled and set in one jitted
   call (``jax.vmap`` over keys).

Usage::

  GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 \\
    PYTHONPATH=. python benchmarks/channels.py            # real sizes (~7 minutes on 2 cores)
  PYTHONPATH=. python benchmarks/channels.py --quick      # smoke run (tiny shapes, ~1.5 minutes of compiles)

Without the allocator setting every 33 MB activation is mmapped and
page-faulted afresh. Writes ``benchmarks/results/channels.json`` (``--out``
to change; ``--quick`` writes only with ``--out``). MMRazor's side of the
table is ``benchmarks/mmrazor_channels.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from machine import machine_info

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.algorithms import TrainState, classification_loss, supervised_update
from jaxmutate.channels import OneShotMutableChannelUnit

RATIOS = (0.25, 0.5, 0.75, 1.0)
# unit -> full width, in MMRazor's unit order
UNITS = {"stem": 32, "block1": 32, "block2": 32, "down": 64, "block3": 64}
# MMRazor's unit names (its ChannelAnalyzer on the torch TinyResNet, results.json section f)
MMRAZOR_UNIT_NAMES = {
  "stem": "stem.0_(0, 32)_32",
  "block1": "block1.conv1_(0, 32)_32",
  "block2": "block2.conv1_(0, 32)_32",
  "down": "down.0_(0, 64)_64",
  "block3": "block3.conv1_(0, 64)_64",
}
# (module, conv, norm) -> (input unit, output unit); None is the fixed 3-channel input.
LAYERS = {
  ("stem", "0", "1"): (None, "stem"),
  ("block1", "conv1", "bn1"): ("stem", "block1"),
  ("block1", "conv2", "bn2"): ("block1", "stem"),
  ("block2", "conv1", "bn1"): ("stem", "block2"),
  ("block2", "conv2", "bn2"): ("block2", "stem"),
  ("down", "0", "1"): ("stem", "down"),
  ("block3", "conv1", "bn1"): ("down", "block3"),
  ("block3", "conv2", "bn2"): ("block3", "down"),
}
NUM_CLASSES = 10
# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), on both networks.
BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv_bn(x, features, stride, names, static, out_w, in_w, train):
  """Conv (3x3, no bias) + BatchNorm, created in the calling module's scope under ``names``."""
  conv, norm = names
  if static:
    x = nn.Conv(features, (3, 3), strides=stride, padding=1, use_bias=False, name=conv)(x)
    return nn.BatchNorm(use_running_average=not train, name=norm, **BN)(x)
  x = dynamic.DynamicConv(features, 3, strides=stride, padding=1, use_bias=False, name=conv)(x, out_w, in_w)
  return dynamic.DynamicBatchNorm(use_running_average=not train, name=norm, **BN)(x, out_w)


class ConvBNReLU(nn.Module):
  """MMRazor's ``nn.Sequential(Conv2d, BatchNorm2d, ReLU)``: submodules ``0`` (conv) and ``1`` (norm)."""

  features: int
  stride: int = 1
  static: bool = False

  @nn.compact
  def __call__(self, x, out_w=None, in_w=None, train=False):
    return nn.relu(_conv_bn(x, self.features, self.stride, ("0", "1"), self.static, out_w, in_w, train))


class BasicBlock(nn.Module):
  """MMRazor's ``BasicBlock``: conv1/bn1 + ReLU to ``mid_w``, conv2/bn2 to ``out_w``, identity add, ReLU."""

  mid_features: int
  features: int
  static: bool = False

  @nn.compact
  def __call__(self, x, mid_w=None, out_w=None, train=False):
    y = nn.relu(_conv_bn(x, self.mid_features, 1, ("conv1", "bn1"), self.static, mid_w, out_w, train))
    y = _conv_bn(y, self.features, 1, ("conv2", "bn2"), self.static, out_w, mid_w, train)
    return nn.relu(y + x)


class TinyResNet(nn.Module):
  """MMRazor's TinyResNet: the supernet (declared units, dynamic layers) or a static network.

  Attributes:
    static: a plain ``nn.Conv``/``nn.BatchNorm``/``nn.Dense`` network (the
      choices argument is ignored).
    widths: the static network's widths, ``(unit, width)`` pairs (``None``:
      full width).
  """

  static: bool = False
  widths: tuple[tuple[str, int], ...] | None = None

  @nn.compact
  def __call__(self, x, choices=None, train=False):
    if self.static:
      w = dict(self.widths or UNITS.items())
      feat = w
    else:
      w = {
        u: OneShotMutableChannelUnit(n, RATIOS, choice_mode="ratio", name=f"{u}_channels")(choices)
        for u, n in UNITS.items()
      }
      feat = UNITS
    s = self.static
    x = ConvBNReLU(feat["stem"], 1, s, name="stem")(x, w["stem"], None, train)
    x = BasicBlock(feat["block1"], feat["stem"], s, name="block1")(x, w["block1"], w["stem"], train)
    x = BasicBlock(feat["block2"], feat["stem"], s, name="block2")(x, w["block2"], w["stem"], train)
    x = ConvBNReLU(feat["down"], 2, s, name="down")(x, w["down"], w["stem"], train)
    x = BasicBlock(feat["block3"], feat["down"], s, name="block3")(x, w["block3"], w["down"], train)
    x = x.mean((1, 2))
    if s:
      return nn.Dense(NUM_CLASSES, name="fc")(x)
    return dynamic.DynamicDense(NUM_CLASSES, name="fc")(x, in_width=w["down"])


def static_net(widths: Mapping[str, int] | None = None) -> TinyResNet:
  return TinyResNet(static=True, widths=None if widths is None else tuple(widths.items()))


def sliced_variables(variables: Mapping[str, Any], widths: Mapping[str, int]) -> dict[str, Any]:
  """The static network's variables at ``widths``: every kernel, norm and the head sliced by hand."""
  params = jax.tree.map(lambda v: v, dict(variables["params"]))
  stats = jax.tree.map(lambda v: v, dict(variables["batch_stats"]))
  for (module, conv, norm), (unit_in, unit_out) in LAYERS.items():
    n_in = 3 if unit_in is None else widths[unit_in]
    n_out = widths[unit_out]
    params[module] = dict(params[module])
    stats[module] = dict(stats[module])
    params[module][conv] = {"kernel": params[module][conv]["kernel"][:, :, :n_in, :n_out]}
    params[module][norm] = {k: v[:n_out] for k, v in params[module][norm].items()}
    stats[module][norm] = {k: v[:n_out] for k, v in stats[module][norm].items()}
  params["fc"] = {"kernel": params["fc"]["kernel"][: widths["down"]], "bias": params["fc"]["bias"]}
  return {"params": params, "batch_stats": stats}


def analytic_params(widths: Mapping[str, int]) -> int:
  """Parameters of the network at ``widths``: 3x3 kernels, BatchNorm scale and bias, the dense head."""
  total = 0
  for unit_in, unit_out in LAYERS.values():
    n_in = 3 if unit_in is None else widths[unit_in]
    total += 9 * n_in * widths[unit_out] + 2 * widths[unit_out]
  return total + widths["down"] * NUM_CLASSES + NUM_CLASSES


def count_params(params: Any) -> int:
  return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params)))


def paired(fns: Mapping[str, Callable[[], Any]], rounds: int, warmup: int) -> dict[str, np.ndarray]:
  """Round-robin timing: every function once per round, in turn; the seconds of each call, per function."""
  for f in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(f())
  times: dict[str, list[float]] = {n: [] for n in fns}
  for _ in range(rounds):
    for n, f in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f())
      times[n].append(time.perf_counter() - t)
  return {n: np.asarray(t) for n, t in times.items()}


def summary(times: Mapping[str, np.ndarray], base: str) -> dict[str, dict[str, float]]:
  """Medians, and the median over rounds of each round's ratio to ``base`` (the same round's call)."""
  return {
    n: {
      "median_ms": float(np.median(t) * 1e3),
      "ratio": float(np.median(t / times[base])),
      "ratio_of_min_times": float(np.min(t) / np.min(times[base])),
    }
    for n, t in times.items()
  }


class CompileEvents:
  """Sums JAX's trace / lowering / XLA compile durations (``jax.monitoring``) between ``start`` and ``stop``."""

  def __init__(self) -> None:
    self.active = False
    self.totals: Counter = Counter()
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
    if self.active and event.startswith("/jax/core/compile/"):
      self.totals[event.rsplit("/", 1)[-1]] += duration

  def measure(self, fn: Callable[[], Any]) -> dict[str, float]:
    """Runs ``fn`` once (its first call) and returns the compile durations and the call's wall time."""
    self.totals = Counter()
    self.active = True
    t = time.perf_counter()
    jax.block_until_ready(fn())
    wall = time.perf_counter() - t
    self.active = False
    return {
      "first_call_s": wall,
      "trace_s": self.totals["jaxpr_trace_duration"],
      "lower_s": self.totals["jaxpr_to_mlir_module_duration"],
      "xla_compile_s": self.totals["backend_compile_duration"],
    }


def max_abs(a: Any, b: Any) -> float:
  return float(max(jnp.max(jnp.abs(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def run(batch: int, resolution: int, rounds: int, warmup: int, num_configs: int, sample_calls: int) -> dict[str, Any]:
  load_start = os.getloadavg()
  events = CompileEvents()
  traces: Counter = Counter()
  x = jax.random.normal(jax.random.key(0), (batch, resolution, resolution, 3))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, NUM_CLASSES)

  model = TinyResNet()
  supernet_variables = jm.init_supernet(model, jax.random.key(2), x[:2])
  mutator = jm.OneShotChannelMutator().prepare_from_supernet(supernet_variables)
  units = {info.mutable_name.removesuffix("_channels"): info for info in mutator.units}
  found = {u: info.name for u, info in units.items()}
  assert len(mutator.units) == 5 and len(mutator.mutable_units) == 5, found
  assert found == MMRAZOR_UNIT_NAMES, found
  group_of = {members[0].removesuffix("_channels"): g for g, members in mutator.search_groups.items()}
  # Non-trivial statistics, so that eval-mode BatchNorm does real work.
  variables = jax.tree.map(
    lambda v: v + 0.01,
    {"params": supernet_variables["params"], "batch_stats": supernet_variables["batch_stats"]},
  )

  def widths_of(group_choices: Mapping[int, Any]) -> dict[str, int]:
    kept = {}
    for u, g in group_of.items():
      kept[u] = int(units[u].space.candidates[int(group_choices[g])])
    return kept

  configs = {"max": mutator.max_choices(), "min": mutator.min_choices()}
  for i in range(3):
    configs[f"sampled_{i}"] = mutator.sample_choices(jax.random.key(100 + i))
  configs = {n: {g: jnp.int32(v) for g, v in gc.items()} for n, gc in configs.items()}
  widths = {n: widths_of(gc) for n, gc in configs.items()}
  sliced = {n: sliced_variables(variables, w) for n, w in widths.items() if n != "max"}
  result: dict[str, Any] = {
    "units": found,
    "num_units": len(mutator.units),
    "num_mutable_units": len(mutator.mutable_units),
    "candidates": {units[u].name: list(units[u].space.candidates) for u in UNITS},
    "configs": {n: {MMRAZOR_UNIT_NAMES[u]: k for u, k in w.items()} for n, w in widths.items()},
    "configs_exported": {n: mutator.export_fix_subnet(gc) for n, gc in configs.items()},
  }

  # 1. Forward ---------------------------------------------------------------------------------
  def traced_forward(variables, x, group_choices):
    traces["forward"] += 1
    return model.apply(variables, x, mutator.set_choices(group_choices))

  forward = jax.jit(traced_forward)
  static_full = static_net()
  static_forward = jax.jit(static_full.apply)
  compile_forward = events.measure(lambda: forward(variables, x, configs["max"]))
  hand = {n: (static_net(w), jax.jit(static_net(w).apply)) for n, w in widths.items() if n != "max"}
  fns: dict[str, Callable[[], Any]] = {"static_full": lambda: static_forward(variables, x)}
  for n in configs:
    fns[f"traced_{n}"] = lambda n=n: forward(variables, x, configs[n])
  for n in hand:
    fns[f"static_{n}"] = lambda n=n: hand[n][1](sliced[n], x)
  # The traced supernet is the static network: at full width, and hand-sliced at every other width.
  errors = {"traced_max": max_abs(fns["traced_max"](), fns["static_full"]())}
  for n in hand:
    errors[f"traced_{n}"] = max_abs(fns[f"traced_{n}"](), fns[f"static_{n}"]())
  assert max(errors.values()) < 1e-3, errors
  result["forward"] = {
    "timings": summary(paired(fns, rounds, warmup), "static_full"),
    "max_abs_diff_vs_static": errors,
    "compile": compile_forward,
  }

  # 2. SPOS-style train step ---------------------------------------------------------------------
  optimizer = optax.sgd(0.05, momentum=0.9)

  def state_of(v: Mapping[str, Any]) -> TrainState:
    return TrainState(v["params"], v["batch_stats"], optimizer.init(v["params"]), jnp.int32(0))

  def traced_step(state, x, y, group_choices):
    traces["train_step"] += 1
    return supervised_update(model, optimizer, classification_loss, state, x, y, mutator.set_choices(group_choices))

  train_step = jax.jit(traced_step)
  state = state_of(variables)
  static_step = jax.jit(
    lambda state, x, y: supervised_update(static_full, optimizer, classification_loss, state, x, y, {})
  )
  compile_train = events.measure(lambda: train_step(state, x, y, configs["max"]))
  hand_steps = {
    n: jax.jit(lambda state, x, y, net=net: supervised_update(net, optimizer, classification_loss, state, x, y, {}))
    for n, (net, _) in hand.items()
  }
  hand_states = {n: state_of(v) for n, v in sliced.items()}
  fns = {"static_full": lambda: static_step(state, x, y)}
  for n in configs:
    fns[f"traced_{n}"] = lambda n=n: train_step(state, x, y, configs[n])
  for n in hand:
    fns[f"static_{n}"] = lambda n=n: hand_steps[n](hand_states[n], x, y)
  step_errors = {"traced_max": max_abs(fns["traced_max"]()[0].params, fns["static_full"]()[0].params)}
  for n in hand:
    step_errors[f"traced_{n}"] = abs(float(fns[f"traced_{n}"]()[1]["loss"] - fns[f"static_{n}"]()[1]["loss"]))
  assert max(step_errors.values()) < 1e-3, step_errors
  result["train_step"] = {
    "timings": summary(paired(fns, max(rounds - 2, 3), warmup), "static_full"),
    "max_abs_diff_vs_static": step_errors,
    "compile": compile_train,
    "optimizer": "optax.sgd(0.05, momentum=0.9)",
  }

  # 3. Sandwich step -------------------------------------------------------------------------------
  sandwich = jm.make_sandwich_train_step(model, mutator, optimizer, num_random_samples=2)
  compile_sandwich = events.measure(lambda: sandwich(state, x, y, jax.random.key(7)))
  keys = iter([jax.random.key(8000 + i) for i in range(10 * (rounds + warmup + 2))])
  fns = {
    "static_full_step": lambda: static_step(state, x, y),
    "traced_max_step": lambda: train_step(state, x, y, configs["max"]),
    "sandwich": lambda: sandwich(state, x, y, next(keys)),
  }
  result["sandwich"] = {
    "timings": summary(paired(fns, max(rounds - 2, 3), warmup), "static_full_step"),
    "compile": compile_sandwich,
    "num_random_samples": 2,
    "keys": "a fresh key every call (different random widths each round)",
  }

  # 4. Recompilation: every width ran above; once more, with configurations never seen.
  for i in range(num_configs):
    gc = mutator.sample_choices(jax.random.key(1000 + i))
    jax.block_until_ready(forward(variables, x, gc))
  jax.block_until_ready(train_step(state, x, y, mutator.sample_choices(jax.random.key(999))))
  result["recompilation"] = {
    "forward_traces": traces["forward"],
    "forward_executables": forward._cache_size(),
    "train_step_traces": traces["train_step"],
    "train_step_executables": train_step._cache_size(),
    "sandwich_executables": sandwich._cache_size(),
    "widths_run_through_forward": len(configs) + num_configs,
  }

  # 5. Export with real weights ----------------------------------------------------------------------
  export: dict[str, Any] = {}
  fns = {}
  for n in hand:
    choices = mutator.set_choices(configs[n])
    exported, exported_variables = jm.export_subnet(model, variables, choices, x[:2])
    run_exported = jax.jit(exported.apply)
    fns[f"hand_{n}"] = lambda n=n: hand[n][1](sliced[n], x)
    fns[f"exported_{n}"] = lambda f=run_exported, v=exported_variables: f(v, x)
    export[n] = {
      "params": count_params(exported_variables["params"]),
      "analytic_params": analytic_params(widths[n]),
      "supernet_params": count_params(variables["params"]),
      "max_abs_diff_vs_supernet": max_abs(fns[f"exported_{n}"](), forward(variables, x, configs[n])),
      "max_abs_diff_vs_hand_written": max_abs(fns[f"exported_{n}"](), fns[f"hand_{n}"]()),
    }
    assert export[n]["params"] == export[n]["analytic_params"], export[n]
    assert export[n]["max_abs_diff_vs_hand_written"] < 1e-4, export[n]
  times = paired(fns, rounds, warmup)
  # Each exported subnet against its own hand-written network, round by round.
  for n in hand:
    pair = summary({"hand": times[f"hand_{n}"], "exported": times[f"exported_{n}"]}, "hand")
    export[n]["hand_written_ms"] = pair["hand"]["median_ms"]
    export[n]["exported_ms"] = pair["exported"]["median_ms"]
    export[n]["ratio"] = pair["exported"]["ratio"]
    export[n]["ratio_of_min_times"] = pair["exported"]["ratio_of_min_times"]
  result["export"] = export

  # 6. Sampling and setting 10,000 width configurations in one jitted call -------------------------
  def sample_and_set(keys):
    traces["sample"] += 1
    return jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k)))(keys)

  sample = jax.jit(sample_and_set)
  all_keys = [jax.random.split(jax.random.key(50 + i), 10_000) for i in range(sample_calls + 1)]
  first = events.measure(lambda: sample(all_keys[0]))
  times = []
  for k in all_keys[1:]:
    t = time.perf_counter()
    jax.block_until_ready(sample(k))
    times.append(time.perf_counter() - t)
  drawn = sample(all_keys[1])
  # One configuration per jitted call, as MMRazor samples and sets (its figure is per call).
  single = jax.jit(lambda k: mutator.set_choices(mutator.sample_choices(k)))
  single_keys = [jax.random.key(60 + i) for i in range(200)]  # made before timing: slicing a key array dispatches
  for k in single_keys[:10]:
    jax.block_until_ready(single(k))
  t = time.perf_counter()
  for k in single_keys:
    jax.block_until_ready(single(k))
  single_us = (time.perf_counter() - t) / len(single_keys) * 1e6
  result["sampling"] = {
    "configurations_per_call": 10_000,
    "first_call": first,
    "median_ms_per_call": float(np.median(times) * 1e3),
    "median_us_per_configuration": float(np.median(times) / 10_000 * 1e6),
    "calls": sample_calls,
    "one_configuration_per_call_us": single_us,
    "traces": traces["sample"],
    "distinct_configurations_in_one_call": int(len({tuple(r) for r in np.stack(list(drawn.values()), 1).tolist()})),
  }

  result["targets"] = targets(result)
  result.update(
    sizes={"batch": batch, "resolution": resolution, "rounds": rounds, "warmup": warmup},
    load_average={"start": load_start, "end": os.getloadavg()},
    glibc_tunables=os.environ.get("GLIBC_TUNABLES"),
    machine=machine_info(),
  )
  return result


def targets(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """Issue 9's targets, each with the measured figure and whether it is met."""
  out: dict[str, dict[str, Any]] = {}
  for section in ("forward", "train_step"):
    t = result[section]["timings"]
    out[f"{section}_min"] = {"target": 0.19, "ratio": t["traced_min"]["ratio"]}
    for n in (k for k in t if k.startswith("traced_sampled")):
      out[f"{section}_{n.removeprefix('traced_')}"] = {"target": 0.49, "ratio": t[n]["ratio"]}
  out["sandwich_vs_max_step"] = {"target": 2.2, "ratio": result["sandwich"]["timings"]["sandwich"]["ratio"]}
  for n, e in result["export"].items():
    out[f"export_{n}_vs_hand_written"] = {"target": 1.05, "ratio": e["ratio"]}
  for entry in out.values():
    entry["met"] = bool(entry["ratio"] <= entry["target"])
  r = result["recompilation"]
  out["one_compile_for_every_width"] = {
    "met": bool(r["forward_executables"] == r["train_step_executables"] == r["sandwich_executables"] == 1)
    and r["forward_traces"] == r["train_step_traces"] == 1
  }
  return out


def report(result: dict[str, Any]) -> None:
  for section in ("forward", "train_step", "sandwich"):
    print(f"[{section}]")
    base = next(iter(result[section]["timings"]))
    for name, t in result[section]["timings"].items():
      print(f"  {name:18s} {t['median_ms']:9.1f} ms  x{t['ratio']:.3f} of {base}")
    if "compile" in result[section]:
      c = result[section]["compile"]
      print(f"  compile: XLA {c['xla_compile_s']:.1f} s, first call {c['first_call_s']:.1f} s")
  for n, e in result["export"].items():
    print(
      f"[export {n}] {e['exported_ms']:.1f} vs {e['hand_written_ms']:.1f} ms hand-written: x{e['ratio']:.3f}; "
      f"params {e['params']} (analytic {e['analytic_params']}, supernet {e['supernet_params']})"
    )
  print("[recompilation]", result["recompilation"])
  s = result["sampling"]
  print(
    f"[sampling] 10,000 configs: {s['median_ms_per_call']:.2f} ms per call, {s['median_us_per_configuration']:.3f} us "
    f"each; one per call: {s['one_configuration_per_call_us']:.0f} us"
  )
  print("[units]", result["units"])
  print("[targets]", {n: t["met"] for n, t in result["targets"].items()})
  print("[load]", result["load_average"])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny shapes and rounds (smoke run)")
  parser.add_argument("--out", default=None, help="JSON path (default results/channels.json; --quick: none)")
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--batch", type=int, default=None, help="default 256 (--quick: 8)")
  parser.add_argument("--resolution", type=int, default=None, help="default 32 (--quick: 8)")
  args = parser.parse_args()
  if args.quick:
    result = run(args.batch or 8, args.resolution or 8, args.rounds or 3, 1, 3, 3)
  else:
    result = run(args.batch or 256, args.resolution or 32, args.rounds or 9, 2, 20, 20)
  report(result)
  out = args.out or (None if args.quick else str(Path(__file__).parent / "results" / "channels.json"))
  if out:
    Path(out).write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    print(f"wrote {out}")


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.generic, jax.Array)):
    return np.asarray(value).tolist()
  raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
  main()
