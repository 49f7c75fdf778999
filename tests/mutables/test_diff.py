"""Differentiable mutables: softmax mixtures, direct weights, Gumbel and one-hot ops."""

import collections

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
import jaxmutate.ops  # noqa: F401  (registers Identity)
from jaxmutate.mutables import gumbel_softmax, gumbel_temperature_schedule


class Calls:
  """Run-time record of which candidates executed (a plain object: Flax freezes dicts)."""

  def __init__(self):
    self.names = []

  def counts(self):
    return collections.Counter(self.names)


class Counted(nn.Module):
  """A Dense candidate that records, at run time, each time it executes."""

  tag: str
  calls: Calls

  @nn.compact
  def __call__(self, x, train=False):
    jax.debug.callback(lambda: self.calls.names.append(self.tag))
    return nn.Dense(3, name="dense")(x)


def counted_candidates(calls):
  return {name: Counted(name, calls, parent=None) for name in ("a", "b", "c")}


X = jax.random.normal(jax.random.key(7), (4, 2))
TARGET = jax.random.normal(jax.random.key(8), (4, 3))


def test_diff_op_is_softmax_mixture(key):
  op = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
  variables = op.init(key, X, None)
  logits = jnp.array([0.3, -1.0])
  out = op.apply(variables, X, {"": logits})
  dense = nn.Dense(3)
  ya = dense.apply({"params": variables["params"]["a"]}, X)
  yb = dense.apply({"params": variables["params"]["b"]}, X)
  w = jax.nn.softmax(logits)
  np.testing.assert_allclose(out, w[0] * ya + w[1] * yb, rtol=1e-6)


def test_direct_weights_take_the_choice_as_weights(key):
  op = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, direct_weights=True)
  variables = op.init(key, X, None)
  ya = nn.Dense(3).apply({"params": variables["params"]["a"]}, X)
  np.testing.assert_array_equal(op.apply(variables, X, {"": jnp.array([1.0, 0.0])}), ya)
  route = jm.DiffChoiceRoute(
    {"p0": nn.Dense(2), "p1": nn.Dense(2), "p2": nn.Dense(2)}, num_chosen=2, direct_weights=True
  )
  xs = [X, 2 * X, 3 * X]
  rv = route.init(key, xs, None)
  edges = [nn.Dense(2).apply({"params": rv["params"][f"p{i}"]}, xs[i]) for i in range(3)]
  out = route.apply(rv, xs, {"": jnp.array([1.0, 0.0, 1.0])})
  np.testing.assert_allclose(out, edges[0] + edges[2], rtol=1e-6)


def test_discrete_weights_are_one_hot_and_multi_hot(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      y = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="op")(x, choices)
      edges = {"p0": nn.Dense(3), "p1": nn.Dense(3), "p2": nn.Dense(3)}
      return jm.DiffChoiceRoute(edges, num_chosen=2, name="route")([y, y, y], choices)

  mutator = jm.DiffModuleMutator().prepare_from_supernet(Net().init(key, X, None))
  logits = {0: jnp.array([0.1, 0.5]), 1: jnp.array([0.3, -2.0, 1.0])}
  weights = {g: mutator.group_space(g).discrete_weights(logits[g]) for g in logits}
  np.testing.assert_array_equal(weights[0], [0.0, 1.0])
  np.testing.assert_array_equal(weights[1], [1.0, 0.0, 1.0])


@pytest.mark.parametrize("cls", [jm.GumbelMutableOP, jm.OneHotMutableOP])
def test_hard_ops_run_one_candidate_and_reach_the_logits(cls, key):
  calls = Calls()
  op = cls(counted_candidates(calls))
  variables = op.init(key, X, None)

  def loss(logits, params, rng):
    out = op.apply({"params": params}, X, {"": logits}, rngs={"gumbel": rng})
    return jnp.sum((out - TARGET) ** 2)

  # The compiled computation dispatches on the sampled index (lax.cond inside switch).
  assert "cond[" in str(jax.make_jaxpr(loss)(jnp.zeros(3), variables["params"], key))
  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  jax.block_until_ready(grad(jnp.zeros(3), variables["params"], key))  # compile; callbacks run once
  jax.effects_barrier()
  calls.names.clear()
  num_calls = 20
  grads = [grad(jnp.zeros(3), variables["params"], jax.random.key(i)) for i in range(num_calls)]
  jax.effects_barrier()
  # Exactly one candidate ran per call (forward; the backward re-runs no candidate forward).
  assert len(calls.names) == num_calls
  assert len(calls.counts()) >= 2  # different draws chose different candidates
  logit_grads = np.stack([g[0] for g in grads])
  assert np.all(np.isfinite(logit_grads))
  assert np.abs(logit_grads).sum(axis=1).min() > 0  # every step moves the logits
  # Only the chosen candidate's weights get a gradient.
  nonzero = [sum(bool(np.any(g[1][n]["dense"]["kernel"] != 0)) for n in "abc") for g in grads]
  assert nonzero == [1] * num_calls


def test_gumbel_straight_through_weight_multiplies_the_single_output(key):
  op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, tau=0.7)
  variables = op.init(key, X, None)
  logits = jnp.array([0.2, -0.4])
  rng = jax.random.key(3)
  out = op.apply(variables, X, {"": logits}, rngs={"gumbel": rng})
  candidates = [nn.Dense(3).apply({"params": variables["params"][n]}, X) for n in "ab"]
  # The forward value of the straight-through weight is 1: the output is one candidate's.
  matches = [i for i, y in enumerate(candidates) if np.allclose(out, y, rtol=1e-6)]
  assert len(matches) == 1
  index = matches[0]

  def loss(logits):
    return jnp.sum(op.apply(variables, X, {"": logits}, rngs={"gumbel": rng}) * TARGET)

  # dL/dlogits = <dL/dout, out_chosen> · ∇ softmax((l + g)/τ)[chosen]: a softmax
  # Jacobian row (sums to 0) whose chosen entry has the sign of <dL/dout, out>.
  grad = jax.grad(loss)(logits)
  credit = float(jnp.sum(candidates[index] * TARGET))
  assert abs(float(grad.sum())) < 1e-5
  assert np.sign(float(grad[index])) == np.sign(credit) and float(jnp.abs(grad).max()) > 1e-4


def test_soft_gumbel_runs_every_candidate(key):
  calls = Calls()
  op = jm.GumbelMutableOP(counted_candidates(calls), hard=False)
  variables = op.init(key, X, None)
  jax.effects_barrier()
  calls.names.clear()
  jax.block_until_ready(jax.jit(lambda v: op.apply(v, X, {"": jnp.zeros(3)}, rngs={"gumbel": key}))(variables))
  jax.effects_barrier()
  assert calls.counts() == collections.Counter({"a": 1, "b": 1, "c": 1})


def test_one_hot_op_samples_from_softmax(key):
  op = jm.OneHotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
  variables = op.init(key, X, None)
  ya = nn.Dense(3).apply({"params": variables["params"]["a"]}, X)
  logits = jnp.array([np.log(0.8), np.log(0.2)], jnp.float32)
  run = jax.jit(jax.vmap(lambda k: op.apply(variables, X, {"": logits}, rngs={"gumbel": k})))
  outs = run(jax.random.split(key, 400))
  took_a = np.mean([np.allclose(o, ya) for o in np.asarray(outs)])
  assert 0.7 < took_a < 0.9


def test_one_hot_op_gradient_is_score_function(key):
  op = jm.OneHotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
  variables = op.init(key, X, None)
  logits = jnp.array([0.4, -0.1])
  rng = jax.random.key(5)
  out = op.apply(variables, X, {"": logits}, rngs={"gumbel": rng})
  chosen = [n for n in "ab" if np.allclose(out, nn.Dense(3).apply({"params": variables["params"][n]}, X))]
  assert len(chosen) == 1
  index = "ab".index(chosen[0])
  grad = jax.grad(lambda a: jnp.sum(op.apply(variables, X, {"": a}, rngs={"gumbel": rng}) * TARGET))(logits)
  expected = jnp.sum(out * TARGET) * jax.grad(lambda a: jax.nn.log_softmax(a)[index])(logits)
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_hard_gumbel_route_runs_one_edge(key):
  calls = Calls()
  route = jm.GumbelChoiceRoute(counted_candidates(calls), tau=1.0, hard=True)
  xs = [X, 2 * X, 3 * X]
  variables = route.init(key, xs, None)

  def loss(logits, rng):
    return jnp.sum((route.apply(variables, xs, {"": logits}, rngs={"gumbel": rng}) - TARGET) ** 2)

  grad = jax.jit(jax.grad(loss))
  jax.block_until_ready(grad(jnp.zeros(3), key))
  jax.effects_barrier()
  calls.names.clear()
  grads = [grad(jnp.zeros(3), jax.random.key(i)) for i in range(10)]
  jax.effects_barrier()
  assert len(calls.names) == 10
  assert all(float(jnp.abs(g).sum()) > 0 for g in grads)
  # Each edge reads its own input: the output is edge i applied to xs[i].
  rng = jax.random.key(11)
  out = route.apply(variables, xs, {"": jnp.zeros(3)}, rngs={"gumbel": rng})
  edges = [nn.Dense(3).apply({"params": variables["params"][n]["dense"]}, xs[i]) for i, n in enumerate("abc")]
  assert sum(np.allclose(out, y, rtol=1e-6) for y in edges) == 1


def test_temperature_is_traced_without_recompiling(key):
  op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, hard=False)
  variables = op.init(key, X, None)
  traces = []

  @jax.jit
  def run(tau):
    traces.append(1)
    return op.apply(variables, X, {"": jnp.zeros(2)}, tau=tau, rngs={"gumbel": key})

  hot, cold = run(jnp.float32(5.0)), run(jnp.float32(0.05))
  assert len(traces) == 1
  assert not np.allclose(hot, cold)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_non_positive_temperature_is_rejected(tau, key):
  op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
  variables = op.init(key, X, None)
  with pytest.raises(ValueError, match="temperature tau must be > 0"):
    op.apply(variables, X, {"": jnp.zeros(2)}, tau=tau, rngs={"gumbel": key})
  with pytest.raises(ValueError, match="GumbelMutableOP.*tau must be > 0"):
    jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, tau=tau).apply(
      variables, X, {"": jnp.zeros(2)}, rngs={"gumbel": key}
    )
  route = jm.GumbelChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2)}, tau=tau)
  with pytest.raises(ValueError, match="GumbelChoiceRoute.*tau must be > 0"):
    route.init(key, [X, X], None)
  with pytest.raises(ValueError, match="tau must be > 0"):
    gumbel_softmax(key, jnp.zeros(2), tau, hard=True)
  with pytest.raises(ValueError, match="init_value"):
    gumbel_temperature_schedule(tau, 0.1, 10)


def test_gumbel_needs_its_rng_stream(key):
  op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
  variables = op.init(key, X, None)
  with pytest.raises(ValueError, match="rngs=\\{'gumbel': key\\}"):
    op.apply(variables, X, {"": jnp.zeros(2)})


def test_direct_weights_are_rejected_for_sampled_mutables(key):
  op = jm.OneHotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, direct_weights=True)
  with pytest.raises(ValueError, match="direct_weights applies to softmax mixtures"):
    op.init(key, X, None)


def test_temperature_schedule_anneals():
  for kind in ("exponential", "linear", "cosine"):
    schedule = gumbel_temperature_schedule(10.0, 0.1, transition_steps=100, kind=kind)
    values = [float(schedule(s)) for s in (0, 50, 100, 1000)]
    assert values[0] == pytest.approx(10.0)
    assert values[0] > values[1] > values[2] - 1e-6
    assert values[2] == pytest.approx(0.1, rel=1e-4) and values[3] == pytest.approx(0.1, rel=1e-4)
  with pytest.raises(ValueError, match="kind"):
    gumbel_temperature_schedule(kind="step")
  with pytest.raises(ValueError, match="transition_steps"):
    gumbel_temperature_schedule(transition_steps=0)


def test_wrong_logit_shape_names_the_mutable(key):
  op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="edge")
  variables = op.init(key, X, None)
  with pytest.raises(ValueError, match="expects architecture logits of shape \\(2,\\)"):
    op.apply(variables, X, {"": jnp.zeros(3)}, rngs={"gumbel": key})


def test_num_chosen_larger_than_edges_names_the_route(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return jm.DiffChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2)}, num_chosen=3, name="node2")([x, x], choices)

  with pytest.raises(ValueError, match="'node2': num_chosen must be an int in \\[1, 2\\]"):
    Net().init(key, X, None)


def test_new_mutables_are_registered_and_exported():
  assert jm.MODELS.get("OneHotMutableOP") is jm.OneHotMutableOP is jm.mutables.OneHotMutableOP
  assert jm.MODELS.get("GumbelMutableOP") is jm.GumbelMutableOP
  op = jm.build(dict(type="OneHotMutableOP", candidates={"a": dict(type="Identity"), "b": dict(type="Identity")}))
  assert isinstance(op, jm.OneHotMutableOP)


def test_gumbel_ops_group_with_diff_mutator(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices, tau=None):
      x = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, alias="shared", name="op0")(x, choices, tau=tau)
      return jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, alias="shared", name="op1")(x, choices, tau=tau)

  variables = Net().init(key, X, None)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("op0", "op1")}
  alpha = mutator.init_arch_params(key)
  out = jax.jit(lambda a, k: Net().apply(variables, X, mutator.set_choices(a), tau=0.5, rngs={"gumbel": k}))(alpha, key)
  assert out.shape == (4, 3)
  assert mutator.export_fix_subnet(mutator.sample_choices(alpha))["shared"]["chosen"] in ("a", "b")
