"""Named errors: one class per condition, each also the builtin the SPEC promises."""

from __future__ import annotations

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm
from jaxmutate import errors

BUILTIN = {
  errors.SearchSpaceError: ValueError,
  errors.ChoiceError: ValueError,
  errors.ChoiceTypeError: TypeError,
  errors.MissingChoiceError: KeyError,
  errors.TracedChoiceError: TypeError,
  errors.SubnetFileError: ValueError,
  errors.SubnetEntryMissingError: KeyError,
  errors.SubnetFileTypeError: TypeError,
  errors.ConfigError: ValueError,
  errors.ConfigKeyError: KeyError,
  errors.UnknownTypeError: KeyError,
  errors.ConfigTypeError: TypeError,
  errors.NotPreparedError: RuntimeError,
  errors.SearchError: RuntimeError,
  errors.ShardingError: ValueError,
  errors.CheckpointError: RuntimeError,
  errors.CheckpointCorruptError: RuntimeError,
  errors.CheckpointMismatchError: ValueError,
  errors.CheckpointExistsError: RuntimeError,
  errors.NonFiniteLossError: FloatingPointError,
}


def test_every_error_is_a_jaxmutate_error_and_its_builtin():
  public = {obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == errors.__name__}
  assert public - {errors.JaxMutateError} == set(BUILTIN)
  for cls, builtin in BUILTIN.items():
    assert issubclass(cls, errors.JaxMutateError) and issubclass(cls, builtin), cls


def test_key_errors_print_their_message_unquoted():
  assert str(errors.MissingChoiceError("No choice for mutable 'a'.")) == "No choice for mutable 'a'."


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, choices):
    x = jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="op")(x, choices)
    return x * jm.OneShotMutableValue([1, 2], alias="w", name="scale")(choices)


@pytest.fixture(scope="module")
def prepared():
  variables = Net().init(jax.random.key(0), jnp.ones((1, 3)), None)
  return variables, jm.NasMutator().prepare_from_supernet(variables)


@pytest.mark.parametrize(
  "make_error, cls",
  [
    (lambda v, m: jm.NasMutator().search_groups, errors.NotPreparedError),
    (lambda v, m: jm.NasMutator().set_choices({}), errors.NotPreparedError),
    (lambda v, m: m.set_choices({0: 0}), errors.MissingChoiceError),
    (lambda v, m: m.set_choices({0: 0, 1: 0, 7: 0}), errors.ChoiceError),
    (lambda v, m: m.set_choices({0: 5, 1: 0}), errors.ChoiceError),
    (lambda v, m: m.set_choices({0: 0.5, 1: 0}), errors.ChoiceTypeError),
    (lambda v, m: m.max_choices(), errors.SearchSpaceError),
    (lambda v, m: m.sample_choices(jax.random.key(0), kind="largest"), errors.ConfigError),
    (lambda v, m: jax.jit(lambda c: m.export_fix_subnet({0: c, 1: 0}))(0), errors.TracedChoiceError),
    (lambda v, m: m.load_fix_subnet({"op": {"chosen": "a"}}), errors.SubnetEntryMissingError),
    (lambda v, m: m.load_fix_subnet({"op": {"chosen": "z"}, "w": {"chosen": 1}}), errors.SubnetFileError),
    (lambda v, m: m.load_fix_subnet({"op": "a", "w": {"chosen": 1}}), errors.SubnetFileTypeError),
    (lambda v, m: m.load_fix_subnet(["op"]), errors.SubnetFileTypeError),
    (lambda v, m: Net().apply(v, jnp.ones((1, 3)), {"op": 0}), errors.MissingChoiceError),
    (lambda v, m: jm.build(dict(type="NoSuchThing")), errors.UnknownTypeError),
    (lambda v, m: jm.NasMutator(custom_group="op"), errors.ConfigTypeError),
    (lambda v, m: jm.NasMutator(custom_group=[["nope"]]).prepare_from_supernet(v), errors.SearchSpaceError),
  ],
)
def test_each_condition_raises_its_named_error(prepared, make_error, cls):
  variables, mutator = prepared
  with pytest.raises(cls):
    make_error(variables, mutator)
