"""The command line: config resolution, overrides, outputs."""

import json
import pathlib

import numpy as np
import pytest
import yaml

import jaxmutate as jm
from jaxmutate import cli
from jaxmutate.data import iterate_batches, load_digits


def test_resolve_packaged_config():
  assert cli.resolve_config("configs/spos_digits.py").name == "spos_digits.py"
  with pytest.raises(FileNotFoundError, match="spos_digits.py"):
    cli.resolve_config("configs/nope.py")


def test_search_writes_subnet_and_summary(tmp_path):
  config = tmp_path / "tiny.py"
  config.write_text(
    "model = dict(type='SPOS', architecture=dict(type='SearchableMLP', width=16, num_layers=2), mutator=dict(type='OneShotModuleMutator'))\n"
    "train_cfg = dict(epochs=1, batch_size=64)\n"
    "search_cfg = dict(max_epochs=1, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2, calibrate_sample_num=0)\n"
    "num_random_baseline = 3\n"
  )
  work_dir = tmp_path / "out"
  code = cli.main(
    [
      "search",
      str(config),
      "--work-dir",
      str(work_dir),
      "--seed",
      "3",
      "--no-progress",
      "--cfg-options",
      "search_cfg.top_k=3",
    ]
  )
  assert code == 0
  subnet = yaml.safe_load((work_dir / "best_fix_subnet.yaml").read_text())
  assert set(subnet) == {"layers.0", "layers.1"}
  assert all(entry["chosen"] in ("relu", "gelu", "tanh", "skip") for entry in subnet.values())
  summary = json.loads((work_dir / "summary.json").read_text())
  assert summary["seed"] == 3 and summary["wall_time_s"] > 0
  assert 0.0 <= summary["best_val_accuracy"] <= 1.0


def test_config_without_model(tmp_path):
  config = tmp_path / "bad.py"
  config.write_text("train_cfg = dict(epochs=1)\n")
  with pytest.raises(KeyError, match="model"):
    cli.main(["search", str(config), "--work-dir", str(tmp_path)])


def test_config_with_non_algorithm_model(tmp_path):
  config = tmp_path / "bad.py"
  config.write_text("model = dict(type='SearchableMLP')\n")
  with pytest.raises(TypeError, match="run"):
    cli.main(["search", str(config), "--work-dir", str(tmp_path)])


def test_digits_data():
  data = load_digits(seed=1)
  assert len(data.train) + len(data.val) + len(data.test) == 1797
  assert data.train.images.shape[1:] == (8, 8, 1) and data.train.images.max() <= 1.0
  again = load_digits(seed=1)
  assert (again.val.labels == data.val.labels).all()
  import jax

  batches = list(iterate_batches(jax.random.key(0), data.val, 100))
  assert len(batches) == len(data.val) // 100 and batches[0][0].shape == (100, 8, 8, 1)
  with pytest.raises(ValueError, match="val_fraction"):
    load_digits(val_fraction=0.9, test_fraction=0.2)
  with pytest.raises(ValueError, match="batch_size"):
    next(iterate_batches(jax.random.key(0), data.val, 0))


def _tiny_spos_config(path, data_line):
  path.write_text(
    "model = dict(type='SPOS', architecture=dict(type='SearchableMLP', width=8, num_layers=1, num_classes=3), "
    "mutator=dict(type='OneShotModuleMutator'))\n"
    "train_cfg = dict(epochs=1, batch_size=16)\n"
    "search_cfg = dict(max_epochs=1, num_candidates=2, top_k=1, num_mutation=1, num_crossover=1, calibrate_sample_num=0)\n"
    "num_random_baseline = 2\n" + data_line
  )
  return path


def test_search_runs_on_the_data_set_the_config_names(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "mine.npz", x=rng.uniform(size=(60, 4, 4, 1)).astype(np.float32), y=np.arange(60) % 3)
  config = _tiny_spos_config(
    tmp_path / "npz.py", f"data = dict(type='NpzDataset', path={str(tmp_path / 'mine.npz')!r}, val_fraction=0.2)\n"
  )
  assert cli.main(["search", str(config), "--work-dir", str(tmp_path / "out"), "--no-progress"]) == 0
  summary = json.loads((tmp_path / "out" / "summary.json").read_text())
  assert summary["chance_accuracy"] == pytest.approx(1 / 3)  # three classes: the npz file, not the digits


def test_a_misspelt_data_key_is_an_error_not_ignored(tmp_path):
  config = _tiny_spos_config(tmp_path / "bad_data.py", "data = dict(type='digits', val_fraktion=0.2)\n")
  with pytest.raises(jm.errors.ConfigError, match="val_fraktion"):
    cli.main(["search", str(config), "--work-dir", str(tmp_path / "out"), "--no-progress"])


PACKAGED_CONFIGS = sorted(p.name for p in (pathlib.Path(jm.__file__).parent / "configs").glob("*.py"))


@pytest.mark.parametrize("name", PACKAGED_CONFIGS)
def test_check_validates_every_packaged_config(name, capsys):
  assert cli.main(["check", f"configs/{name}"]) == 0
  out = capsys.readouterr().out
  assert out.rstrip().endswith("config.") and '"model"' in out


def test_check_names_misspelt_and_unsupported_keys(capsys):
  with pytest.raises(jm.errors.ConfigKeyError, match="did you mean 'top_k'"):
    cli.main(["check", "configs/spos_digits.py", "--cfg-options", "search_cfg.topk=3"])
  with pytest.raises(jm.errors.ConfigError, match="EvolutionSearchLoop"):
    cli.main(["check", "configs/spos_digits.py", "--cfg-options", "search_cfg.type=AutoSlimGreedySearchLoop"])
  with pytest.raises(jm.errors.ConfigError, match="score_key"):
    cli.main(["check", "configs/spos_digits.py", "--cfg-options", "search_cfg.score_key=loss"])
  with pytest.raises(jm.errors.ConfigKeyError, match="fast_compile"):
    cli.main(["check", "configs/darts_digits.py", "--cfg-options", "train_cfg.fast_compil=True"])
  with pytest.raises(jm.errors.ConfigKeyError, match="num_random_baseline"):
    cli.main(["check", "configs/spos_digits.py", "--cfg-options", "num_random_baselines=3"])
