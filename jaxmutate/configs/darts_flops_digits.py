# DARTS (first order) with a FLOPs penalty on the embedded 8x8 digits: the
# search space of configs/darts_digits.py, plus weight * max(0, E[FLOPs] -
# target) / target in the architecture loss, E[FLOPs] being the expected
# MFLOPs per image of the op choices under softmax(alpha), read off a cost
# table XLA measures after init (one lowering per op choice, 71 here). With
# weight 0 the search is darts_digits.py's (shorter, no retraining); raise the
# weight (or lower the target) and the derived cell's FLOPs fall.
# summary.json's flops_penalty holds the expected FLOPs at the start and the
# end of the search and the derived network's FLOPs (table and exact).
#   jaxmutate search configs/darts_flops_digits.py --work-dir work_dirs/darts_flops \
#       --cfg-options model.flops_penalty.weight=2.0

_base_ = ["darts_digits.py"]

model = dict(
  # MFLOPs per image. The table prices every edge's op (0.43 expected under
  # uniform weights); the derived cell keeps 2 inputs per node. One seed, 4
  # epochs: weight 0 derived a 0.30-MFLOPs network, weight 2 a 0.20 one.
  flops_penalty=dict(weight=1.0, target=0.1),
)

train_cfg = dict(epochs=4)
retrain_cfg = dict(epochs=0)
