"""OneShotMutableOP / OneShotProbMutableOP: one candidate per subnet."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm

X = jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 6.0


class BNBlock(nn.Module):
  """Dense → BatchNorm, so train mode updates ``batch_stats``."""

  features: int = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(self.features)(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)


class DropBlock(nn.Module):
  """Dense → Dropout(0.5): needs the ``dropout`` rng in train mode."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(4)(x)
    return nn.Dropout(0.5, deterministic=not train)(x)


def _op(**kwargs) -> jm.OneShotMutableOP:
  return jm.OneShotMutableOP(
    {"k3": nn.Dense(4), "k5": nn.Dense(4, use_bias=False), "skip": lambda x: x[:, :1] * jnp.ones((1, 4))}, **kwargs
  )


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train: bool = False):
    x = nn.Dense(3, name="stem")(x)
    return _op(name="op")(x, choices)


def test_choice_names_follow_candidate_order():
  assert _op().choice_names == ("k3", "k5", "skip")


class TestOneShotMutableOP(chex.TestCase):
  """Output equals the chosen candidate's output, traced or concrete."""

  def setUp(self):
    super().setUp()
    self.variables = Net().init(jax.random.key(0), X, None)

  def _expected(self, index: int) -> jax.Array:
    params = self.variables["params"]
    h = nn.Dense(3).apply({"params": params["stem"]}, X)
    name = ("k3", "k5", "skip")[index]
    if name == "skip":
      return h[:, :1] * jnp.ones((1, 4))
    dense = nn.Dense(4, use_bias=(name == "k3"))
    return dense.apply({"params": params["op"][name]}, h)

  @chex.variants(with_jit=True, without_jit=True)
  def test_output_is_the_chosen_candidate(self):
    apply = self.variant(Net().apply)
    for index in range(3):
      out = apply(self.variables, X, {"op": jnp.int32(index)})
      np.testing.assert_allclose(out, self._expected(index), rtol=1e-6, atol=1e-6)

  def test_traced_choice_equals_concrete_choice(self):
    traced = jax.jit(Net().apply)
    for index in range(3):
      concrete = Net().apply(self.variables, X, {"op": jnp.int32(index)})
      chex.assert_trees_all_close(traced(self.variables, X, {"op": jnp.int32(index)}), concrete, rtol=1e-6)

  def test_changing_the_choice_does_not_retrace(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(variables, choices):
      return Net().apply(variables, X, choices)

    outs = [apply(self.variables, {"op": jnp.int32(i)}) for i in (0, 1, 2, 0)]
    chex.assert_trees_all_close(outs[0], outs[3])
    assert not np.allclose(outs[0], outs[1])


def test_init_with_none_returns_the_sum_of_all_candidates(key):
  op = _op()
  variables = op.init(key, X, None)
  outs = [op.apply(variables, X, {"": jnp.int32(i)}) for i in range(3)]
  init_out = op.init_with_output(key, X, None)[0]
  np.testing.assert_allclose(init_out, sum(outs), rtol=1e-5, atol=1e-6)


def test_init_with_a_choice_builds_every_candidate_and_returns_the_chosen(key):
  op = _op()
  out, variables = op.init_with_output(key, X, {"": jnp.int32(1)})
  assert set(variables["params"]) == {"k3", "k5"}
  np.testing.assert_allclose(out, op.apply(variables, X, {"": jnp.int32(1)}), rtol=1e-6)


@pytest.mark.parametrize("bad", [3, -1, 100])
def test_concrete_out_of_range_choice_raises_value_error(bad, key):
  variables = Net().init(key, X, None)
  with pytest.raises(ValueError, match=r"'op'.*out of range"):
    Net().apply(variables, X, {"op": jnp.int32(bad)})
  with pytest.raises(ValueError, match="'op'"):
    Net().apply(variables, X, {"op": bad})


def test_wrong_choice_shape_or_dtype_raises(key):
  variables = Net().init(key, X, None)
  with pytest.raises(ValueError, match="'op'.*shape"):
    Net().apply(variables, X, {"op": jnp.array([0, 1], jnp.int32)})
  with pytest.raises(TypeError, match="'op'.*dtype"):
    Net().apply(variables, X, {"op": jnp.float32(1.0)})
  with pytest.raises(TypeError, match="'op'.*dtype"):
    jax.jit(Net().apply)(variables, X, {"op": jnp.float32(1.0)})


def test_choices_must_be_a_mapping(key):
  variables = Net().init(key, X, None)
  with pytest.raises(TypeError, match="dict"):
    Net().apply(variables, X, [jnp.int32(0)])


def test_candidates_with_different_output_shapes_raise_at_init(key):
  op = jm.OneShotMutableOP({"a": nn.Dense(4), "b": nn.Dense(5)})
  with pytest.raises(ValueError, match="'a'.*'b'"):
    op.init(key, X, None)


def test_candidates_with_different_output_dtypes_raise_at_init(key):
  op = jm.OneShotMutableOP({"a": nn.Dense(4), "b": nn.Dense(4, dtype=jnp.float16)})
  with pytest.raises(ValueError, match="same shapes and dtypes"):
    op.init(key, X, None)


def test_empty_candidates_raise(key):
  with pytest.raises(ValueError, match="empty"):
    jm.OneShotMutableOP({}).init(key, X, None)


def test_config_dict_candidates_are_built_from_the_registry(key):
  @jm.MODELS.register_module(force=True)
  class _TinyScale(nn.Module):
    factor: float = 2.0

    def __call__(self, x):
      return x * self.factor

  try:
    op = jm.OneShotMutableOP({"two": dict(type="_TinyScale"), "three": dict(type="_TinyScale", factor=3.0)})
    variables = op.init(key, X, None)
    np.testing.assert_allclose(op.apply(variables, X, {"": jnp.int32(1)}), 3 * X)
    np.testing.assert_allclose(jax.jit(op.apply)(variables, X, {"": jnp.int32(0)}), 2 * X)
  finally:
    jm.MODELS._entries.pop("_TinyScale", None)


class Nested(nn.Module):
  @nn.compact
  def __call__(self, x, choices):
    inner = jm.OneShotMutableOP({"a": nn.Dense(4), "b": nn.Dense(4)})
    return jm.OneShotMutableOP({"inner": inner, "plain": nn.Dense(4)}, name="outer")(x, choices)


def test_nested_mutables_are_found_and_receive_choices(key):
  variables = Nested().init(key, X, None)
  assert set(variables["params"]["outer"]) == {"inner", "plain"}
  assert set(variables["params"]["outer"]["inner"]) == {"a", "b"}
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  assert set(mutator.name_to_spec) == {"outer", "outer.inner"}
  choices = {"outer": jnp.int32(0), "outer.inner": jnp.int32(1)}
  expected = nn.Dense(4).apply({"params": variables["params"]["outer"]["inner"]["b"]}, X)
  np.testing.assert_allclose(Nested().apply(variables, X, choices), expected, rtol=1e-6)


def test_nested_mutables_receive_choices_under_jit(key):
  variables = Nested().init(key, X, None)
  choices = {"outer": jnp.int32(0), "outer.inner": jnp.int32(1)}
  expected = nn.Dense(4).apply({"params": variables["params"]["outer"]["inner"]["b"]}, X)
  np.testing.assert_allclose(jax.jit(Nested().apply)(variables, X, choices), expected, rtol=1e-6)


class BNNet(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train: bool = False):
    op = jm.OneShotMutableOP({"a": BNBlock(), "b": BNBlock(), "c": BNBlock()}, name="op")
    return op(x, choices, train=train)


@pytest.mark.parametrize("jit", [False, True], ids=["concrete", "traced"])
def test_batch_stats_update_only_for_the_chosen_candidate(jit, key):
  variables = BNNet().init(key, X, None)
  assert set(variables["batch_stats"]["op"]) == {"a", "b", "c"}
  apply = lambda v, c: BNNet().apply(v, X, c, train=True, mutable=["batch_stats"])  # noqa: E731
  apply = jax.jit(apply) if jit else apply
  _, updates = apply(variables, {"op": jnp.int32(1)})
  before, after = variables["batch_stats"]["op"], updates["batch_stats"]["op"]
  assert set(after) == {"a", "b", "c"}
  chex.assert_trees_all_equal(after["a"], before["a"])
  chex.assert_trees_all_equal(after["c"], before["c"])
  assert not np.allclose(after["b"]["BatchNorm_0"]["mean"], before["b"]["BatchNorm_0"]["mean"])


def test_eval_mode_leaves_batch_stats_alone(key):
  variables = BNNet().init(key, X, None)
  out = jax.jit(lambda v, c: BNNet().apply(v, X, c, train=False))(variables, {"op": jnp.int32(2)})
  assert out.shape == (2, 4)


class DropNet(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train: bool = False):
    return jm.OneShotMutableOP({"drop": DropBlock(), "also_drop": DropBlock()}, name="op")(x, choices, train=train)


@pytest.mark.parametrize("jit", [False, True], ids=["concrete", "traced"])
def test_dropout_rng_reaches_the_chosen_candidate(jit, key):
  variables = DropNet().init(key, X, None)
  apply = lambda v, c, k: DropNet().apply(v, jnp.ones((8, 3)), c, train=True, rngs={"dropout": k})  # noqa: E731
  apply = jax.jit(apply) if jit else apply
  choices = {"op": jnp.int32(0)}
  first = apply(variables, choices, jax.random.key(1))
  again = apply(variables, choices, jax.random.key(1))
  other = apply(variables, choices, jax.random.key(2))
  chex.assert_trees_all_equal(first, again)
  assert not np.array_equal(first, other)
  assert bool(jnp.any(first == 0.0))  # some units were dropped


def test_dropout_without_rng_in_train_mode_raises(key):
  variables = DropNet().init(key, X, None)
  with pytest.raises(Exception, match="dropout"):
    DropNet().apply(variables, X, {"op": jnp.int32(0)}, train=True)


# OneShotProbMutableOP -------------------------------------------------------


def _prob_op(probs) -> jm.OneShotProbMutableOP:
  return jm.OneShotProbMutableOP({"a": nn.Dense(2), "b": nn.Dense(2), "c": nn.Dense(2)}, choice_probs=probs)


def test_prob_op_records_its_probabilities(key):
  variables = _prob_op([0.2, 0.3, 0.5]).init(key, X, None)
  assert variables["mutables"]["spec"].space.probs == (0.2, 0.3, 0.5)


def test_prob_op_accepts_a_sum_within_tolerance(key):
  _prob_op([0.2, 0.3, 0.5 + 5e-7]).init(key, X, None)
  _prob_op([0.2, 0.3, 0.5 - 5e-7]).init(key, X, None)


@pytest.mark.parametrize(
  "probs, match",
  [
    ([0.5, 0.5], "2 entries but there are 3"),
    ([0.25, 0.25, 0.25, 0.25], "4 entries"),
    ([0.2, 0.3, 0.6], "sum to 1"),
    ([0.2, 0.3, 0.4], "sum to 1"),  # MMRazor's one-sided check would accept this
    ([0.2, 0.3, 0.5 + 1e-5], "sum to 1"),
    ([-0.5, 0.5, 1.0], "non-negative"),
    ((), "0 entries"),
  ],
)
def test_prob_op_rejects_bad_probabilities(probs, match, key):
  with pytest.raises(ValueError, match=match):
    _prob_op(probs).init(key, X, None)


def test_prob_op_runs_like_one_shot_op(key):
  op = _prob_op([0.2, 0.3, 0.5])
  variables = op.init(key, X, None)
  for index in range(3):
    expected = nn.Dense(2).apply({"params": variables["params"]["abc"[index]]}, X)
    np.testing.assert_allclose(jax.jit(op.apply)(variables, X, {"": jnp.int32(index)}), expected, rtol=1e-6)
