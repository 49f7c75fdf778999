"""Search algorithms as pure functions, and the runners the CLI builds from configs."""

from jaxmutate.algorithms._base import SearchAlgorithm as SearchAlgorithm
from jaxmutate.algorithms._base import SearchResult as SearchResult
from jaxmutate.algorithms._common import TrainState as TrainState
from jaxmutate.algorithms._common import accuracy as accuracy
from jaxmutate.algorithms._common import apply_in_train_mode as apply_in_train_mode
from jaxmutate.algorithms._common import build_optimizer as build_optimizer
from jaxmutate.algorithms._common import classification_loss as classification_loss
from jaxmutate.algorithms._common import evaluate_accuracy as evaluate_accuracy
from jaxmutate.algorithms._common import init_supernet as init_supernet
from jaxmutate.algorithms._common import init_train_state as init_train_state
from jaxmutate.algorithms._common import recalibrate_batch_stats as recalibrate_batch_stats
from jaxmutate.algorithms._darts import DARTS as DARTS
from jaxmutate.algorithms._darts import DartsState as DartsState
from jaxmutate.algorithms._darts import DartsSteps as DartsSteps
from jaxmutate.algorithms._darts import make_darts_steps as make_darts_steps
from jaxmutate.algorithms._darts import init_darts_state as init_darts_state
from jaxmutate.algorithms._darts import arch_gradient as arch_gradient
from jaxmutate.algorithms._darts import supernet_loss as supernet_loss
from jaxmutate.algorithms._darts import make_weight_optimizer as make_weight_optimizer
from jaxmutate.algorithms._darts import derive_group_choices as derive_group_choices
from jaxmutate.algorithms._darts import discrete_arch_weights as discrete_arch_weights
from jaxmutate.algorithms._darts import check_arch_params as check_arch_params
from jaxmutate.algorithms._darts import arch_weights_table as arch_weights_table
from jaxmutate.algorithms._darts import uses_temperature as uses_temperature
from jaxmutate.algorithms._spos import SPOS as SPOS
from jaxmutate.algorithms._spos import make_fixed_subnet_train_step as make_fixed_subnet_train_step
from jaxmutate.algorithms._spos import make_population_scorer as make_population_scorer
from jaxmutate.algorithms._spos import make_spos_train_step as make_spos_train_step
from jaxmutate.algorithms._spos import retrain_subnet as retrain_subnet
from jaxmutate.algorithms._spos import supervised_update as supervised_update
from jaxmutate.algorithms._spos import train_supernet as train_supernet

__all__ = [
    "accuracy",
    "apply_in_train_mode",
    "arch_gradient",
    "arch_weights_table",
    "build_optimizer",
    "check_arch_params",
    "classification_loss",
    "DARTS",
    "DartsState",
    "DartsSteps",
    "derive_group_choices",
    "discrete_arch_weights",
    "evaluate_accuracy",
    "init_darts_state",
    "init_supernet",
    "init_train_state",
    "make_darts_steps",
    "make_fixed_subnet_train_step",
    "make_population_scorer",
    "make_spos_train_step",
    "make_weight_optimizer",
    "recalibrate_batch_stats",
    "retrain_subnet",
    "SearchAlgorithm",
    "SearchResult",
    "SPOS",
    "supernet_loss",
    "supervised_update",
    "train_supernet",
    "TrainState",
    "uses_temperature",
]
