"""Shared test settings: strict rank promotion, a PRNG key fixture, a compile log."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

# The suite compiles thousands of small programs whose run time is negligible:
# LLVM's optimisation passes are most of XLA:CPU's compile time for them, so the
# tests (and the processes they start, which inherit the variable) compile with
# LLVM at its lowest level that still vectorises (backend level 1), about twice
# as fast on 2 cores. Level 0 compiles a little faster still but runs a small
# CNN's train step 60-90x slower (0.3-0.4 s instead of 5 ms), which costs the
# tests that train (notebooks, runners) more than it saves. Results are the
# same programs' (HLO passes still run). JAXMUTATE_TEST_BACKEND_LEVEL=N picks
# another level; JAXMUTATE_TEST_FULL_OPTIMIZATION=1 keeps XLA's default.
if os.environ.get("JAXMUTATE_TEST_FULL_OPTIMIZATION") != "1":
  _LEVEL = os.environ.get("JAXMUTATE_TEST_BACKEND_LEVEL", "1")
  _FAST_COMPILE = f"--xla_backend_optimization_level={_LEVEL} --xla_llvm_disable_expensive_passes=true"
  if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import jax  # noqa: E402  (after XLA_FLAGS: XLA reads them when it starts)
import pytest  # noqa: E402

import jaxmutate as jm  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# One compilation cache per test run, shared by the xdist workers (they inherit
# the controller's environment) and by the subprocesses and CLI runs of the
# tests: many tests compile the same small programs. It starts empty, so every
# run still compiles everything once, and it never touches the user's cache.
# Tests of the cache set their own directory; `_session_compilation_cache`
# switches back after them. JAXMUTATE_TEST_COMPILATION_CACHE=off runs without.
_OWN_CACHE = "JAXMUTATE_TEST_COMPILATION_CACHE" not in os.environ
if _OWN_CACHE:
  os.environ["JAXMUTATE_TEST_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxmutate-test-xla-")
SESSION_CACHE = os.environ["JAXMUTATE_TEST_COMPILATION_CACHE"]
if SESSION_CACHE.lower() != "off":
  jm.runtime.enable_compilation_cache(SESSION_CACHE)
os.environ["JAXMUTATE_COMPILATION_CACHE"] = SESSION_CACHE


@pytest.fixture(autouse=True)
def _session_compilation_cache():
  yield
  os.environ["JAXMUTATE_COMPILATION_CACHE"] = SESSION_CACHE
  if SESSION_CACHE.lower() == "off":
    if jax.config.jax_compilation_cache_dir is not None:
      jm.runtime.disable_compilation_cache()
  elif jax.config.jax_compilation_cache_dir != SESSION_CACHE:
    jm.runtime.enable_compilation_cache(SESSION_CACHE)


def pytest_unconfigure(config):
  # Only the process that made the directory removes it (the xdist controller, or a plain run).
  if _OWN_CACHE and not hasattr(config, "workerinput"):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


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
