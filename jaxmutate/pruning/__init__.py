"""Structured pruning of unmodified models: importance, ranking, schedules, costs and group sparsity.

Everything here works on the units of :mod:`jaxmutate.analysis`
(:class:`~jaxmutate.analysis.ChannelGroup`): slices of variable leaves that are
pruned together. A pruning state is a dict of masks, one ``float32`` vector
per unit (1 kept, 0 pruned):

- importance (``{unit: (num_channels,)}``, pure and jittable):
  :func:`magnitude_importance` (L1/L2, optionally times norm scales),
  :func:`taylor_importance` (``|w * g|``), :func:`fisher_importance`
  (GroupFisher: per-example gradients w.r.t. a channel mask by ``vmap``, squared
  and summed); :func:`make_importance_fn` gives them one signature;
- ranking: :func:`local_pruning` (a pruning ratio per unit) and
  :func:`global_pruning` (across units, normalised, down to a cost target),
  with ``round_to`` (:func:`round_kept`);
- schedules: :class:`ItePruneSchedule` (MMRazor's ``ItePruneAlgorithm``),
  GroupFisher's one channel at a time (:func:`group_fisher_init`,
  :func:`group_fisher_accumulate`, :func:`group_fisher_prune`);
- GroupFisher's activation masks: :func:`mask_consumers` (a unit's channels
  scaled where they are read); to run a pruned network at full shapes,
  :func:`masked_apply` (:func:`jaxmutate.analysis.masked_function` for any
  input shape and ``apply`` mode: exactly the sliced network);
- costs: :func:`cost_model`, the analysis's counter
  (:meth:`~jaxmutate.analysis.ChannelAnalysis.costs`) as jittable functions of
  the kept counts, which ranking needs;
- regularisation: :func:`group_lasso`, an optax transformation.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
  >>> from jaxmutate import pruning
  >>> class MLP(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x):
  ...     return nn.Dense(2, name="fc2")(nn.relu(nn.Dense(4, name="fc1")(x)))
  >>> net = MLP()
  >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)))
  >>> unit = ChannelGroup("fc1_(0, 4)_4", 4, (
  ...   ParamSlice("params", ("fc1", "kernel"), 1, (0, 1, 2, 3), "output"),
  ...   ParamSlice("params", ("fc1", "bias"), 0, (0, 1, 2, 3), "bias"),
  ...   ParamSlice("params", ("fc2", "kernel"), 0, (0, 1, 2, 3), "input")))
  >>> importance = pruning.magnitude_importance(variables, [unit])
  >>> masks = pruning.local_pruning([unit], importance, prune_ratio=0.5)
  >>> pruning.kept_counts(masks)
  {'fc1_(0, 4)_4': 2}
  >>> net.apply(pruning.mask_consumers(variables, [unit], masks), jnp.ones((1, 3))).shape
  (1, 2)
"""

from jaxmutate.pruning._costs import CostModel as CostModel
from jaxmutate.pruning._costs import cost_model as cost_model
from jaxmutate.pruning._importance import CRITERIA as CRITERIA
from jaxmutate.pruning._importance import check_criterion as check_criterion
from jaxmutate.pruning._importance import fisher_importance as fisher_importance
from jaxmutate.pruning._importance import magnitude_importance as magnitude_importance
from jaxmutate.pruning._importance import make_importance_fn as make_importance_fn
from jaxmutate.pruning._importance import per_example_mask_grads as per_example_mask_grads
from jaxmutate.pruning._importance import taylor_importance as taylor_importance
from jaxmutate.pruning._masks import MaskedApply as MaskedApply
from jaxmutate.pruning._masks import full_masks as full_masks
from jaxmutate.pruning._masks import kept_counts as kept_counts
from jaxmutate.pruning._masks import kept_indices as kept_indices
from jaxmutate.pruning._masks import mask_consumers as mask_consumers
from jaxmutate.pruning._masks import masked_apply as masked_apply
from jaxmutate.pruning._ranking import NORMALIZATIONS as NORMALIZATIONS
from jaxmutate.pruning._ranking import check_prune_ratio as check_prune_ratio
from jaxmutate.pruning._ranking import global_pruning as global_pruning
from jaxmutate.pruning._ranking import local_pruning as local_pruning
from jaxmutate.pruning._ranking import round_kept as round_kept
from jaxmutate.pruning._regularizers import group_lasso as group_lasso
from jaxmutate.pruning._regularizers import group_lasso_penalty as group_lasso_penalty
from jaxmutate.pruning._schedules import GroupFisherState as GroupFisherState
from jaxmutate.pruning._schedules import ItePruneSchedule as ItePruneSchedule
from jaxmutate.pruning._schedules import group_fisher_accumulate as group_fisher_accumulate
from jaxmutate.pruning._schedules import group_fisher_init as group_fisher_init
from jaxmutate.pruning._schedules import group_fisher_prune as group_fisher_prune

__all__ = [
  "CRITERIA",
  "NORMALIZATIONS",
  "CostModel",
  "GroupFisherState",
  "ItePruneSchedule",
  "MaskedApply",
  "check_criterion",
  "check_prune_ratio",
  "cost_model",
  "fisher_importance",
  "full_masks",
  "global_pruning",
  "group_fisher_accumulate",
  "group_fisher_init",
  "group_fisher_prune",
  "group_lasso",
  "group_lasso_penalty",
  "kept_counts",
  "kept_indices",
  "local_pruning",
  "magnitude_importance",
  "make_importance_fn",
  "mask_consumers",
  "masked_apply",
  "per_example_mask_grads",
  "round_kept",
  "taylor_importance",
]
