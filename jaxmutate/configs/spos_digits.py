# SPOS on the embedded digits data: a ShuffleNetV2 supernet of the four SPOS
# choice blocks, uniform single-path training, then evolution search under a
# FLOPs budget, compared with random subnets under the same budget on the
# held-out test split. `jaxmutate demo` runs this file.
#
# The space is a narrow one (widen_factor=0.5: stage widths 8/16/32) so that
# the choices matter on 8x8 digits: at full width nearly every subnet reaches
# 0.92-0.95 and search cannot be told from luck; at half width the blocks'
# extra depth and kernel size buy accuracy, and the tight budget makes the
# search decide where to spend it.

model = dict(
  type="SPOS",
  architecture=dict(
    type="SearchableShuffleNetV2",
    num_classes=10,
    arch_setting=((16, 2, 1), (32, 2, 2), (64, 2, 2)),
    stem_channels=16,
    stem_stride=1,
    widen_factor=0.5,
    last_channels=64,
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
  # Per-image MFLOPs of the subnets span about 0.097-0.186; the budget keeps
  # about a fifth of the search space (mostly 3x3/5x5 blocks in the first,
  # 8x8 stage, where a block costs most).
  constraints_range=dict(flops=(0.0, 0.125)),
  calibrate_sample_num=512,
)

retrain_cfg = dict(epochs=0)

# Random subnets meeting the same constraint (rejection sampling, at most
# 100 x as many draws), rated on the test split the search never saw.
num_random_baseline = 20
