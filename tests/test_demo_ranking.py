"""benchmarks/ranking.py's core: rank correlations and vmapped stand-alone training, on tiny inputs."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate.algorithms import init_train_state, make_population_scorer
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


@pytest.mark.slow  # about 8 s of CPU, mostly compiling
def test_standalone_training_trains_each_subnet_and_seed_on_its_own(ranking):
  net = jm.SearchableMLP(num_classes=2, width=8, num_layers=2)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(64, 4)).astype(np.float32)
  labels = (images[:, 0] > 0).astype(np.int32)
  split = Split(images, labels)
  variables = net.init(jax.random.key(0), jnp.ones((1, 4)), None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  population = {0: np.array([0, 3, 0]), 1: np.array([0, 3, 2])}  # relu/relu, skip/skip, relu/tanh
  optimizer = dict(type="sgd", learning_rate=0.5)
  scores = ranking.train_standalone(
    net, mutator, population, split, split, 5, 32, optimizer, jax.random.key(1), num_seeds=2
  )
  assert scores["loss"].shape == scores["accuracy"].shape == (2, 3)
  assert (scores["accuracy"] > 0.8).all()  # a linearly separable task: every copy learns it
  assert (scores["loss"] < np.log(2)).all()  # better than chance, so the loss is the trained copy's
  assert not np.allclose(scores["loss"][0], scores["loss"][1])  # each seed has its own init and data order


@pytest.mark.slow  # about 8 s of CPU, mostly compiling
def test_supernet_scores_are_the_search_scorers_and_the_report_names_every_pair(ranking):
  net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=2)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
  split = Split(images, rng.integers(0, 3, 24).astype(np.int32))
  state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), jnp.asarray(images[:4]))
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  population = {g: np.array([0, 1, 2, 3]) for g in mutator.search_groups}
  calibration = jnp.asarray(images[:16])
  scores = ranking.score_with_supernet(net, mutator, state, population, calibration, {"val": split})
  search = make_population_scorer(net, mutator, calibration, jnp.asarray(split.images), jnp.asarray(split.labels))
  np.testing.assert_allclose(scores["val"]["accuracy"], search(state, population), atol=1e-6)
  assert scores["val"]["loss"].shape == (4,) and (scores["val"]["loss"] > 0).all()

  x, y = np.arange(6.0), np.array([0.0, 2, 1, 3, 5, 4])
  within = np.array([True] * 5 + [False])
  report = ranking.correlations({"a": x, "b": -x}, {"t": y}, within, num_bootstrap=50, seed=0)
  assert sorted(report) == ["all_subnets", "within_constraint"]
  assert report["within_constraint"]["a__vs__t"]["num_subnets"] == 5
  assert report["all_subnets"]["b__vs__t"]["kendall_tau"]["value"] == pytest.approx(
    -report["all_subnets"]["a__vs__t"]["kendall_tau"]["value"]
  )
  agreement = ranking.seed_agreement({"loss": np.stack([x, x, y]), "accuracy": np.stack([y, y, x])}, 50, 0)
  assert agreement["heldout_neg_loss"]["pairs"]["seed0_vs_seed1"]["kendall_tau"]["value"] == pytest.approx(1.0)
  assert len(agreement["heldout_accuracy"]["pairs"]) == 3


@pytest.mark.slow  # about 8 s of CPU, mostly compiling
def test_population_mixes_constrained_and_free_distinct_subnets(ranking):
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=3)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
  cost = lambda population: {"ops": sum(population.values()).astype(jnp.float32)}  # noqa: E731
  population = ranking.draw_population(jax.random.key(1), mutator, cost, 8, 3, {"ops": (0, 2)})
  rows = {tuple(int(population[g][i]) for g in population) for i in range(8)}
  assert len(rows) == 8 and (np.asarray(cost(population)["ops"])[:3] <= 2).all()
  with pytest.raises(ValueError, match="--num-within"):
    ranking.draw_population(jax.random.key(1), mutator, cost, 8, 3, {"ops": (-2, -1)})
