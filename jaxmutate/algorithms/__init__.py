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
from jaxmutate.algorithms._spos import SPOS as SPOS
from jaxmutate.algorithms._spos import make_fixed_subnet_train_step as make_fixed_subnet_train_step
from jaxmutate.algorithms._spos import make_population_scorer as make_population_scorer
from jaxmutate.algorithms._spos import make_spos_train_step as make_spos_train_step
from jaxmutate.algorithms._spos import retrain_subnet as retrain_subnet
from jaxmutate.algorithms._spos import supervised_update as supervised_update
from jaxmutate.algorithms._spos import train_supernet as train_supernet

__all__ = [
    "SPOS",
    "SearchAlgorithm",
    "SearchResult",
    "TrainState",
    "accuracy",
    "apply_in_train_mode",
    "build_optimizer",
    "classification_loss",
    "evaluate_accuracy",
    "init_supernet",
    "init_train_state",
    "make_fixed_subnet_train_step",
    "make_population_scorer",
    "make_spos_train_step",
    "recalibrate_batch_stats",
    "retrain_subnet",
    "supervised_update",
    "train_supernet",
]
