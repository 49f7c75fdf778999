# AutoSlim on the embedded digits: a MobileNetV2 channel space (every width a
# OneShotMutableChannelUnit over MMRazor's ratios i/12, made divisible by 8),
# sandwich-rule training (max, min and 2 random widths per step, in-place
# distillation from the max subnet), then greedy slimming to three FLOPs
# targets. `jaxmutate search configs/autoslim_digits.py` runs it.

model = dict(
  type="AutoSlim",
  architecture=dict(
    type="SearchableMobileNetV2",
    num_classes=10,
    arch_setting=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)),
    stem_channels=32,
    stem_stride=1,
    last_channels=128,
    candidate_choices=[i / 12 for i in range(2, 13)],
    choice_mode="ratio",
    divisor=8,
  ),
  mutator=dict(
    type="OneShotChannelMutator",
    channel_unit_cfg=dict(
      type="OneShotMutableChannelUnit",
      default_args=dict(candidate_choices=[i / 12 for i in range(2, 13)], choice_mode="ratio", divisor=8),
    ),
  ),
  num_random_samples=2,
)

data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)

train_cfg = dict(
  epochs=30,
  batch_size=64,
  optimizer=dict(
    type="sgd",
    learning_rate=dict(type="cosine_decay_schedule", init_value=0.1, decay_steps=30 * 17),
    momentum=0.9,
    nesterov=True,
  ),
)

# Targets are fractions of the max subnet's FLOPs (MMRazor's configs give absolute MFLOPs;
# relative=False reads them so).
search_cfg = dict(type="AutoSlimGreedySearchLoop", target_flops=(0.6, 0.4, 0.25), relative=True, score_key="accuracy")

calibrate_sample_num = 512

retrain_cfg = dict(epochs=0)
