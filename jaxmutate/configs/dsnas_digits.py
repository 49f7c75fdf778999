# DSNAS (MMRazor's Dsnas) on the embedded 8x8 digits: every edge of a small
# DARTS supernet is a OneHotMutableOP, so each step samples ONE operation per
# edge from softmax(alpha) and pays for that op only; weights and logits learn
# from the same training batch (the logits by the score-function gradient).
# Epoch 0 pretrains the weights only, epochs 1-3 search, and at epoch
# finetune_epochs=4 the argmax subnet is fixed and finetuned with the
# supernet's weights (no separate retraining). When the argmax subnet costs
# >= flops_constraints MFLOPs per image, a FLOPs loss on the expected FLOPs
# pushes the logits to cheaper ops. Under a minute on 2 CPU cores:
#   jaxmutate search configs/dsnas_digits.py --work-dir work_dirs/dsnas

model = dict(
  type="DSNAS",
  # Registers DSNAS even where the package does not import it.
  custom_imports=dict(imports=["jaxmutate.runners.dsnas"], allow_failed_imports=False),
  architecture=dict(
    type="DartsBackbone",
    base_channels=8,
    num_layers=2,
    num_nodes=2,
    stem_multiplier=2,
    num_classes=10,
    op_names=("zero", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3"),
    mutable_cfg=dict(type="OneHotMutableOP"),
    route_cfg=dict(type="DiffChoiceRoute", num_chosen=2),
  ),
  mutator=dict(type="DiffModuleMutator"),
  pretrain_epochs=1,
  finetune_epochs=4,
  # MFLOPs per image, of the cost table, which prices every edge's op (0.22
  # expected under uniform weights); the fixed subnet keeps 2 inputs per node.
  flops_constraints=0.1,
  flops_loss_coef=1.0,
)

data = dict(type="digits", seed=0, val_fraction=0.25, test_fraction=0.2)

train_cfg = dict(
  epochs=6,
  batch_size=64,
  optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
  arch_optimizer=dict(type="adam", learning_rate=0.01, b1=0.5, b2=0.999),
  fast_compile=True,
)
