"""AutoSlim's greedy slimming search: the path, the targets, the errors, and a real calibrated scorer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.algorithms import init_train_state, make_calibrated_scorer
from jaxmutate.channels import OneShotMutableChannelUnit, SequentialMutableChannelUnit
from jaxmutate.errors import ConfigError, ConfigTypeError, SearchSpaceError
from jaxmutate.search import AutoSlimGreedySearchLoop, GreedySearchResult

# Three units and no layers: the search only needs the mutator's groups and spaces.
WIDTHS = {0: (2, 4, 8), 1: (4, 8, 12, 16), 2: (3, 6)}


class Units(nn.Module):
  @nn.compact
  def __call__(self, choices):
    return [
      OneShotMutableChannelUnit(max(w), w, choice_mode="number", name=f"unit{g}")(choices) for g, w in WIDTHS.items()
    ]


@pytest.fixture(scope="module")
def mutator():
  return jm.NasMutator().prepare_from_supernet(Units().init(jax.random.key(0), None))


def widths_of(group_choices):
  return [jnp.asarray(WIDTHS[g], jnp.float32)[group_choices[g]] for g in sorted(WIDTHS)]


def cost(group_choices):
  """Kept-width products of a chain of convs: 1 -> unit0 -> unit1 -> unit2 -> 10 classes."""
  a, b, c = widths_of(group_choices)
  return 9 * a + 9 * a * b + 9 * b * c + 10 * c


# Shrinking unit 1 hurts least, unit 0 most (a made-up accuracy proxy: a weighted kept fraction).
PENALTY = {0: 3.0, 1: 0.5, 2: 1.0}


def score(population):
  a, b, c = widths_of(population)
  return -(PENALTY[0] * (1 - a / 8) + PENALTY[1] * (1 - b / 16) + PENALTY[2] * (1 - c / 6))


def test_greedy_path_is_monotone_and_reaches_every_target(mutator):
  loop = AutoSlimGreedySearchLoop(target_flops=(500.0, 1500.0, 300.0))
  result = loop.run(mutator, score, cost)
  assert isinstance(result, GreedySearchResult)
  costs = [step.cost for step in result.path]
  assert all(later < earlier for earlier, later in zip(costs, costs[1:]))
  assert result.path[0].shrunk_group is None and result.path[0].cost == result.max_cost
  assert result.max_cost == float(cost({0: 2, 1: 3, 2: 1})) and result.min_cost == float(cost({0: 0, 1: 0, 2: 0}))
  # Targets largest first; each result is the first subnet on the path at or below its target.
  assert [s.target for s in result.subnets] == [1500.0, 500.0, 300.0]
  for subnet in result.subnets:
    assert subnet.cost <= subnet.target
    first = next(step for step in result.path if step.cost <= subnet.target)
    assert subnet.group_choices == first.group_choices and subnet.score == first.score
  # Every step lowers one group by one bin.
  for before, after in zip(result.path, result.path[1:]):
    moved = {g: int(before.group_choices[g]) - int(after.group_choices[g]) for g in WIDTHS}
    assert sorted(moved.values()) == [0, 0, 1] and moved[after.shrunk_group] == 1
  # The cheapest-to-shrink unit goes first, and the scores on the path are the score function's.
  assert result.path[1].shrunk_group == 1
  for step in result.path:
    assert step.score == pytest.approx(
      float(score({g: jnp.asarray(v)[None] for g, v in step.group_choices.items()})[0])
    )
    assert step.cost == pytest.approx(float(cost(step.group_choices)))


def test_greedy_scores_every_step_in_one_call_of_one_size(mutator):
  sizes = []

  def counting_score(population):
    sizes.append({int(v.shape[0]) for v in population.values()})
    return score(population)

  records = []
  result = AutoSlimGreedySearchLoop(target_flops=(0.2,), relative=True).run(
    mutator, counting_score, cost, on_step=records.append
  )
  assert all(s == {len(WIDTHS)} for s in sizes)  # padded: one compiled scorer serves every call
  assert len(sizes) == len(result.path)  # the start, then one call per accepted step
  assert [r["step"] for r in records] == list(range(len(result.path)))
  assert [r["cost"] for r in records] == [s.cost for s in result.path]
  assert result.num_evaluated == 1 + sum(
    sum(int(step.group_choices[g]) > 0 for g in WIDTHS) for step in result.path[:-1]
  )


def test_greedy_relative_targets_and_determinism(mutator):
  relative = AutoSlimGreedySearchLoop(target_flops=(0.5, 0.25), relative=True).run(mutator, score, cost)
  max_cost = relative.max_cost
  absolute = AutoSlimGreedySearchLoop(target_flops=(0.5 * max_cost, 0.25 * max_cost)).run(mutator, score, cost)
  assert [s.target for s in relative.subnets] == [0.5 * max_cost, 0.25 * max_cost]
  assert relative == absolute  # the same search; and it is deterministic
  again = AutoSlimGreedySearchLoop(target_flops=(0.5, 0.25), relative=True).run(mutator, score, cost)
  assert again == relative


def test_greedy_target_above_the_max_cost_keeps_the_max(mutator):
  result = AutoSlimGreedySearchLoop(target_flops=(1e9,)).run(mutator, score, cost)
  assert len(result.path) == 1 and result.subnets[0].group_choices == result.path[0].group_choices
  assert {g: int(v) for g, v in result.subnets[0].group_choices.items()} == {0: 2, 1: 3, 2: 1}


def test_greedy_ties_go_to_the_larger_saving(mutator):
  flat = lambda population: jnp.zeros(population[0].shape, jnp.float32)  # every trial scores the same
  result = AutoSlimGreedySearchLoop(target_flops=(0.99,), relative=True).run(mutator, flat, cost)
  # From 2148: unit 0 to 4 saves 612, unit 1 to 12 saves 504, unit 2 to 3 saves 462.
  assert result.path[1].shrunk_group == 0 and result.path[1].cost == 2148.0 - 612.0


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(target_flops=()), ConfigError, "empty"),
    (dict(target_flops=(100.0, -1.0)), ConfigError, "> 0"),
    (dict(target_flops=(float("nan"),)), ConfigError, "finite"),
    (dict(target_flops=(1.5,), relative=True), ConfigError, r"\(0, 1\]"),
    (dict(target_flops="100"), ConfigTypeError, "sequence"),
  ],
)
def test_greedy_rejects_bad_targets(kwargs, error, match):
  with pytest.raises(error, match=match):
    AutoSlimGreedySearchLoop(**kwargs)


def test_greedy_rejects_targets_below_the_min_cost(mutator):
  min_cost = float(cost({0: 0, 1: 0, 2: 0}))
  with pytest.raises(ConfigError, match=rf"target\(s\) 10 are below the min subnet's cost {min_cost:g}"):
    AutoSlimGreedySearchLoop(target_flops=(1000.0, 10.0)).run(mutator, score, cost)


def test_greedy_rejects_unordered_spaces_and_bad_scores(mutator):
  class WithOp(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      x = jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="op")(x, choices)
      return x * OneShotMutableChannelUnit(2, (0.5, 1.0), name="unit")(choices).value

  variables = WithOp().init(jax.random.key(0), jnp.ones((1, 3)), None)
  op_mutator = jm.NasMutator().prepare_from_supernet(variables)
  with pytest.raises(SearchSpaceError, match="'op'.*no ordered candidates"):
    AutoSlimGreedySearchLoop(target_flops=(1.0,)).run(op_mutator, score, cost)
  with pytest.raises(ConfigError, match="returned 1 scores for a population of 3"):
    AutoSlimGreedySearchLoop(target_flops=(0.5,), relative=True).run(mutator, lambda p: jnp.zeros(1), cost)


def test_greedy_slims_sequential_units_by_their_kept_counts():
  unit = SequentialMutableChannelUnit(16, divisor=4, name="unit")
  mutator = jm.NasMutator().prepare_from_supernet(unit.init(jax.random.key(0), None))
  kept = lambda gc: gc[0].astype(jnp.float32)
  result = AutoSlimGreedySearchLoop(target_flops=(7.0,)).run(mutator, kept, kept)
  assert [int(s.group_choices[0]) for s in result.path] == [16, 12, 8, 4]


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train=False):
    w1 = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="unit1")(choices)
    w2 = OneShotMutableChannelUnit(8, (0.5, 1.0), name="unit2")(choices)
    x = dynamic.DynamicConv(8, 3, use_bias=False, max_buckets=1)(x, out_width=w1)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train)(x, w1))
    x = dynamic.DynamicConv(8, 3, use_bias=False, max_buckets=1)(x, in_width=w1, out_width=w2)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train)(x, w2))
    return dynamic.DynamicDense(3, max_buckets=1)(x.mean((1, 2)), in_width=w2)


def test_greedy_with_a_calibrated_scorer_compiles_it_once(compile_log):
  net = Net()
  x = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
  y = jnp.arange(8, dtype=jnp.int32) % 3
  state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(1), x)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  scorer = make_calibrated_scorer(net, mutator, x.reshape(2, 4, 8, 8, 1), x, y, metric="loss")
  tables = {0: jnp.array([2.0, 4.0, 8.0]), 1: jnp.array([4.0, 8.0])}

  def conv_cost(group_choices):
    a, b = tables[0][group_choices[0]], tables[1][group_choices[1]]
    return 9 * a + 9 * a * b + 3 * b

  loop = AutoSlimGreedySearchLoop(target_flops=(0.6, 0.3), relative=True)
  with compile_log() as log:
    result = loop.run(mutator, lambda population: scorer(state, population), conv_cost)
  assert log.names.count("score") == 1
  costs = [s.cost for s in result.path]
  assert all(b < a for a, b in zip(costs, costs[1:]))
  assert [s.cost <= s.target for s in result.subnets] == [True, True]
  assert all(np.isfinite(s.score) for s in result.path)
  # The found subnets export like any other (concrete choices).
  fix_subnet = mutator.export_fix_subnet(result.subnets[-1].group_choices)
  assert sorted(fix_subnet) == sorted(mutator.export_fix_subnet(mutator.max_choices()))
