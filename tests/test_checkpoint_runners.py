"""Checkpoint and resume of the DARTS, DSNAS and Prune runners: killed in process right after a save, resumed.

A run "dies" by an exception raised right after the k-th checkpoint is written
(what a kill between two saves leaves on disk), is resumed (and killed again
in a later phase), then resumed to the end: its ``summary.json`` and files must
be those of a run never interrupted. SIGKILL itself is tested once, for the
mechanism, in ``tests/test_checkpoint.py``.
"""

from __future__ import annotations

import json

import pytest

import jaxmutate as jm
from jaxmutate import cli, errors
from jaxmutate.runners.checkpoint import Checkpointer

# Timings, where the run's checkpoints are and which step each phase resumed from, and the compile cache vary.
VARYING = ("timings", "timings_s", "wall_time_s", "checkpoints", "compilation_cache")


class Killed(Exception):
  """The process "dies" here."""


def kill_after_saves(monkeypatch, count):
  """From now on the ``count``-th checkpoint written raises :class:`Killed` right after it is on disk."""
  save = Checkpointer.save
  written = []

  def dying(self, step, state, meta):
    done = save(self, step, state, meta)
    written.append(done)
    if sum(written) == count:
      raise Killed(f"killed after saving {self.directory.name}/{step}")
    return done

  monkeypatch.setattr(Checkpointer, "save", dying)


def comparable(summary):
  summary = {k: v for k, v in summary.items() if k not in VARYING}
  if "pruned" in summary:  # a latency ratio is a timing
    summary["pruned"] = {k: v for k, v in summary["pruned"].items() if k != "latency_ratio"}
  return summary


def outputs(work_dir):
  """Every file the run wrote but its checkpoints, by name."""
  return {p.name: p.read_bytes() for p in work_dir.iterdir() if p.is_file()}


def run_killed(monkeypatch, run, kills, work_dir):
  """``run(work_dir, resume)`` killed after ``kills[0]`` saves, resumed and killed after ``kills[1]`` more (and so
  on), then resumed to the end."""
  for count, resume in zip(kills, (False, *[True] * len(kills))):
    with monkeypatch.context() as patch:
      kill_after_saves(patch, count)
      with pytest.raises(Killed):
        run(work_dir, resume)
  return run(work_dir, True)


DARTS_CONFIG = """
model = dict(
  type='DARTS',
  architecture=dict(type='DartsBackbone', base_channels=2, num_layers=1, num_nodes=1, stem_multiplier=1,
                    num_classes=10, op_names=['zero', 'skip_connect', 'max_pool_3x3']),
  mutator=dict(type='DiffModuleMutator'))
data = dict(seed=0, val_fraction=0.6, test_fraction=0.2)
train_cfg = dict(epochs=2, batch_size=128)
retrain_cfg = dict(epochs=1, batch_size=128)
checkpoint = dict(every_n_steps=1, keep=2)
"""


@pytest.mark.slow
def test_darts_killed_in_the_search_and_in_the_retrain_resumes_through_the_cli(tmp_path, monkeypatch):
  """Every run goes through ``jaxmutate search [--resume]`` (``cli.main``), in process."""
  config = tmp_path / "darts_tiny.py"
  config.write_text(DARTS_CONFIG)

  def search(work_dir, resume, *options):
    command = ["search", str(config), "--work-dir", str(work_dir), "--no-progress", "--no-compile-cache"]
    assert cli.main(command + ["--resume"] * resume + (["--cfg-options", *options] if options else [])) == 0
    return json.loads((work_dir / "summary.json").read_text())

  whole = search(tmp_path / "whole", False)
  assert whole["steps"] == 4  # 2 epochs of 2 steps: saves at search steps 1..4, then retrain steps 1, 2
  # Killed after search step 2 (the end of epoch 0), then, resumed, after the first retrain step.
  resumed = run_killed(monkeypatch, search, (2, 3), tmp_path / "killed")
  assert resumed["checkpoints"]["resumed_from"] == {"search": 4, "retrain": 1}
  assert comparable(resumed) == comparable(whole)
  files, whole_files = outputs(tmp_path / "killed"), outputs(tmp_path / "whole")
  assert files.keys() == whole_files.keys() >= {"arch_weights.json", "arch_weights.png", "best_fix_subnet.yaml"}
  for name in sorted(whole_files.keys() - {"summary.json"}):
    assert files[name] == whole_files[name], name

  # Without --resume a work dir that holds checkpoints is refused before any work (the other errors: see Prune's).
  with pytest.raises(errors.CheckpointExistsError, match="--resume"):
    search(tmp_path / "killed", False)


DSNAS = dict(
  type="DSNAS",
  architecture=dict(
    type="DartsBackbone",
    base_channels=2,
    num_layers=1,
    num_nodes=1,
    num_classes=10,
    op_names=("zero", "skip_connect", "max_pool_3x3"),
    mutable_cfg=dict(type="OneHotMutableOP"),
  ),
  pretrain_epochs=1,
  finetune_epochs=2,
)


@pytest.mark.slow
def test_dsnas_killed_in_the_finetune_resumes_with_the_same_bits(tmp_path, monkeypatch):
  config = {
    "model": DSNAS,
    "data": dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2),
    "train_cfg": dict(epochs=3, batch_size=256),
    "checkpoint": dict(every_n_steps=3, keep=2),
  }

  def run(work_dir, resume):
    return jm.build(DSNAS).run(config, work_dir, seed=0, progress=False, resume=resume)

  whole = run(tmp_path / "whole", False)
  assert whole.summary["steps"] == 12 and whole.summary["finetuned"]  # 4 steps an epoch: saves at 3, 6, 9, 12
  # Killed at step 9, finetuning: the resumed run derives the fixed subnet again from the saved logits.
  resumed = run_killed(monkeypatch, run, (3,), tmp_path / "killed")
  assert resumed.summary["checkpoints"]["resumed_from"] == {"dsnas": 9}
  assert comparable(resumed.summary) == comparable(whole.summary)
  assert resumed.fix_subnet == whole.fix_subnet
  assert outputs(tmp_path / "killed") == outputs(tmp_path / "whole")
  stages = [e.get("stage") for e in json.loads((tmp_path / "killed" / "arch_weights.json").read_text())["history"]]
  assert stages == [None, "pretrain", "search", "finetune"]


PRUNE = dict(
  type="Prune",
  architecture=dict(type="PlainCNN", features=(4, 8), strides=(1, 2)),
  criterion="taylor",
  schedule=dict(type="ItePrune", prune_times=3),
  target_flops=0.5,
)


@pytest.mark.slow
def test_prune_killed_while_pruning_resumes_with_the_same_bits(tmp_path, monkeypatch):
  phase = dict(epochs=1, batch_size=128)
  config = {
    "model": PRUNE,
    "data": dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2),
    "train_cfg": phase,
    "prune_cfg": phase,
    "finetune_cfg": phase,
    "checkpoint": dict(every_n_steps=3, keep=2),
  }

  def run(work_dir, resume):
    return jm.build(PRUNE).run(config, work_dir, seed=0, progress=False, resume=resume)

  whole = run(tmp_path / "whole", False)
  # 8 steps a phase, saves at 3, 6, 8 each; prunings at steps 0, 2, 4 with the Taylor importance accumulated since.
  assert [p["step"] for p in whole.summary["pruning_path"]] == [0, 1, 3, 5]
  # Killed at pruning step 3: masks pruned twice, the importance of one batch accumulated since.
  resumed = run_killed(monkeypatch, run, (4,), tmp_path / "killed")
  assert resumed.summary["checkpoints"]["resumed_from"] == {"train": 8, "prune": 3, "finetune": None}
  assert comparable(resumed.summary) == comparable(whole.summary)
  assert resumed.fix_subnet == whole.fix_subnet
  assert outputs(tmp_path / "killed") == outputs(tmp_path / "whole")
  assert "pruned.msgpack" in outputs(tmp_path / "whole")

  # The errors the checkpoints promise, never a silent fresh start: another seed, another config, a damaged one.
  with pytest.raises(errors.CheckpointExistsError, match="--resume"):
    run(tmp_path / "killed", False)
  with pytest.raises(errors.CheckpointMismatchError, match="another config"):
    jm.build(PRUNE).run(config, tmp_path / "killed", seed=1, progress=False, resume=True)
  with pytest.raises(errors.CheckpointMismatchError, match="another config"):
    jm.build(PRUNE).run(
      {**config, "train_cfg": dict(epochs=2, batch_size=128)}, tmp_path / "killed", seed=0, progress=False, resume=True
    )
  newest = max((tmp_path / "killed" / "checkpoints" / "train").iterdir(), key=lambda p: int(p.name))
  for path in newest.rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
  with pytest.raises(errors.CheckpointCorruptError, match="partial or damaged|SHA-256"):
    run(tmp_path / "killed", True)
