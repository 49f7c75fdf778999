"""Writes notebooks/darts.ipynb (run: python notebooks/_make_darts.py [--execute])."""

from _notebook import new_code_cell, new_markdown_cell, write_notebook

CELLS = [
  new_markdown_cell(
    "# DARTS in jaxmutate\n\n"
    "Differentiable architecture search on the embedded 8×8 digits, small enough to run in under a minute on a "
    "CPU: a DARTS cell supernet, a few first-order search steps (Adam on the architecture logits with a "
    "validation batch, SGD on the weights with a training batch), the architecture weights, the exported "
    "subnet (MMRazor's `best_fix_subnet.yaml` layout) and the derived discrete network.\n\n"
    "The full search is `jaxmutate search configs/darts_digits.py` (exact second order: "
    "`configs/darts_digits_unrolled.py`; GDAS: `configs/gdas_digits.py`)."
  ),
  new_code_cell(
    "import time\n"
    "import jax, jax.numpy as jnp, numpy as np, optax, yaml\n"
    "import jaxmutate as jm\n"
    "from jaxmutate.algorithms import arch_weights_table, derive_group_choices, init_darts_state, make_darts_steps\n"
    "from jaxmutate.data import iterate_batches, load_digits\n"
    "from jaxmutate.models import derive_discrete_network, discrete_network_variables\n"
    "\n"
    "# XLA optimisation level 0: the supernet (every op of every edge) compiles several times faster on CPU.\n"
    "FAST = {'xla_backend_optimization_level': 0}\n"
    "data = load_digits(seed=0, val_fraction=0.25)\n"
    "len(data.train), len(data.val), data.train.images.shape[1:]"
  ),
  new_markdown_cell(
    "## The supernet\n\n"
    "One normal and one reduction cell with two nodes each. Every edge is a `DiffMutableOP`; here over four "
    "of the eight DARTS operations to keep the notebook fast (drop `op_names` for all eight). Every node's "
    "inputs are a `DiffChoiceRoute` that keeps its top 2 edges. Aliases tie each edge (`normal_n2_p0`) and "
    "each node (`normal_n2`) across cells of the same type, so the mutator makes one logit vector per alias."
  ),
  new_code_cell(
    "net = jm.build(dict(type='DartsBackbone', base_channels=8, num_layers=2, num_nodes=2, stem_multiplier=2,\n"
    "                    num_classes=10, reduction_layers=[1],\n"
    "                    op_names=['zero', 'skip_connect', 'max_pool_3x3', 'sep_conv_3x3']))\n"
    "weight_opt = optax.chain(optax.clip_by_global_norm(5.0), optax.add_decayed_weights(3e-4),\n"
    "                         optax.sgd(0.05, momentum=0.9))\n"
    "arch_opt = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(6e-3, b1=0.5, b2=0.999))\n"
    "sample = jnp.asarray(data.train.images[:64])\n"
    "state, mutator, variables = init_darts_state(net, jm.DiffModuleMutator(), weight_opt, arch_opt,\n"
    "                                             jax.random.key(0), sample, FAST)\n"
    "{mutator.group_key(g): names for g, names in list(mutator.search_groups.items())[:4]}"
  ),
  new_markdown_cell(
    "## A few search steps\n\n"
    "`search_step` is one jitted function: the architecture step (validation batch, Adam) and then the weight "
    "step (training batch, SGD). `make_darts_steps(..., unroll=True)` gives the exact second-order "
    "hypergradient ∇α L_val(w − ξ∇w L_train(w, α), α) instead."
  ),
  new_code_cell(
    "steps = make_darts_steps(net, mutator, weight_opt, arch_opt, compiler_options=FAST)\n"
    "history = [arch_weights_table(mutator, state.arch_params)]\n"
    "start = time.perf_counter()\n"
    "def val_stream():  # endless shuffled validation batches for the architecture steps\n"
    "  for epoch in range(10**6):\n"
    "    yield from iterate_batches(jax.random.key(100 + epoch), data.val, 64)\n"
    "\n"
    "val_batches = val_stream()\n"
    "for epoch in range(4):\n"
    "  for (x, y), (xv, yv) in zip(iterate_batches(jax.random.key(epoch), data.train, 64), val_batches):\n"
    "    state, metrics = steps.search_step(state, (jnp.asarray(x), jnp.asarray(y)), (jnp.asarray(xv), jnp.asarray(yv)),\n"
    "                                       jax.random.key(int(state.step)))\n"
    "  history.append(arch_weights_table(mutator, state.arch_params))\n"
    "  print(f'epoch {epoch + 1}: step {int(state.step)}, ' + ', '.join(f'{k} {float(v):.3f}' for k, v in metrics.items()))\n"
    "print(f'{time.perf_counter() - start:.1f} s including compilation')"
  ),
  new_markdown_cell("## Architecture weights\n\nSoftmax of each group's logits, per epoch."),
  new_code_cell(
    "import matplotlib.pyplot as plt\n"
    "keys = ['normal_n2_p0', 'normal_n3_p2', 'reduce_n2_p0', 'normal_n3']\n"
    "fig, axes = plt.subplots(1, len(keys), figsize=(13, 2.6))\n"
    "for ax, key in zip(axes, keys):\n"
    "  g = next(g for g in mutator.search_groups if mutator.group_key(g) == key)\n"
    "  series = np.array([h[key] for h in history])\n"
    "  for i, name in enumerate(mutator.group_spec(g).choice_names):\n"
    "    ax.plot(series[:, i], marker='o', label=name)\n"
    "  ax.set_title(key); ax.set_xlabel('epoch'); ax.legend(fontsize=6)\n"
    "fig.tight_layout(); plt.show()\n"
    "{k: np.round(v, 3).tolist() for k, v in history[-1].items() if k.startswith('normal_n3')}"
  ),
  new_markdown_cell(
    "## Export\n\n"
    "Argmax op per edge (never `zero`, as in the DARTS paper) and the top-2 edges per node, in MMRazor's layout "
    "`{alias: {chosen: ...}}` (routes as lists of edge names), ready for `best_fix_subnet.yaml`."
  ),
  new_code_cell(
    "group_choices = derive_group_choices(mutator, state.arch_params)\n"
    "fix_subnet = mutator.export_fix_subnet(group_choices)\n"
    "print(yaml.safe_dump({k: fix_subnet[k] for k in list(fix_subnet)[:7]}, sort_keys=False))"
  ),
  new_markdown_cell(
    "## The derived discrete network\n\n"
    "A plain Flax module that runs only the chosen ops on the chosen inputs (a node sums its two kept edges), "
    "with its weights copied from the supernet by module path. Its output equals the supernet's when the "
    "supernet's mutables take weights directly (`direct_weights=True`) with weight 1 on the chosen ops and "
    "edges (tested in `tests/models/test_darts_backbone.py`). A short fine-tune adapts the weights and "
    "BatchNorm statistics to the discrete network."
  ),
  new_code_cell(
    "derived = derive_discrete_network(net, fix_subnet)\n"
    "sub_vars = discrete_network_variables(derived, {'params': state.params, 'batch_stats': state.batch_stats}, sample)\n"
    "count = lambda tree: sum(np.size(a) for a in jax.tree.leaves(tree))\n"
    "print('normal cell:', derived.normal_genotype)\n"
    "print('weights: supernet', count(state.params), '-> derived', count(sub_vars['params']))\n"
    "opt = optax.sgd(0.05, momentum=0.9)\n"
    "\n"
    "@jax.jit\n"
    "def finetune_step(v, opt_state, x, y):\n"
    "  def loss(p):\n"
    "    logits, upd = derived.apply({'params': p, 'batch_stats': v['batch_stats']}, x, train=True, mutable=['batch_stats'])\n"
    "    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd['batch_stats']\n"
    "  (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(v['params'])\n"
    "  updates, opt_state = opt.update(grads, opt_state)\n"
    "  return {'params': optax.apply_updates(v['params'], updates), 'batch_stats': stats}, opt_state\n"
    "\n"
    "opt_state = opt.init(sub_vars['params'])\n"
    "for epoch in range(3):\n"
    "  for x, y in iterate_batches(jax.random.key(200 + epoch), data.train, 64):\n"
    "    sub_vars, opt_state = finetune_step(sub_vars, opt_state, jnp.asarray(x), jnp.asarray(y))\n"
    "logits = derived.apply(sub_vars, jnp.asarray(data.test.images))\n"
    "print(f'derived network test accuracy after 3 epochs: {float((logits.argmax(-1) == data.test.labels).mean()):.3f}')"
  ),
]


if __name__ == "__main__":
  write_notebook(CELLS, "darts.ipynb")
