"""The command line: config resolution, overrides, outputs."""

import json

import pytest
import yaml

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
