"""Shared test settings: strict rank promotion, a PRNG key fixture, a tiny supernet."""

import os

# Several CPU devices let population tests shard on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
  return jax.random.key(0)
