# DARTS (first order) on the embedded 8x8 digits: a 3-cell, 2-node DARTS
# supernet (normal, reduction, reduction cells; every edge mixes the eight
# DARTS operations, every node keeps its top-2 inputs), architecture logits
# trained with Adam on the validation split, weights with SGD on the train
# split. Runs in a few minutes on 2 CPU cores:
#   jaxmutate search configs/darts_digits.py --work-dir work_dirs/darts

model = dict(
  type="DARTS",
  # Registers DARTS and DartsBackbone even where the package does not import them.
  custom_imports=dict(imports=["jaxmutate.runners"], allow_failed_imports=False),
  architecture=dict(
    type="DartsBackbone",
    base_channels=8,
    num_layers=3,
    num_nodes=2,
    stem_multiplier=2,
    num_classes=10,
    route_cfg=dict(type="DiffChoiceRoute", num_chosen=2),
  ),
  mutator=dict(type="DiffModuleMutator"),
  unroll=False,
)

data = dict(type="digits", seed=0, val_fraction=0.25, test_fraction=0.2)

train_cfg = dict(
  epochs=6,
  batch_size=64,
  # Weights: SGD + momentum, L2 3e-4, gradient clipping at 5 (DARTS).
  optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
  # Architecture logits: Adam(b1=0.5), L2 1e-3 (DARTS; a larger step for the short run).
  arch_optimizer=dict(type="adam", learning_rate=6e-3, b1=0.5, b2=0.999, weight_decay=1e-3),
  # XLA optimisation level 0: the supernet compiles several times faster on CPU.
  fast_compile=True,
)

# A short fine-tune of the derived network from its inherited weights.
retrain_cfg = dict(epochs=5, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9))
