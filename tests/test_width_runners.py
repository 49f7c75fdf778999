"""The width-search runners end to end on a tiny space: AutoSlim and slimmable training, files, errors."""

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

import jaxmutate as jm
from jaxmutate.cli import run_search
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError

TINY = dict(
  type="SearchableMobileNetV2",
  num_classes=10,
  arch_setting=((1, 8, 1, 1), (2, 16, 1, 2)),
  stem_channels=8,
  last_channels=16,
  candidate_choices=[0.5, 1.0],  # a list, as config files give: the model must stay hashable
  divisor=4,
  max_buckets=1,
  depthwise_implementation="xla",
)
TRAIN = dict(epochs=1, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9))


def write_config(path, body):
  path.write_text(textwrap.dedent(body))
  return path


@pytest.fixture(scope="module")
def autoslim_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("autoslim")
  config = write_config(
    folder / "autoslim_tiny.py",
    f"""
    model = dict(type="AutoSlim", architecture={TINY!r}, mutator=dict(type="OneShotChannelMutator"), num_random_samples=1)
    data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)
    train_cfg = {TRAIN!r}
    search_cfg = dict(type="AutoSlimGreedySearchLoop", target_flops=(0.7, 0.4), relative=True)
    calibrate_sample_num = 128
    """,
  )
  work_dir = folder / "out"
  summary = run_search(config, work_dir, seed=0, cfg_options=[], progress=False)
  return work_dir, summary


@pytest.mark.slow
def test_autoslim_finds_exports_and_reports_each_target(autoslim_run):
  work_dir, summary = autoslim_run
  assert summary["algorithm"] == "AutoSlim" and len(summary["subnets"]) == 2
  first, second = summary["subnets"]
  assert (
    first["mflops"] <= 0.7 * summary["max_mflops"] + 1e-6 and second["mflops"] <= 0.4 * summary["max_mflops"] + 1e-6
  )
  assert second["mflops"] < first["mflops"] and second["params"] < first["params"]
  path = [p["mflops"] for p in summary["slimming_path"]]
  assert path[0] == pytest.approx(summary["max_mflops"]) and all(b < a for a, b in zip(path, path[1:]))
  # Every found subnet is compared with a uniformly width-scaled network of at most its cost.
  for subnet in summary["subnets"]:
    assert subnet["uniform_width"]["mflops"] <= subnet["mflops"] + 1e-6
    assert 0.0 <= subnet["test_accuracy"] <= 1.0
    assert (work_dir / subnet["subnet_file"]).is_file() and (work_dir / subnet["weights_file"]).is_file()
  assert yaml.safe_load((work_dir / "best_fix_subnet.yaml").read_text()) == first["fix_subnet"]
  assert json.loads((work_dir / "summary.json").read_text())["best_mflops"] == pytest.approx(first["mflops"])
  assert (work_dir / "pareto.png").is_file()


@pytest.mark.slow
def test_exported_subnet_reloads_in_a_fresh_process(autoslim_run):
  work_dir, summary = autoslim_run
  weights = work_dir / summary["subnets"][1]["weights_file"]
  script = textwrap.dedent(
    f"""
    import jax, jax.numpy as jnp, numpy as np
    import jaxmutate as jm
    model, variables = jm.load_subnet({str(weights)!r})
    data = jm.build_dataset(dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2))
    logits = jax.jit(lambda x: model.apply(variables, x))(jnp.asarray(data.test.images))
    count = sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"]))
    print(count, float((logits.argmax(-1) == data.test.labels).mean()))
    """
  )
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
  count, accuracy = out.stdout.split()
  assert int(count) == summary["subnets"][1]["params"]
  # The exported weights carry the statistics the subnet was rated with: the same test accuracy.
  assert float(accuracy) == pytest.approx(summary["subnets"][1]["test_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_slimmable_network_rates_and_exports_every_subnet(tmp_path):
  arch = dict(TINY, unit_type="SlimmableChannelUnit")
  config = write_config(
    tmp_path / "slim_tiny.py",
    f"""
    model = dict(type="SlimmableNetwork", architecture={arch!r}, mutator=dict(type="SlimmableChannelMutator"))
    data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)
    train_cfg = {TRAIN!r}
    calibrate_sample_num = 0
    """,
  )
  summary = run_search(config, tmp_path / "out", seed=0, cfg_options=[], progress=False)
  costs = [s["mflops"] for s in summary["subnets"]]
  assert len(costs) == 2 and costs[0] < costs[1] and summary["best_mflops"] == costs[1]
  assert all((tmp_path / "out" / s["weights_file"]).is_file() for s in summary["subnets"])


def test_width_runner_config_errors(tmp_path):
  autoslim = jm.build(dict(type="AutoSlim", architecture=TINY, mutator=dict(type="OneShotChannelMutator")))
  base = {"model": {}, "train_cfg": dict(TRAIN, epochs=0)}
  with pytest.raises(ConfigKeyError, match="did you mean 'train_cfg'"):
    autoslim.run({**base, "trian_cfg": {}}, tmp_path, 0, progress=False)
  with pytest.raises(ConfigKeyError, match="epochs"):
    autoslim.run({**base, "train_cfg": dict(TRAIN, epoch=1)}, tmp_path, 0, progress=False)
  with pytest.raises(ConfigError, match="AutoSlimGreedySearchLoop"):
    autoslim.run({**base, "search_cfg": dict(type="EvolutionSearchLoop")}, tmp_path, 0, progress=False)
  with pytest.raises(ConfigError, match="score_key"):
    autoslim.run({**base, "search_cfg": dict(score_key="top5")}, tmp_path, 0, progress=False)
  with pytest.raises(ConfigError, match="num_random_samples"):
    jm.build(
      dict(type="AutoSlim", architecture=TINY, mutator=dict(type="OneShotChannelMutator"), num_random_samples=-1)
    )
  with pytest.raises(ConfigTypeError, match="flax.linen.Module"):
    jm.AutoSlim(architecture=dict(type="OneShotChannelMutator"), mutator=jm.OneShotChannelMutator())
  slimmable = jm.build(dict(type="SlimmableNetwork", architecture=TINY, mutator=dict(type="SlimmableChannelMutator")))
  with pytest.raises(ConfigError, match="no search_cfg"):
    slimmable.run({**base, "search_cfg": dict(target_flops=(0.5,))}, tmp_path, 0, progress=False)


@pytest.mark.slow
def test_uniform_width_networks_follow_a_common_ratio(autoslim_run):
  _, summary = autoslim_run
  ratios = [sorted({entry["chosen"] for entry in u["fix_subnet"].values()}) for u in summary["uniform_width_networks"]]
  assert ratios == [[0.5], [1.0]]
