"""Shared test settings: strict rank promotion, a PRNG key fixture, a compile log."""

from __future__ import annotations

import logging
import os
import re

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# In-process CLI runs must not write to the user's cache; tests of the cache set their own directory.
os.environ.setdefault("JAXMUTATE_COMPILATION_CACHE", "off")


@pytest.fixture
def key() -> jax.Array:
  return jax.random.key(0)


class CompileLog:
  """Records which jitted functions XLA compiles inside a ``with`` block (via ``jax.log_compiles``).

  Attributes:
    names: the name of every function compiled, in order (``"<lambda>"``, ``"step"``...).
  """

  _pattern = re.compile(r"Finished XLA compilation of (?:jit|pjit)\((.*)\) in")

  def __init__(self) -> None:
    self.names: list[str] = []
    self._handler = logging.Handler()
    self._handler.emit = self._record  # type: ignore[method-assign]
    self._logger = logging.getLogger("jax")

  def _record(self, record: logging.LogRecord) -> None:
    match = self._pattern.search(record.getMessage())
    if match:
      self.names.append(match.group(1))

  def __enter__(self) -> CompileLog:
    self._logger.addHandler(self._handler)
    self._context = jax.log_compiles(True)
    self._context.__enter__()
    return self

  def __exit__(self, *exc: object) -> None:
    self._context.__exit__(*exc)
    self._logger.removeHandler(self._handler)


@pytest.fixture
def compile_log() -> type[CompileLog]:
  """``with compile_log() as log: ...`` then ``log.names`` lists what was compiled."""
  return CompileLog
