"""Config-dict candidates are built once, at construction: apply never consults the registry."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm
from jaxmutate import registry

X = jnp.ones((2, 8, 8, 4))


@pytest.mark.parametrize("traced", [False, True])
def test_apply_does_not_build_configs(monkeypatch, traced, key):
  op = jm.OneShotMutableOP(
    {"conv": dict(type="DartsSepConv", in_channels=4, out_channels=4), "id": dict(type="Identity")}
  )
  assert isinstance(op.candidates["conv"], nn.Module) and isinstance(op.candidates["id"], nn.Module)
  variables = op.init(key, X, None)

  def no_build(*args, **kwargs):
    raise AssertionError("the registry was consulted inside apply")

  monkeypatch.setattr(registry, "build", no_build)
  monkeypatch.setattr(registry.Registry, "build", no_build)
  run = jax.jit(lambda i: op.apply(variables, X, {"": i})) if traced else (lambda i: op.apply(variables, X, {"": i}))
  for index in (0, 1):
    assert run(index).shape == X.shape
