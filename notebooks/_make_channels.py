"""Writes notebooks/channels.ipynb (run: python notebooks/_make_channels.py [--execute])."""

from _notebook import code, md, write_notebook

CELLS = [
  md(
    """
    # Channel search in jaxmutate

    Width search (AutoSlim, BigNAS) and channel pruning on the embedded 8×8 digits, small enough to run in about a
    minute on a CPU. A **channel unit** is a set of channels that are kept or dropped together; its choice, like every
    mutable's, is an input of the supernet, so one compiled function serves every width and `jax.vmap` runs many
    widths at once. This notebook declares units in a small supernet, samples 10,000 width configurations in one
    call, trains the supernet with the sandwich rule, counts FLOPs, slims it greedily to half its FLOPs and exports a
    really smaller network with the sliced weights.

    The full search is `jaxmutate search configs/autoslim_digits.py` (slimmable training:
    `configs/slimmable_digits.py`).
    """
  ),
  code(
    """
    import os
    import tempfile

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import yaml

    import jaxmutate as jm
    from jaxmutate import dynamic
    from jaxmutate.algorithms import TrainState
    from jaxmutate.channels import OneShotMutableChannelUnit
    from jaxmutate.data import iterate_batches, load_digits

    data = load_digits(seed=0)
    len(data.train), len(data.val), len(data.test), data.train.images.shape[1:]
    """
  ),
  md(
    """
    ## 1. Channel units

    `OneShotMutableChannelUnit(num_channels, candidate_choices)` keeps one of its candidate widths, here ratios of 16
    channels made divisible by 4 (MMRazor's `make_divisible`). Called with the choices it returns the kept width, which
    dynamic layers take as an input. A choice is an index into the sorted candidates; arithmetic on a width derives
    another one (`w * 2`: twice as many channels, always in step with `w`).
    """
  ),
  code(
    """
    RATIOS = (0.25, 0.5, 0.75, 1.0)
    unit = OneShotMutableChannelUnit(16, RATIOS, divisor=4)
    w = unit.apply(unit.init(jax.random.key(0), None), {"": 1})  # choice 1: the second candidate
    print("kept:", w.value, "of", w.num_channels, "candidates", w.candidates)
    print("w * 2:", (w * 2).value, "of", (w * 2).num_channels, "candidates", (w * 2).candidates)
    """
  ),
  md(
    """
    A supernet declares its units and hands the widths to `jaxmutate.dynamic` layers. Two units: `width` is the stem's
    output, and also the output of the residual block (a residual add needs both sides to keep the same channels, so
    they share one unit); `block_mid` is the block's inner width. The downsampling conv doubles the width (`w * 2`), and
    the classifier reads that derived width. Each layer ignores input channels beyond the kept ones and returns zeros
    beyond its kept outputs.

    Under a traced width a layer runs sliced to the next of a few static "bucket" widths, so narrow subnets cost less.
    `max_buckets=2` (the smallest and the full width) keeps this notebook's compile times short; the default, 4, saves
    more compute on the widths in between.
    """
  ),
  code(
    """
    BUCKETS = 2


    @jm.MODELS.register_module(force=True)  # registered: save_subnet / load_subnet rebuild it by name
    class ConvBN(nn.Module):
      features: int
      stride: int = 1
      relu: bool = True

      @nn.compact
      def __call__(self, x, in_width, out_width, train=False):
        x = dynamic.DynamicConv(self.features, 3, strides=self.stride, use_bias=False, max_buckets=BUCKETS, name="conv")(
          x, in_width=in_width, out_width=out_width
        )
        x = dynamic.DynamicBatchNorm(use_running_average=not train, name="bn")(x, out_width)
        return nn.relu(x) if self.relu else x


    @jm.MODELS.register_module(force=True)
    class TinyNet(nn.Module):
      @nn.compact
      def __call__(self, x, choices, train=False):
        w = OneShotMutableChannelUnit(16, RATIOS, divisor=4, name="width")(choices)
        mid = OneShotMutableChannelUnit(16, RATIOS, divisor=4, name="block_mid")(choices)
        x = ConvBN(16, name="stem")(x, None, w, train)
        y = ConvBN(16, name="block_conv1")(x, w, mid, train)
        y = ConvBN(16, relu=False, name="block_conv2")(y, mid, w, train)
        x = nn.relu(x + y)  # the residual add: both sides keep `w` channels
        x = ConvBN(32, stride=2, name="down")(x, w, w * 2, train)
        return dynamic.DynamicDense(10, max_buckets=BUCKETS, name="head")(x.mean((1, 2)), in_width=w * 2)


    model = TinyNet()
    x = jnp.asarray(data.train.images[:8])
    variables = jm.init_supernet(model, jax.random.key(0), x)  # model.init(key, x, None), jitted: full width
    jax.tree.map(jnp.shape, variables["params"]["down"])
    """
  ),
  md(
    """
    The library's spaces declare their units the same way. `SearchableMobileNetV2` is AutoSlim's MobileNetV2 space
    (eleven ratios 2/12 … 12/12, divisor 8), here with two small stages. Rounding to the divisor merges candidates of
    narrow units: the 8-channel unit keeps only 8.
    """
  ),
  code(
    """
    mobilenet = jm.SearchableMobileNetV2(arch_setting=((1, 8, 1, 1), (4, 16, 2, 2)), stem_channels=16, last_channels=32)
    mobilenet_variables = jm.init_supernet(mobilenet, jax.random.key(0), x)
    mobilenet_mutator = jm.OneShotChannelMutator().prepare_from_supernet(mobilenet_variables)
    for g in mobilenet_mutator.search_groups:
      print(f"{mobilenet_mutator.group_key(g):38s} keeps {mobilenet_mutator.group_space(g).kept_counts}")
    random_widths = mobilenet_mutator.sample_choices(jax.random.key(1))
    jax.jit(lambda gc: mobilenet.apply(mobilenet_variables, x, mobilenet_mutator.set_choices(gc)))(random_widths).shape
    """
  ),
  md(
    """
    ## 2. A channel mutator

    `prepare_from_supernet` reads the units from the variables and returns a new, prepared mutator. Each unit has
    MMRazor's name (its first output layer, the channel range, the width) and its related channels: the output
    channels of the layers that produce it and the input channels of those that consume it, as
    `(layer path, start, end)`. The derived `w * 2` shows up as the 32 channels of `down` and `head`.
    """
  ),
  code(
    """
    mutator = jm.OneShotChannelMutator().prepare_from_supernet(variables)
    for u in mutator.units:
      print(f"{u.name}  (declared as {u.mutable_name!r}, keeps {u.space.kept_counts})")
      print("  output_related:", ", ".join(f"{c.path}[{c.start}:{c.end}]" for c in u.channels.output_related))
      print("  input_related: ", ", ".join(f"{c.path}[{c.start}:{c.end}]" for c in u.channels.input_related))
    mutator.search_groups
    """
  ),
  md(
    """
    `config_template` is MMRazor's mutator config (here with the related channels and the current, max, choices);
    `jm.build` turns it back into an equal mutator. A subnet file is `{unit: {chosen: ratio}}`.
    """
  ),
  code(
    """
    template = mutator.config_template(with_channels=True)
    units = template["channel_unit_cfg"]["units"]
    short = {**template, "channel_unit_cfg": {**template["channel_unit_cfg"], "units": {k: units[k] for k in list(units)[1:]}}}
    print(yaml.safe_dump(short, sort_keys=False, default_flow_style=None, width=120))
    rebuilt = jm.build(template).prepare_from_supernet(variables)
    print("round trip:", rebuilt.search_groups == mutator.search_groups)
    print("min:", mutator.export_fix_subnet(mutator.min_choices()))
    print("max:", mutator.export_fix_subnet(mutator.max_choices()))
    """
  ),
  md(
    """
    ## 3. Sampling widths

    `sample_choices(key)` is pure and traceable: 10,000 width configurations are one `vmap` over keys in one jitted
    call. Each unit's candidates come out uniformly.
    """
  ),
  code(
    """
    kept = {g: jnp.asarray(mutator.group_space(g).kept_counts) for g in mutator.search_groups}


    @jax.jit
    def sample_population(key):
      population = jax.vmap(mutator.sample_choices)(jax.random.split(key, 10_000))
      return population, {g: kept[g][population[g]] for g in population}  # indices and kept channels


    population, widths = sample_population(jax.random.key(1))
    names = {g: members[0] for g, members in mutator.search_groups.items()}  # the names the supernet declared
    for g, w in widths.items():
      values, counts = np.unique(np.asarray(w), return_counts=True)
      print(f"{names[g]:9s} kept channels: count", dict(zip(values.tolist(), counts.tolist())))
    """
  ),
  md(
    """
    A `vmap`ped forward runs several widths at once, each its own subnet. The widths are traced values: the Python
    function runs (traces) once, and every further population of the same size reuses the compiled code.
    """
  ),
  code(
    """
    traces = []


    @jax.jit
    def forward(group_choices):
      traces.append(1)  # Python side effects run only while tracing
      return jax.vmap(lambda gc: model.apply(variables, x, mutator.set_choices(gc)))(group_choices)


    for start in (0, 4, 8):
      logits = forward({g: v[start : start + 4] for g, v in population.items()})
    print("logits", logits.shape, "from", len(traces), "trace")
    """
  ),
  md(
    """
    ## 4. Sandwich training

    `make_sandwich_train_step` is AutoSlim's and BigNAS's sandwich rule as one jitted step: the max subnet learns
    from the labels, the min subnet and two random ones from the labels and from the max subnet's logits (in-place
    distillation), and the four gradients make one optimiser update. Five epochs of the digits, 80 steps (most of the
    time is the first step's compilation); the printed figures are epoch means.
    """
  ),
  code(
    """
    optimizer = optax.sgd(0.1, momentum=0.9, nesterov=True)
    state = TrainState(variables["params"], variables["batch_stats"], optimizer.init(variables["params"]), jnp.int32(0))
    step = jm.make_sandwich_train_step(model, mutator, optimizer, num_random_samples=2)
    for epoch in range(5):
      log = []
      for images, labels in iterate_batches(jax.random.key(epoch), data.train, 64):
        state, metrics = step(state, jnp.asarray(images), jnp.asarray(labels), jax.random.fold_in(jax.random.key(1), state.step))
        log.append(metrics)
      mean = {k: float(np.mean([m[k] for m in log])) for k in ("max_loss", "min_loss", "accuracy", "min_accuracy")}
      print(f"epoch {epoch + 1} (step {int(state.step)}): loss max {mean['max_loss']:.3f} min {mean['min_loss']:.3f}, "
            f"train accuracy max {mean['accuracy']:.3f} min {mean['min_accuracy']:.3f}")
    """
  ),
  md(
    """
    After weight-sharing training the BatchNorm running statistics mix every width, so each width is rated with its
    own recalibrated statistics (MMRazor's `CalibrateBNMixin`): `make_calibrated_scorer` recomputes them on four
    training batches and measures validation accuracy, for a whole population in one call. One compile serves every
    population of the same size (the greedy search below rates two at a time, too).
    """
  ),
  code(
    """
    calibration = jnp.asarray(data.train.images[:256]).reshape(4, 64, 8, 8, 1)
    scorer = jm.make_calibrated_scorer(model, mutator, calibration, jnp.asarray(data.val.images), jnp.asarray(data.val.labels))
    max_min = {g: jnp.stack([mutator.max_choices()[g], mutator.min_choices()[g]]) for g in mutator.search_groups}
    print("max, min widths:  ", np.round(np.asarray(scorer(state, max_min)), 3))
    print("two random widths:", np.round(np.asarray(scorer(state, {g: v[:2] for g, v in population.items()})), 3))
    """
  ),
  md(
    """
    ## 5. Costs

    `dynamic_costs` sums the MACs and parameters that the dynamic layers report at their kept widths. Under `jit` the
    network itself is dead code, so costing a width is cheap, and `vmap` costs all 10,000 sampled configurations at
    once. FLOPs here are 2 × MACs per image.
    """
  ),
  code(
    """
    supernet = {**variables, "params": state.params, "batch_stats": state.batch_stats}
    image = x[:1]


    def mflops(group_choices):
      return 2 * dynamic.dynamic_costs(model, supernet, image, mutator.set_choices(group_choices))["macs"] / 1e6


    costs_of = jax.jit(jax.vmap(mflops))
    print("max, min: MFLOPs", np.round(np.asarray(costs_of(max_min)), 3))
    costs = costs_of(population)
    print(f"10,000 sampled: median {float(jnp.median(costs)):.3f}, range {float(costs.min()):.3f}..{float(costs.max()):.3f}")
    """
  ),
  md(
    """
    ## 6. Greedy slimming

    AutoSlim's search (MMRazor's `AutoSlimGreedySearchLoop`): start from the max subnet and, while it costs more than
    the target, try lowering each unit by one candidate and keep the trial that loses the least accuracy. The path it
    takes is the accuracy–FLOPs trade-off curve of the trained supernet. (On the digits every width of this tiny net
    is about 95% accurate, so the differences along the path are a few validation images.)
    """
  ),
  code(
    """
    loop = jm.AutoSlimGreedySearchLoop(target_flops=(0.5,), relative=True)
    result = loop.run(mutator, lambda population: scorer(state, population), mflops)
    for point in result.path:
      shrunk = "start" if point.shrunk_group is None else f"{names[point.shrunk_group]} shrunk"
      widths_here = ", ".join(f"{names[g]} {int(kept[g][c]):2d}" for g, c in point.group_choices.items())
      print(f"{point.cost:.3f} MFLOPs  accuracy {point.score:.3f}  {widths_here}  ({shrunk})")
    found = result.subnets[0]
    print(f"found for <= {found.target:.3f} MFLOPs:", mutator.export_fix_subnet(found.group_choices))
    """
  ),
  md(
    """
    ## 7. Export a smaller network

    `export_subnet` traces the supernet at concrete widths: every dynamic layer becomes the static layer of its kept
    widths, with the sliced weights. First the chosen subnet's BatchNorm statistics are recalibrated, as it was
    rated: the running statistics of weight-sharing training mix every width (and, after 80 steps, still remember
    their initial values). The static network gives the supernet's output for those widths, with the parameter count
    the dynamic layers report.
    """
  ),
  code(
    """
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(found.group_choices).items()}
    calibrated = {**supernet, "batch_stats": jm.calibrate_batch_stats(model, state.params, state.batch_stats, choices, calibration)}
    small, small_variables = jm.export_subnet(model, calibrated, choices, image)
    print(jax.tree.map(jnp.shape, small_variables["params"]["down"]))

    test_images, test_labels = jnp.asarray(data.test.images), jnp.asarray(data.test.labels)
    logits = jax.jit(small.apply)(small_variables, test_images)
    reference = model.apply(calibrated, test_images, choices)
    print("same output as the supernet:", bool(jnp.allclose(logits, reference, atol=1e-5)))
    count = lambda tree: sum(np.size(leaf) for leaf in jax.tree.leaves(tree))
    analytic = int(dynamic.dynamic_costs(model, supernet, image, choices)["params"])
    print(f"parameters: supernet {count(supernet['params'])} -> exported {count(small_variables['params'])} "
          f"(dynamic_costs: {analytic})")
    accuracy = lambda logits: float((logits.argmax(-1) == test_labels).mean())
    print(f"test accuracy: {accuracy(logits):.3f}; with the running statistics of the supernet's training instead: "
          f"{accuracy(model.apply(supernet, test_images, choices)):.3f}")
    """
  ),
  md(
    """
    `save_subnet` writes the static network's config, its fixed widths and its variables to one file; `load_subnet`
    rebuilds it from the registry, without the supernet's weights.
    """
  ),
  code(
    """
    with tempfile.TemporaryDirectory() as folder:
      path = jm.save_subnet(os.path.join(folder, "subnet.msgpack"), small, small_variables)
      print(f"{path.name}: {os.path.getsize(path) / 1024:.1f} KiB")
      loaded, loaded_variables = jm.load_subnet(path)
    print("reloaded gives the same logits:", bool(jnp.array_equal(jax.jit(loaded.apply)(loaded_variables, test_images), logits)))
    """
  ),
]


if __name__ == "__main__":
  write_notebook(CELLS, "channels.ipynb")
