# GDAS on the embedded 8x8 digits: every edge samples ONE operation per step
# with hard Gumbel-softmax (straight-through), so a step pays for one op per
# edge instead of eight; the temperature anneals from 10 to 0.1 over the
# search (exponentially). Node inputs stay a softmax route that keeps the top 2.
#   jaxmutate search configs/gdas_digits.py --work-dir work_dirs/gdas

model = dict(
  type="DARTS",
  custom_imports=dict(imports=["jaxmutate.runners"], allow_failed_imports=False),
  architecture=dict(
    type="DartsBackbone",
    base_channels=8,
    num_layers=3,
    num_nodes=2,
    stem_multiplier=2,
    num_classes=10,
    mutable_cfg=dict(type="GumbelMutableOP", tau=10.0, hard=True),
    route_cfg=dict(type="DiffChoiceRoute", num_chosen=2),
  ),
  mutator=dict(type="DiffModuleMutator"),
  unroll=False,
)

data = dict(type="digits", seed=0, val_fraction=0.25, test_fraction=0.2)

train_cfg = dict(
  # A step trains one sampled op per edge (~5x cheaper than a DARTS step), so
  # every op needs more steps: more epochs for about the same time.
  epochs=20,
  batch_size=64,
  optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
  arch_optimizer=dict(type="adam", learning_rate=6e-3, b1=0.5, b2=0.999, weight_decay=1e-3),
  # GDAS anneals tau from 10 to 0.1 over the whole search.
  tau_schedule=dict(init_value=10.0, end_value=0.1, kind="exponential"),
  fast_compile=True,
)

retrain_cfg = dict(epochs=5, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9))
