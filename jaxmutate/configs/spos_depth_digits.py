# SPOS on the embedded digits data over a space whose subnets really differ:
# depth and receptive field. Five ShuffleNetV2 blocks at the input's 8x8
# resolution (no downsampling), each choosing one of the four SPOS blocks or
# `identity` (the block is skipped), then a 1x1 conv, global average pooling
# and the head. A subnet of skips sees 3x3 patches only before the pooling;
# each 3x3 block widens the view by 2 pixels, a 5x5 by 4, a 7x7 or an
# Xception block by 6, so cheap, shallow subnets lose accuracy. Trained
# stand-alone (20 epochs, 3 seeds), 20 random subnets spanned 0.87-0.97
# held-out accuracy and 0.12-0.46 loss against a seed-to-seed spread of about
# 0.008 and 0.02, and two seeds ranked them at Kendall tau 0.42-0.56 (the demo
# space's subnets: about 0). `benchmarks/ranking.py --config
# jaxmutate/configs/spos_depth_digits.py` measures how well the supernet ranks
# them. Same recipe and search as `spos_digits.py`, except that the supernet
# trains twice as long (below).

model = dict(
  type="SPOS",
  architecture=dict(
    type="SearchableShuffleNetV2",
    num_classes=10,
    arch_setting=((16, 5, 1),),
    stem_channels=16,
    stem_stride=1,
    widen_factor=0.5,
    last_channels=64,
    identity_candidate=True,
  ),
  mutator=dict(type="OneShotModuleMutator"),
)

data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)

# 80 supernet epochs: against 20 subnets' stand-alone held-out loss, a
# 40-epoch supernet's search score ranked at Kendall tau 0.47, an 80-epoch
# one's at 0.59 (`benchmarks/results/ranking_spos_depth_digits.json`) and, with
# fresh seeds and a fresh draw of subnets, 0.52 [0.22, 0.73]
# (`ranking_spos_depth_digits_seed1.json`). The whole search then takes about
# 2.5 minutes on two cores.
train_cfg = dict(
  epochs=80,
  batch_size=64,
  optimizer=dict(
    type="sgd",
    learning_rate=dict(type="cosine_decay_schedule", init_value=0.1, decay_steps=80 * 16),
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
  # Per-image MFLOPs span 0.097 (all skips) to 0.252 (all 7x7); a block adds
  # 0.0105 (3x3), 0.0187 (5x5), 0.0231 (Xception) or 0.031 (7x7). The budget
  # keeps about a fifth of the 3,125 subnets, so the search must choose where
  # to widen the view: Xception buys a 7x7's reach for three quarters of its
  # cost, and every skip saves a block's cost and loses its reach.
  constraints_range=dict(flops=(0.0, 0.16)),
  calibrate_sample_num=512,
)

retrain_cfg = dict(epochs=0)

# Random subnets meeting the same constraint (rejection sampling, at most
# 100 x as many draws), rated on the test split the search never saw.
num_random_baseline = 20
