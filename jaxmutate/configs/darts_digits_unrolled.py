# DARTS with the exact second-order (unrolled) architecture gradient on the
# embedded 8x8 digits: ∇α L_val(w − ξ∇w L_train(w, α), α) differentiated
# through the virtual SGD step (a Hessian-vector product by AD), with
# ξ = the weight learning rate. MMRazor's `unroll=True`, without its finite
# differences. The same supernet as darts_digits.py, 4 epochs instead of 6
# because the second-order step compiles and runs ~3x slower:
#   jaxmutate search configs/darts_digits_unrolled.py --work-dir work_dirs/darts2

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
    route_cfg=dict(type="DiffChoiceRoute", num_chosen=2),
  ),
  mutator=dict(type="DiffModuleMutator"),
  unroll=True,
  # ξ of the virtual step; None takes the weight optimiser's learning rate.
  unroll_lr=None,
)

data = dict(type="digits", seed=0, val_fraction=0.25, test_fraction=0.2)

train_cfg = dict(
  epochs=4,
  batch_size=64,
  optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
  arch_optimizer=dict(type="adam", learning_rate=6e-3, b1=0.5, b2=0.999, weight_decay=1e-3),
  fast_compile=True,
)

retrain_cfg = dict(epochs=5, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9))
