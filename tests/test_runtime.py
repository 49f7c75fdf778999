"""Process settings: the glibc allocator and the persistent compilation cache, in the CLI and by hand."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

import jaxmutate as jm
from jaxmutate import cli
from jaxmutate.errors import ConfigTypeError

TINY_CONFIG = (
  "model = dict(type='SPOS', architecture=dict(type='SearchableMLP', width=8, num_layers=2), "
  "mutator=dict(type='OneShotModuleMutator'))\n"
  "train_cfg = dict(epochs=1, batch_size=64)\n"
  "search_cfg = dict(max_epochs=1, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2, calibrate_sample_num=0)\n"
  "num_random_baseline = 3\n"
)


def run_python(code: str, env: dict[str, str]) -> str:
  result = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env}, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr
  return result.stdout


def run_cli(args: list[str], env: dict[str, str]) -> None:
  run_python(f"import sys; from jaxmutate import cli; sys.exit(cli.main({args!r}))", env)


@pytest.mark.slow
def test_a_second_cli_run_compiles_nothing(tmp_path):
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG)
  env = {"JAXMUTATE_COMPILATION_CACHE": str(tmp_path / "cache")}
  summaries = []
  for run in ("first", "second"):
    run_cli(["search", str(config), "--work-dir", str(tmp_path / run), "--no-progress"], env)
    summaries.append(json.loads((tmp_path / run / "summary.json").read_text()))
  first, second = (s["compilation_cache"] for s in summaries)
  assert first["dir"] == str(tmp_path / "cache")
  assert first["misses"] > 0
  assert second["misses"] == 0 and second["hits"] >= first["misses"]
  # Same seed, same programs: the cached run finds the same subnet.
  assert summaries[0]["best_val_accuracy"] == summaries[1]["best_val_accuracy"]


def test_cache_can_be_turned_off(tmp_path, monkeypatch):
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG.replace("train_cfg = dict(epochs=1", "train_cfg = dict(epochs=0"))
  monkeypatch.setenv("JAXMUTATE_COMPILATION_CACHE", str(tmp_path / "unused"))
  cli.main(["search", str(config), "--work-dir", str(tmp_path / "a"), "--no-progress", "--no-compile-cache"])
  assert json.loads((tmp_path / "a" / "summary.json").read_text())["compilation_cache"] is None
  monkeypatch.setenv("JAXMUTATE_COMPILATION_CACHE", "off")
  cli.main(["search", str(config), "--work-dir", str(tmp_path / "b"), "--no-progress"])
  assert json.loads((tmp_path / "b" / "summary.json").read_text())["compilation_cache"] is None
  assert not (tmp_path / "unused").exists()


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXMUTATE_COMPILATION_CACHE", str(tmp_path / "mine"))
  assert jm.runtime.default_cache_dir() == tmp_path / "mine"
  monkeypatch.setenv("JAXMUTATE_COMPILATION_CACHE", "off")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert jm.runtime.default_cache_dir() == tmp_path / "jaxmutate" / "xla"
  assert jm.runtime.enable_compilation_cache() is None


def test_cache_size_must_be_an_int(tmp_path):
  with pytest.raises(ConfigTypeError, match="max_size_bytes"):
    jm.runtime.enable_compilation_cache(tmp_path, max_size_bytes="2G")


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
PROBE = """
import jaxmutate as jm
print(jm.runtime.configure_allocator(), jm.runtime.configure_allocator())
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_allocator_is_configured_once_unless_told_not_to():
  assert run_python(PROBE, {"JAXMUTATE_ALLOCATOR": ""}).split() == ["True", "True"]
  assert run_python(PROBE, {"JAXMUTATE_ALLOCATOR": "default"}).split() == ["False", "False"]
  bad = subprocess.run(
    [sys.executable, "-c", PROBE], env={**os.environ, "JAXMUTATE_ALLOCATOR": "fast"}, capture_output=True, text=True
  )
  assert bad.returncode != 0 and "ConfigError" in bad.stderr and "'fast'" in bad.stderr
  tunables = "glibc.malloc.arena_max=1"
  assert run_python(PROBE, {"JAXMUTATE_ALLOCATOR": "", "GLIBC_TUNABLES": tunables}).split() == ["False", "False"]


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_configured_allocator_stops_per_step_page_faults():
  # The gradient of a conv at batch 512 needs ~400 MB of temporaries per call: glibc's default maps and unmaps
  # them every time, so every call faults their pages in again; a tuned heap keeps them.
  code = """
  import resource, sys
  import jaxmutate as jm
  if sys.argv[-1] == "tuned":
    jm.runtime.configure_allocator()
  import jax, jax.numpy as jnp
  def loss(w, x):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.tanh(y).sum()
  f = jax.jit(jax.grad(loss))
  x, w = jnp.ones((512, 32, 32, 32)), jnp.full((3, 3, 32, 32), 0.01)
  for _ in range(3):
    f(w, x).block_until_ready()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(5):
    f(w, x).block_until_ready()
  print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
  """
  faults = {}
  for mode in ("default", "tuned"):
    result = subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code), mode],
      env={**os.environ, "JAXMUTATE_ALLOCATOR": ""},
      capture_output=True,
      text=True,
    )
    assert result.returncode == 0, result.stderr
    faults[mode] = float(result.stdout.split()[-1])
  # Tuned, some runs still fault one of the buffers in again (so do runs under GLIBC_TUNABLES): not all.
  assert faults["tuned"] < faults["default"] / 2, faults
