"""benchmarks/ranking.py's core: rank correlations and vmapped stand-alone training, on tiny inputs."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.data import Split

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ranking():
  sys.path.insert(0, str(BENCHMARKS))  # ranking.py imports its sibling machine.py
  try:
    spec = importlib.util.spec_from_file_location("ranking_benchmark", BENCHMARKS / "ranking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(BENCHMARKS))
  return module


def test_rank_correlations_match_their_definitions(ranking):
  x = np.array([0.1, 0.4, 0.3, 0.9, 0.5])
  assert ranking.kendall_tau(x, x)[0] == pytest.approx(1.0)
  assert ranking.spearman_rho(x, -x)[0] == pytest.approx(-1.0)
  y = np.array([0.2, 0.1, 0.3, 0.5, 0.4])  # 8 concordant, 2 discordant pairs of 10
  assert ranking.kendall_tau(x, y)[0] == pytest.approx(0.6)
  ties = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
  scipy_stats = pytest.importorskip("scipy.stats")
  assert ranking.kendall_tau(ties, y)[0] == pytest.approx(scipy_stats.kendalltau(ties, y).statistic)
  assert ranking.spearman_rho(ties, y)[0] == pytest.approx(scipy_stats.spearmanr(ties, y).statistic)
  report = ranking.rank_correlation(x, y, num_bootstrap=200)
  low, high = report["kendall_tau"]["ci95"]
  assert low <= report["kendall_tau"]["value"] <= high and report["num_subnets"] == 5
  with pytest.raises(ValueError, match=">= 3 subnets"):
    ranking.rank_correlation(x[:2], y[:2])


def test_standalone_training_trains_each_subnet_on_its_own_path(ranking):
  net = jm.SearchableMLP(num_classes=2, width=8, num_layers=2)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(64, 4)).astype(np.float32)
  labels = (images[:, 0] > 0).astype(np.int32)
  split = Split(images, labels)
  variables = net.init(jax.random.key(0), jnp.ones((1, 4)), None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  population = {0: np.array([0, 3, 0]), 1: np.array([0, 3, 2])}  # relu/relu, skip/skip, relu/tanh
  optimizer = dict(type="sgd", learning_rate=0.5)
  accuracy = ranking.train_standalone(net, mutator, population, split, split, 5, 32, optimizer, jax.random.key(1))
  assert accuracy.shape == (3,) and (accuracy > 0.8).all()  # a linearly separable task: each one learns it
