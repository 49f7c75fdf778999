"""`jaxmutate search CONFIG --cfg-options data.path=FILE ...` runs every algorithm on the user's own npz file.

Each config names a placeholder file; the command line points it at a tiny npz made here (60 images of
6x6x2, 3 classes: not the digits' 8x8x1 and 10 classes) and shrinks the run. The checks show the run used
that file: the chance level is 1/3, the backbones built for 3 classes run (DARTS checks its logits against
the data's classes), and the exported networks take 2-channel images.
"""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate import cli

NUM_CLASSES, SHAPE = 3, (6, 6, 2)

# Tiny versions of each algorithm's config; the data entry is a placeholder the command line replaces.
CONFIGS = {
  "spos": """
    model = dict(type="SPOS", architecture=dict(type="SearchableMLP", width=8, num_layers=1, num_classes=3),
                 mutator=dict(type="OneShotModuleMutator"))
    data = dict(type="NpzDataset", path="replace_me.npz", val_fraction=0.2, test_fraction=0.2)
    train_cfg = dict(epochs=20, batch_size=64)
    search_cfg = dict(type="EvolutionSearchLoop", max_epochs=5, num_candidates=20, top_k=5, num_mutation=5,
                      num_crossover=5, calibrate_sample_num=0)
    num_random_baseline = 2
    """,
  "darts": """
    model = dict(type="DARTS", mutator=dict(type="DiffModuleMutator"), unroll=False,
                 architecture=dict(type="DartsBackbone", base_channels=2, num_layers=1, num_nodes=1, stem_multiplier=1,
                                   num_classes=3, op_names=("skip_connect", "avg_pool_3x3")))
    data = dict(type="NpzDataset", path="replace_me.npz", val_fraction=0.25, test_fraction=0.2)
    train_cfg = dict(epochs=20, batch_size=64)
    retrain_cfg = dict(epochs=0)
    """,
  "autoslim": """
    model = dict(type="AutoSlim", num_random_samples=0, mutator=dict(type="OneShotChannelMutator"),
                 architecture=dict(type="SearchableMobileNetV2", num_classes=3, arch_setting=((1, 8, 1, 1),),
                                   stem_channels=8, last_channels=16, candidate_choices=(0.5, 1.0), divisor=4))
    data = dict(type="NpzDataset", path="replace_me.npz", val_fraction=0.2, test_fraction=0.2)
    train_cfg = dict(epochs=20, batch_size=64)
    search_cfg = dict(type="AutoSlimGreedySearchLoop", target_flops=(0.6,), relative=True)
    calibrate_sample_num = 0
    """,
  "slimmable": """
    model = dict(type="SlimmableNetwork", mutator=dict(type="SlimmableChannelMutator"),
                 architecture=dict(type="SearchableMobileNetV2", num_classes=3, arch_setting=((1, 8, 1, 1),),
                                   stem_channels=8, last_channels=16, unit_type="SlimmableChannelUnit",
                                   candidate_choices=(0.5, 1.0), divisor=4))
    data = dict(type="NpzDataset", path="replace_me.npz", val_fraction=0.2, test_fraction=0.2)
    train_cfg = dict(epochs=20, batch_size=64)
    calibrate_sample_num = 0
    """,
}

# What the command line shrinks (the configs' own figures are for a real run).
SHRINK = {
  "spos": ["train_cfg.epochs=1", "train_cfg.batch_size=16", "search_cfg.max_epochs=1", "search_cfg.num_candidates=2",
           "search_cfg.top_k=1", "search_cfg.num_mutation=1", "search_cfg.num_crossover=1"],
  "darts": ["train_cfg.epochs=1", "train_cfg.batch_size=8"],
  "autoslim": ["train_cfg.epochs=1", "train_cfg.batch_size=16"],
  "slimmable": ["train_cfg.epochs=1", "train_cfg.batch_size=16"],
}  # fmt: skip


@pytest.fixture(scope="module")
def user_npz(tmp_path_factory):
  rng = np.random.default_rng(0)
  labels = np.arange(60) % NUM_CLASSES
  # Images a classifier can learn a little from: the class shifts the mean.
  images = (rng.uniform(0, 200, size=(60, *SHAPE)) + 20 * labels[:, None, None, None]).astype(np.uint8)
  path = tmp_path_factory.mktemp("data") / "my_images.npz"
  np.savez(path, x=images, y=labels)
  return path


def _run(name, tmp_path, npz):
  config = tmp_path / f"{name}_tiny.py"
  config.write_text(textwrap.dedent(CONFIGS[name]))
  work_dir = tmp_path / "out"
  options = [f"data.path={npz}", *SHRINK[name]]
  assert cli.main(["search", str(config), "--work-dir", str(work_dir), "--no-progress", "--cfg-options", *options]) == 0
  return work_dir, json.loads((work_dir / "summary.json").read_text())


@pytest.mark.slow
def test_spos_runs_on_the_user_npz(tmp_path, user_npz):
  work_dir, summary = _run("spos", tmp_path, user_npz)
  assert summary["chance_accuracy"] == pytest.approx(1 / NUM_CLASSES)
  assert 0.0 <= summary["best_val_accuracy"] <= 1.0
  assert jm.read_fix_subnet(work_dir / "best_fix_subnet.yaml")


@pytest.mark.slow
def test_darts_runs_on_the_user_npz(tmp_path, user_npz):
  # The backbone outputs 3 logits; DARTS checks them against the data's classes, so the run used the file.
  # (GDAS configs run through the same runner and data path.)
  work_dir, summary = _run("darts", tmp_path, user_npz)
  assert summary["gumbel"] is False
  assert 0.0 <= summary["supernet_val_accuracy"] <= 1.0
  fix_subnet = jm.read_fix_subnet(work_dir / "best_fix_subnet.yaml")
  assert set(fix_subnet) == {"reduce_n2", "reduce_n2_p0", "reduce_n2_p1"}


def _stem_input_channels(static_variables):
  flat = jax.tree_util.tree_flatten_with_path(static_variables["params"])[0]
  kernels = [leaf for path, leaf in flat if "stem" in jax.tree_util.keystr(path) and leaf.ndim == 4]
  return kernels[0].shape[-2] if kernels else None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["autoslim", "slimmable"])
def test_width_searches_run_on_the_user_npz(tmp_path, user_npz, name):
  work_dir, summary = _run(name, tmp_path, user_npz)
  assert summary["chance_accuracy"] == pytest.approx(1 / NUM_CLASSES)
  exported = summary["subnets"][0]["weights_file"]
  static_model, static_variables = jm.load_subnet(work_dir / exported)
  assert _stem_input_channels(static_variables) == SHAPE[-1]  # the exported network takes the file's images
  logits = static_model.apply(static_variables, jnp.zeros((1, *SHAPE)))
  assert logits.shape == (1, NUM_CLASSES)
