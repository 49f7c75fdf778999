"""Writes notebooks/pruning.ipynb (run: python notebooks/_make_pruning.py [--execute])."""

from _notebook import code, md, write_notebook

CELLS = [
  md(
    """
    # Structured pruning in jaxmutate

    Pruning removes whole channels from a trained network, so the result is a really smaller network (fewer
    parameters, fewer FLOPs), not a sparse one. This notebook prunes an ordinary Flax CNN, written with `nn.Conv`,
    `nn.BatchNorm` and `nn.Dense` and nothing searchable, on the embedded 8×8 digits: it ranks channels by magnitude,
    Taylor and Fisher importance, prunes to half the FLOPs (local and global ranking, `round_to`), follows MMRazor's
    iterative `ItePruneAlgorithm` schedule and GroupFisher's one-channel-at-a-time pruning, adds a group-lasso
    regulariser, and exports the smaller network with its sliced weights. It runs in well under a minute on a CPU.

    The whole pipeline is `jaxmutate search configs/prune_digits.py`.
    """
  ),
  code(
    """
    import os
    import tempfile

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxmutate as jm
    from jaxmutate import pruning
    from jaxmutate.analysis import analyze_channels
    from jaxmutate.data import iterate_batches, load_digits
    from jaxmutate.models import PlainCNN

    data = load_digits(seed=0)
    train_images, train_labels = jnp.asarray(data.train.images), jnp.asarray(data.train.labels)
    val_images, val_labels = jnp.asarray(data.val.images), jnp.asarray(data.val.labels)
    len(data.train), len(data.val), data.train.images.shape[1:]
    """
  ),
  md(
    """
    ## 1. An unmodified network and its channel units

    `PlainCNN` is three `conv → BatchNorm → relu` blocks, global pooling and a classifier. A **channel unit**
    (`jaxmutate.analysis.ChannelGroup`) lists every slice of every variable that one channel occupies: the producing
    kernel's output axis, the BatchNorm scale, bias and statistics, and the next layer's input axis. Pruning channel
    `i` of a unit removes position `slice.indices[i]` along `slice.axis` of each of them.
    `jaxmutate.analysis.analyze_channels` finds the units by tracing the model once and walking its jaxpr; the
    classifier's outputs reach the model output, so they are excluded (with the reason).
    """
  ),
  code(
    """
    model = PlainCNN(features=(16, 32, 64), strides=(1, 2, 2), num_classes=10)
    key, sample = jax.random.key(0), train_images[:1]
    # XLA spends most of an init's compile optimising the initialisers; it runs once, so skip that.
    variables = jax.jit(model.init).lower(key, sample).compile({"xla_backend_optimization_level": 0})(key, sample)
    analysis = analyze_channels(model, variables, sample)
    groups = analysis.groups
    print("excluded:", [(e.name, e.reasons) for e in analysis.excluded])
    for s in groups[1].slices:
      print(f"{groups[1].name}: {s.collection}/{'/'.join(s.path)} axis {s.axis} ({s.role})")
    """
  ),
  md(
    """
    Train it briefly. The train step takes **masks** (one 0/1 vector per unit) as an input and runs the model
    through `pruning.masked_apply`: the analysis's masked program (`jaxmutate.analysis.masked_function`), which
    zeroes a unit's kernels, biases and norm parameters and masks every reduction over its channels, so it computes
    exactly what the sliced network computes and gives pruned weights no gradient. The program is the traced one, so
    `masked_apply` analyses the model again (from shapes, once) for each batch shape and for training mode. One
    compiled step serves every pruning state.
    """
  ),
  code(
    """
    optimizer = optax.sgd(0.05, momentum=0.9, nesterov=True)


    masked = pruning.masked_apply(model, analysis)


    def loss_and_stats(params, batch_stats, masks, images, labels):
      variables = {"params": params, "batch_stats": batch_stats}
      logits, new = masked(variables, masks, images, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new["batch_stats"]


    def make_train_step(opt):
      @jax.jit
      def train_step(params, batch_stats, opt_state, masks, images, labels):
        (_, batch_stats), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(
          params, batch_stats, masks, images, labels
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

      return train_step


    train_step = make_train_step(optimizer)


    @jax.jit
    def val_accuracy(variables, masks):
      logits = masked(variables, masks, val_images)
      return (logits.argmax(-1) == val_labels).mean()


    def train(variables, masks, epochs, seed=0, opt=optimizer):
      step = train_step if opt is optimizer else make_train_step(opt)
      params, batch_stats = variables["params"], variables["batch_stats"]
      opt_state = opt.init(params)
      for epoch in range(epochs):
        for images, labels in iterate_batches(jax.random.key(seed + epoch), data.train, 64):
          params, batch_stats, opt_state = step(params, batch_stats, opt_state, masks, images, labels)
      return {"params": params, "batch_stats": batch_stats}


    full = pruning.full_masks(groups)
    variables = train(variables, full, epochs=8)
    print(f"unpruned val accuracy: {float(val_accuracy(variables, full)):.3f}")
    """
  ),
  md(
    """
    ## 2. Importance

    Every criterion returns one score per channel of each unit and is a pure, jittable function:

    * **magnitude**: the L1 (or L2) norm of the producing kernel's output channel, optionally times the BatchNorm
      scale (`"l1_bn"`, network slimming's signal);
    * **Taylor**: `Σ |w · ∂L/∂w|` over all the unit's parameter slices, from one gradient of a batch of the pruned
      network's loss (`masked_loss_fn`, here through `masked`);
    * **Fisher** (GroupFisher): each example's gradient of its loss with respect to the channel mask, squared and
      summed over the batch: per-example gradients by `jax.vmap`, one call for the batch. GroupFisher's mask
      multiplies a unit's activation where it is read (`pruning.mask_consumers`), so its gradient is the activation
      times its gradient; Fisher takes the unmasked `loss_fn` and masks the consumers itself.
    """
  ),
  code(
    """
    def eval_loss(variables, images, labels):
      return optax.softmax_cross_entropy_with_integer_labels(model.apply(variables, images), labels).mean()


    def masked_loss(variables, masks, images, labels):
      return optax.softmax_cross_entropy_with_integer_labels(masked(variables, masks, images), labels).mean()


    batch = (train_images[:128], train_labels[:128])
    scores = {
      criterion: jax.jit(pruning.make_importance_fn(criterion, groups, eval_loss, masked_loss))(variables, *batch)
      for criterion in ("l1", "l1_bn", "taylor", "fisher")
    }
    unit = groups[0].name
    for criterion, values in scores.items():
      order = np.argsort(-np.asarray(values[unit]))
      print(f"{criterion:7s} most important channels of {unit}: {order[:4].tolist()}, least: {order[-4:].tolist()}")
    rank = lambda v: np.argsort(np.argsort(np.asarray(v)))
    print("rank correlation taylor vs fisher:", round(float(np.corrcoef(rank(scores["taylor"][unit]), rank(scores["fisher"][unit]))[0, 1]), 2))
    """
  ),
  md(
    """
    ## 3. Costs, local and global ranking

    The analysis counts MACs (every convolution and `dot_general` of the traced program) and parameters as
    multilinear, jittable functions of the masks (`analysis.costs(masks)`); the sample is one image, so they are per
    image. Ranking asks what a network with `k` channels of a unit would cost: `pruning.cost_model(analysis)` gives
    the same counter as functions of the kept counts. **Local**
    ranking prunes the same fraction of every unit; **global** ranking normalises each unit's scores (by their
    mean) and removes the least important channels across all units until the FLOPs target is met. `round_to=4`
    keeps multiples of 4 channels (never 0).
    """
  ),
  code(
    """
    costs = pruning.cost_model(analysis)
    full_macs = float(costs.macs({}))
    print(f"unpruned: {2 * full_macs / 1e6:.3f} MFLOPs, {int(costs.params({}))} parameters")
    importance = scores["taylor"]
    local = pruning.local_pruning(groups, importance, prune_ratio=0.3, round_to=4)
    global_ = pruning.global_pruning(groups, importance, 0.5 * full_macs, cost_fn=costs.macs, round_to=4)
    for label, masks in (("local, 30% of every unit", local), ("global, 50% of the FLOPs", global_)):
      kept = pruning.kept_counts(masks)
      print(
        f"{label:26s} kept {list(kept.values())}: {float(analysis.costs(masks)['macs']) / full_macs:.2f} of the FLOPs, "
        f"val accuracy before fine-tuning {float(val_accuracy(variables, masks)):.3f}"
      )
    """
  ),
  md(
    """
    ## 4. MMRazor's iterative schedule

    `ItePruneSchedule` is `ItePruneAlgorithm`'s: prune at the steps `i % step_freq == 0` while
    `i // step_freq < prune_times`, moving linearly from the full network to the target. Here the "unit" is the
    FLOPs fraction: five prunings 8 steps apart, 0.9 → 0.5 of the FLOPs, each with Taylor importance summed over the
    batches since the last one, with training in between; then two epochs of fine-tuning.
    """
  ),
  code(
    """
    schedule = pruning.ItePruneSchedule({"flops": 0.5}, step_freq=8, prune_times=5)
    print([(i, round(schedule.prune_at(i)["flops"], 2)) for i in range(50) if schedule.is_prune_time(i)])

    taylor = jax.jit(pruning.make_importance_fn("taylor", groups, masked_loss_fn=masked_loss))
    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state, masks = optimizer.init(params), full
    summed, path, step = None, [], 0
    for epoch in range(3):
      for images, labels in iterate_batches(jax.random.key(100 + epoch), data.train, 64):
        current = {"params": params, "batch_stats": batch_stats}
        batch_scores = taylor(current, images, labels, masks=masks)
        summed = batch_scores if summed is None else jax.tree.map(jnp.add, summed, batch_scores)
        if schedule.is_prune_time(step):
          target = schedule.prune_at(step)["flops"] * full_macs
          masks = pruning.global_pruning(groups, summed, target, costs.macs, round_to=4, masks=masks)
          summed = None
          path.append((2 * float(analysis.costs(masks)["macs"]) / 1e6, float(val_accuracy(current, masks))))
        params, batch_stats, opt_state = train_step(params, batch_stats, opt_state, masks, images, labels)
        step += 1
    pruned = train({"params": params, "batch_stats": batch_stats}, masks, epochs=2, seed=200)
    print("kept:", pruning.kept_counts(masks))
    print(f"after fine-tuning: val accuracy {float(val_accuracy(pruned, masks)):.3f} at "
          f"{float(analysis.costs(masks)['macs']) / full_macs:.2f} of the FLOPs")
    """
  ),
  code(
    """
    try:
      import matplotlib.pyplot as plt

      fig, ax = plt.subplots(figsize=(5, 3.2))
      ax.plot([p[0] for p in path], [p[1] for p in path], ".-", label="at each pruning (before fine-tuning)")
      ax.plot([path[-1][0]], [float(val_accuracy(pruned, masks))], "o", label="fine-tuned")
      ax.set_xlabel("MFLOPs per image")
      ax.set_ylabel("val accuracy")
      ax.invert_xaxis()
      ax.legend(fontsize=8)
      plt.show()
    except ImportError:
      print(path)
    """
  ),
  md(
    """
    ## 5. GroupFisher: one channel at a time

    GroupFisher accumulates Fisher importance over `interval` batches, then removes the single channel with the
    least importance **per FLOP saved** (among units that keep more than one channel) and starts again. The state is
    a pytree the loop threads through; `group_fisher_prune` says which unit lost a channel.
    """
  ),
  code(
    """
    fisher = jax.jit(pruning.make_importance_fn("fisher", groups, eval_loss))
    state, masks_gf, lost = pruning.group_fisher_init(groups), full, []
    batches = iterate_batches(jax.random.key(7), data.train, 64)
    for step, (images, labels) in zip(range(12), batches):
      state = pruning.group_fisher_accumulate(state, fisher(variables, images, labels, masks=masks_gf))
      if step % 2 == 1:  # interval = 2
        masks_gf, state, unit_name = pruning.group_fisher_prune(state, groups, masks_gf, costs.macs)
        lost.append(unit_name.split("_")[0])
    print("channels removed from:", lost)
    print("kept:", pruning.kept_counts(masks_gf))
    """
  ),
  md(
    """
    ## 6. Group sparsity

    `pruning.group_lasso(groups, strength)` is an optax transformation that adds the gradient of
    `strength · Σ_channels ||w_channel||₂` (every parameter slice of a channel is one group), so training drives whole
    channels towards zero. Chain it before the optimiser.
    """
  ),
  code(
    """
    sparse_opt = optax.chain(pruning.group_lasso(groups, strength=2e-2), optax.sgd(0.05, momentum=0.9))
    sparse = train(variables, full, epochs=2, seed=300, opt=sparse_opt)
    for label, v in (("before", variables), ("after ", sparse)):
      norms = np.asarray(pruning.magnitude_importance(v, groups, ord=2, roles=("output", "norm", "input"))[groups[2].name])
      print(f"{label} group lasso: channel norms of {groups[2].name}: median {np.median(norms):.3f}, "
            f"smallest {[round(float(n), 3) for n in np.sort(norms)[:3]]}")
    """
  ),
  md(
    """
    ## 7. Export a smaller network

    `analysis.slice_variables` keeps each unit's kept channels in every slice; the network is the same class with its
    new widths (`model.clone(features=...)`; for a module without such fields, `analysis.export` gives the rewritten
    program instead, via `jax.export`). Its logits are the masked network's, and `jm.save_subnet` / `jm.load_subnet`
    write and rebuild it without the original weights.
    """
  ),
  code(
    """
    kept_idx = pruning.kept_indices(masks)
    small_variables = analysis.slice_variables(pruned, kept_idx)
    small = model.clone(features=tuple(len(kept_idx[g.name]) for g in groups))
    logits_small = jax.jit(small.apply)(small_variables, val_images)
    logits_masked = jax.jit(masked)(pruned, masks, val_images)
    print("widths:", small.features, "max |logit difference|:", float(jnp.max(jnp.abs(logits_small - logits_masked))))
    print("parameters:", sum(np.size(a) for a in jax.tree.leaves(pruned["params"])), "->",
          sum(np.size(a) for a in jax.tree.leaves(small_variables["params"])))
    with tempfile.TemporaryDirectory() as folder:
      path_file = jm.save_subnet(os.path.join(folder, "pruned.msgpack"), small, small_variables)
      loaded, loaded_variables = jm.load_subnet(path_file)
    print("reloaded gives the same logits:", bool(jnp.allclose(jax.jit(loaded.apply)(loaded_variables, val_images), logits_small)))
    """
  ),
]


if __name__ == "__main__":
  write_notebook(CELLS, "pruning.ipynb")
