# Slimmable training on the embedded digits: a MobileNetV2 whose every width is a
# SlimmableChannelUnit with four candidate widths (subnet i takes candidate i of
# every unit) and one BatchNorm per width (switchable BatchNorm). Every step
# trains all four subnets, one optimiser update; each subnet is then rated,
# exported with its sliced weights and plotted.
# `jaxmutate search configs/slimmable_digits.py` runs it.

model = dict(
  type="SlimmableNetwork",
  architecture=dict(
    type="SearchableMobileNetV2",
    num_classes=10,
    arch_setting=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)),
    stem_channels=32,
    stem_stride=1,
    last_channels=128,
    unit_type="SlimmableChannelUnit",
    # Divisor 4 keeps four distinct widths even in the 16-channel units (divisor 8 would merge 0.25/0.5 and 0.75/1.0).
    candidate_choices=(0.25, 0.5, 0.75, 1.0),
    choice_mode="ratio",
    divisor=4,
  ),
  mutator=dict(type="SlimmableChannelMutator"),
  deploy_index=-1,
)

data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)

train_cfg = dict(
  epochs=20,
  batch_size=64,
  optimizer=dict(
    type="sgd",
    learning_rate=dict(type="cosine_decay_schedule", init_value=0.1, decay_steps=20 * 17),
    momentum=0.9,
    nesterov=True,
  ),
)

calibrate_sample_num = 0  # switchable BatchNorm keeps exact statistics per width

retrain_cfg = dict(epochs=0)
