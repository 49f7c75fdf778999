"""Writes notebooks/search_at_scale.ipynb (run: python notebooks/_make_search_at_scale.py [--execute])."""

import argparse
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
  new_markdown_cell(
    "# Search at scale: on device, sharded, resumable, multi-objective\n\n"
    "The evolution search of SPOS as one compiled program, its scoring split over 8 devices, a search stopped "
    "half-way and resumed from its checkpoint with the same result, and NSGA-II's accuracy–FLOPs Pareto front. "
    "Everything runs on a laptop CPU: 8 *host* devices stand in for 8 accelerators (the code is the same on a "
    "real mesh; see `docs/sharding.md` for several hosts). A small space keeps it under a minute."
  ),
  new_code_cell(
    "import os\n"
    "\n"
    "# Before jax is imported: split the CPU into 8 host devices.\n"
    "os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'\n"
    "os.environ.setdefault('JAX_PLATFORMS', 'cpu')\n"
    "import functools, tempfile\n"
    "import jax, jax.numpy as jnp, numpy as np, optax\n"
    "import matplotlib.pyplot as plt\n"
    "import jaxmutate as jm\n"
    "from jaxmutate.algorithms import evaluate_accuracy, init_train_state\n"
    "from jaxmutate.data import load_digits\n"
    "from jaxmutate.resources import build_resource_table\n"
    "from jaxmutate.runners import train_supernet\n"
    "from jaxmutate.runners.checkpoint import Checkpointer, resumable_loop\n"
    "from jaxmutate.search import nsga2, pareto_front, run_strategy\n"
    "from jaxmutate.sharding import make_mesh, pad_population, replicate\n"
    "\n"
    "# The search's own kernels are small: XLA's optimisation level 0 compiles them several times faster on CPU.\n"
    "FAST = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}\n"
    "len(jax.devices())"
  ),
  new_markdown_cell(
    "## A supernet and a jittable scorer\n\n"
    "A searchable MLP on the embedded 8×8 digits: three hidden layers, each one of `relu`, `gelu`, `tanh` or "
    "`skip` (64 subnets), trained for four epochs with SPOS (one uniformly sampled subnet per step). The "
    "score of a subnet is its validation accuracy, `vmap`ped over a population so that a whole pool is rated in "
    "one call; the FLOPs of every choice come from a `ResourceTable` (jittable: the constraint is checked inside "
    "the compiled search)."
  ),
  new_code_cell(
    "data = load_digits(seed=0, val_fraction=0.25)\n"
    "net = jm.SearchableMLP(num_classes=10, width=64, num_layers=3)\n"
    "optimizer = optax.adam(3e-3)\n"
    "state, variables = init_train_state(net, optimizer, jax.random.key(0), jnp.asarray(data.train.images[:64]))\n"
    "mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)\n"
    "state, log = train_supernet(net, mutator, optimizer, state, data.train, 4, 32, jax.random.key(1))\n"
    "table = build_resource_table(net, variables, mutator, jnp.asarray(data.train.images[:1]))\n"
    "\n"
    "def score(population, params, batch_stats, images, labels):\n"
    "  rate = lambda group_choices: evaluate_accuracy(net, params, batch_stats, mutator.set_choices(group_choices),\n"
    "                                                 images, labels)\n"
    "  return jax.vmap(rate)(population)\n"
    "\n"
    "args = (state.params, state.batch_stats, jnp.asarray(data.val.images), jnp.asarray(data.val.labels))\n"
    "flops = table(jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 256)))['flops']\n"
    "print(f'supernet loss {log[-1][\"loss\"]:.3f}; subnet MFLOPs per image from {float(flops.min()):.4f} to '\n"
    "      f'{float(flops.max()):.4f}')"
  ),
  new_markdown_cell(
    "## The evolution search on 8 devices\n\n"
    "`run_on_device` runs MMRazor's `EvolutionSearchLoop` (top-k, mutation, crossover, constraint rejection "
    "with an attempt cap, de-duplication, a score cache) as one `lax.scan` over generations. With `mesh=`, "
    "each pool handed to the scorer is split over the mesh's `population` axis: every device rates 2 of the 16 "
    "subnets, in the same compiled program (the next section runs the same search on one device: the same "
    "subnets, the same scores)."
  ),
  new_code_cell(
    "limit = float(np.median(flops))\n"
    "loop = jm.EvolutionSearchLoop(max_epochs=6, num_candidates=16, top_k=4, num_mutation=8, num_crossover=8,\n"
    "                              mutate_prob=0.3, constraints_range={'flops': (0, limit)})\n"
    "mesh = make_mesh(population=8)\n"
    "eight = loop.run_on_device(jax.random.key(3), mutator, score, table, score_args=replicate(mesh, args),\n"
    "                           compiler_options=FAST, mesh=mesh)\n"
    "print('best subnet:', mutator.export_fix_subnet(jax.device_get(eight.best_choices)))\n"
    "print(f'val accuracy {eight.best_score:.3f} under {limit:.4f} MFLOPs; {eight.num_evaluated} subnets rated')\n"
    "[round(r['best_score'], 3) for r in eight.history]"
  ),
  new_markdown_cell(
    "## Stopped half-way, resumed, the same result\n\n"
    "`run_stepwise` runs the same search one generation at a time from a pure state (key, pool, top-k, the "
    "archive of every score, the history so far) and rates on the host with any scorer. "
    "`resumable_loop` saves that state with orbax after every generation; here a scorer that fails during the "
    "fourth generation stands in for a killed process (the SPOS runner does exactly this: "
    "`jaxmutate search ... --resume`). The resumed search starts at its last checkpoint, rates only what was "
    "left, and ends with the bits of the uninterrupted one."
  ),
  new_code_cell(
    "rate_jit = jax.jit(score)\n"
    "\n"
    "def rate(population):  # the host scorer: pad to whole chunks of 8 so that one executable serves every pool\n"
    "  padded, size = pad_population(population, 8)\n"
    "  return np.asarray(rate_jit(padded, *args))[:size]\n"
    "\n"
    "whole, _ = loop.run_stepwise(jax.random.key(3), mutator, rate, table, compiler_options=FAST)\n"
    "same = lambda a, b: (a.history == b.history and a.top_k_scores == b.top_k_scores\n"
    "                     and all(np.array_equal(a.top_k[g], b.top_k[g]) for g in a.top_k))\n"
    "print('one device, host-driven, equals the 8-device search:', same(whole, eight))\n"
    "\n"
    "class Killed(Exception):\n"
    "  pass\n"
    "\n"
    "calls = []\n"
    "def dies_in_generation_4(population):\n"
    "  calls.append(1)\n"
    "  if len(calls) == 4:\n"
    "    raise Killed\n"
    "  return rate(population)\n"
    "\n"
    "folder = tempfile.mkdtemp()\n"
    "saver = Checkpointer(folder, {'space': 'digits-mlp'}, every_n_steps=1, keep=2)\n"
    "try:\n"
    "  loop.run_stepwise(jax.random.key(3), mutator, dies_in_generation_4, table,\n"
    "                    driver=functools.partial(resumable_loop, checkpointer=saver), compiler_options=FAST)\n"
    "except Killed:\n"
    "  print('stopped; checkpoints of generations', saver.steps())\n"
    "\n"
    "saver = Checkpointer(folder, {'space': 'digits-mlp'}, every_n_steps=1, keep=2, resume=True)\n"
    "resumed, search_state = loop.run_stepwise(jax.random.key(3), mutator, rate, table,\n"
    "                                          driver=functools.partial(resumable_loop, checkpointer=saver),\n"
    "                                          compiler_options=FAST)\n"
    "print('resumed: the same result as uninterrupted:', same(resumed, whole))"
  ),
  new_markdown_cell(
    "## NSGA-II: the accuracy–FLOPs Pareto front\n\n"
    "The multi-objective strategy keeps the non-dominated subnets (higher accuracy, fewer FLOPs) with crowding "
    "distance for spread. It runs through the same `init`/`ask`/`tell` interface and the same on-device loop "
    "(`run_strategy`); `pareto_front` reads the front off its final state. In grey: every subnet the evolution "
    "search above rated."
  ),
  new_code_cell(
    "front_state, _ = run_strategy(jax.random.key(4), nsga2(mutator, 16, cost_key='flops'), score, 8,\n"
    "                              resource_fn=table, score_args=args, compiler_options=FAST)\n"
    "front, front_scores, front_flops = pareto_front(front_state)\n"
    "rated, rated_scores = loop.rated(search_state)\n"
    "fig, ax = plt.subplots(figsize=(6, 4))\n"
    "ax.scatter(np.asarray(table(rated)['flops']), rated_scores, s=12, c='0.7', label='rated by evolution')\n"
    "ax.plot(front_flops, front_scores, 'o-', c='tab:red', label='NSGA-II Pareto front')\n"
    "ax.axvline(limit, ls=':', c='0.4', label='evolution FLOPs limit')\n"
    "ax.set_xlabel('MFLOPs per image'); ax.set_ylabel('validation accuracy'); ax.legend(loc='lower right')\n"
    "plt.show()\n"
    "[(round(float(f), 4), round(float(s), 3)) for f, s in zip(front_flops, front_scores)]"
  ),
]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--execute", action="store_true", help="run it once with nbclient (stores the outputs)")
  args = parser.parse_args()
  path = pathlib.Path(__file__).with_name("search_at_scale.ipynb")
  metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
  notebook = new_notebook(cells=CELLS, metadata=metadata)
  if args.execute:
    import time

    import nbclient

    start = time.perf_counter()
    client = nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    print(f"executed in {time.perf_counter() - start:.1f} s")
  nbformat.write(notebook, path)


if __name__ == "__main__":
  main()
