"""Search algorithms as pure functions: train steps, gradients, derivation, evaluation.

Like optax, nothing here reads data, prints, times or writes files: every
function maps arrays and pytrees to arrays and pytrees (and may be jitted).
The runners that do the rest of a search (data, training loops, progress,
outputs) are in :mod:`jaxmutate.runners`.

Layout: ``_train_state`` (the training state and supernet init),
``_optimizers`` (optax from config dicts), ``_metrics`` (loss, accuracy),
``_batch_norm`` (train-mode apply, exact BatchNorm recalibration), ``_spos``
(SPOS steps and population scoring), ``_arch_gradient`` (the DARTS
architecture gradient), ``_darts`` (the DARTS search state and steps),
``_arch_params`` (reading architecture logits), ``_derive`` (the discrete
subnet of a DARTS search), ``_distill`` (knowledge-distillation losses),
``_autoslim`` (AutoSlim/BigNAS sandwich and slimmable steps, per-width
BatchNorm calibration and scoring), ``_cost`` (expected cost of architecture
logits and cost penalties) and ``_dsnas`` (the DSNAS steps).
"""

from jaxmutate.algorithms._arch_gradient import arch_gradient as arch_gradient
from jaxmutate.algorithms._arch_gradient import supernet_loss as supernet_loss
from jaxmutate.algorithms._arch_params import arch_weights_table as arch_weights_table
from jaxmutate.algorithms._arch_params import check_arch_params as check_arch_params
from jaxmutate.algorithms._arch_params import uses_temperature as uses_temperature
from jaxmutate.algorithms._autoslim import calibrate_batch_stats as calibrate_batch_stats
from jaxmutate.algorithms._autoslim import make_calibrated_scorer as make_calibrated_scorer
from jaxmutate.algorithms._autoslim import make_sandwich_train_step as make_sandwich_train_step
from jaxmutate.algorithms._autoslim import make_slimmable_train_step as make_slimmable_train_step
from jaxmutate.algorithms._autoslim import sample_sandwich_choices as sample_sandwich_choices
from jaxmutate.algorithms._autoslim import stack_group_choices as stack_group_choices
from jaxmutate.algorithms._batch_norm import apply_in_train_mode as apply_in_train_mode
from jaxmutate.algorithms._batch_norm import recalibrate_batch_stats as recalibrate_batch_stats
from jaxmutate.algorithms._cost import CostPenaltyState as CostPenaltyState
from jaxmutate.algorithms._cost import add_cost_penalty as add_cost_penalty
from jaxmutate.algorithms._cost import arch_weights as arch_weights
from jaxmutate.algorithms._cost import cost_penalty as cost_penalty
from jaxmutate.algorithms._cost import expected_cost as expected_cost
from jaxmutate.algorithms._darts import DartsState as DartsState
from jaxmutate.algorithms._darts import DartsSteps as DartsSteps
from jaxmutate.algorithms._darts import init_darts_state as init_darts_state
from jaxmutate.algorithms._darts import make_darts_steps as make_darts_steps
from jaxmutate.algorithms._derive import derive_group_choices as derive_group_choices
from jaxmutate.algorithms._derive import discrete_arch_weights as discrete_arch_weights
from jaxmutate.algorithms._distill import kl_divergence as kl_divergence
from jaxmutate.algorithms._dsnas import DsnasSteps as DsnasSteps
from jaxmutate.algorithms._dsnas import fix_dsnas_subnet as fix_dsnas_subnet
from jaxmutate.algorithms._dsnas import make_dsnas_steps as make_dsnas_steps
from jaxmutate.algorithms._metrics import accuracy as accuracy
from jaxmutate.algorithms._metrics import classification_loss as classification_loss
from jaxmutate.algorithms._metrics import evaluate_accuracy as evaluate_accuracy
from jaxmutate.algorithms._optimizers import build_optimizer as build_optimizer
from jaxmutate.algorithms._optimizers import make_weight_optimizer as make_weight_optimizer
from jaxmutate.algorithms._spos import make_fixed_subnet_train_step as make_fixed_subnet_train_step
from jaxmutate.algorithms._spos import make_population_scorer as make_population_scorer
from jaxmutate.algorithms._spos import make_spos_train_step as make_spos_train_step
from jaxmutate.algorithms._spos import supervised_update as supervised_update
from jaxmutate.algorithms._train_state import TrainState as TrainState
from jaxmutate.algorithms._train_state import init_supernet as init_supernet
from jaxmutate.algorithms._train_state import init_train_state as init_train_state

__all__ = [
  "accuracy",
  "add_cost_penalty",
  "apply_in_train_mode",
  "arch_gradient",
  "arch_weights",
  "arch_weights_table",
  "build_optimizer",
  "calibrate_batch_stats",
  "check_arch_params",
  "classification_loss",
  "CostPenaltyState",
  "cost_penalty",
  "DartsState",
  "DartsSteps",
  "derive_group_choices",
  "discrete_arch_weights",
  "DsnasSteps",
  "evaluate_accuracy",
  "expected_cost",
  "fix_dsnas_subnet",
  "init_darts_state",
  "init_supernet",
  "init_train_state",
  "kl_divergence",
  "make_calibrated_scorer",
  "make_darts_steps",
  "make_dsnas_steps",
  "make_fixed_subnet_train_step",
  "make_population_scorer",
  "make_sandwich_train_step",
  "make_slimmable_train_step",
  "make_spos_train_step",
  "make_weight_optimizer",
  "recalibrate_batch_stats",
  "sample_sandwich_choices",
  "stack_group_choices",
  "supernet_loss",
  "supervised_update",
  "TrainState",
  "uses_temperature",
]
