# SPOS on the embedded digits data: a ShuffleNetV2 supernet of the four SPOS
# choice blocks, uniform single-path training, then evolution search under a
# FLOPs budget. `jaxmutate demo` runs this file.

model = dict(
  type="SPOS",
  architecture=dict(
    type="SearchableShuffleNetV2",
    num_classes=10,
    arch_setting=((16, 2, 1), (32, 2, 2), (64, 2, 2)),
    stem_channels=16,
    stem_stride=1,
    widen_factor=1.0,
    last_channels=128,
  ),
  mutator=dict(type="OneShotModuleMutator"),
)

data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)

train_cfg = dict(
  epochs=40,
  batch_size=64,
  optimizer=dict(
    type="sgd",
    learning_rate=dict(type="cosine_decay_schedule", init_value=0.1, decay_steps=40 * 16),
    momentum=0.9,
    nesterov=True,
  ),
)

search_cfg = dict(
  type="EvolutionSearchLoop",
  max_epochs=10,
  num_candidates=50,
  top_k=10,
  num_mutation=25,
  num_crossover=25,
  mutate_prob=0.1,
  crossover_prob=0.5,
  # Per-image MFLOPs of the subnets span about 0.31-0.50; the budget keeps
  # roughly the cheaper half of the search space.
  constraints_range=dict(flops=(0.0, 0.40)),
  calibrate_sample_num=512,
)

retrain_cfg = dict(epochs=0)

num_random_baseline = 20
