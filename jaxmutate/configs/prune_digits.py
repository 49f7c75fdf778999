# Structured pruning of an ordinary CNN on the embedded digits: train it, prune it to half its FLOPs while
# training (MMRazor's ItePrune schedule, Taylor importance ranked globally across units, kept counts rounded
# to multiples of 4), fine-tune, export the smaller network with its sliced weights (DIR/pruned.msgpack) and
# plot accuracy against FLOPs during pruning (DIR/pruning.png). `jaxmutate search configs/prune_digits.py`
# runs it. GroupFisher instead: schedule=dict(type="GroupFisher", interval=2), criterion="fisher".

model = dict(
  type="Prune",
  architecture=dict(type="PlainCNN", features=(16, 32, 64), strides=(1, 2, 2), num_classes=10),
  criterion="taylor",
  schedule=dict(type="ItePrune", prune_times=5),
  target_flops=0.5,
  ranking="global",
  normalize="mean",
  round_to=4,
)

data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)

train_cfg = dict(epochs=15, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, nesterov=True))
prune_cfg = dict(epochs=4, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.02, momentum=0.9, nesterov=True))
finetune_cfg = dict(
  epochs=5,
  batch_size=64,
  optimizer=dict(
    type="sgd", learning_rate=dict(type="cosine_decay_schedule", init_value=0.02, decay_steps=5 * 16), momentum=0.9
  ),
)
