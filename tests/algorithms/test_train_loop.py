"""The runners' one training loop: the key schedules, the log, and the runners that use it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmutate.data import Split, iterate_batches
from jaxmutate.runners import train_loop

SPLIT = Split(np.arange(40, dtype=np.float32).reshape(20, 2), np.arange(20, dtype=np.int32) % 3)


def recording_step(seen):
  """A step that records the keys and images it is given and reports two metrics."""

  def step(state, images, labels, key):
    seen.append((np.asarray(jax.random.key_data(key)), np.asarray(images)))
    return state + 1, {"loss": jnp.float32(images.sum()), "accuracy": jnp.float32(labels.mean())}

  return step


def test_split_keys_chain_as_spos_training_did():
  seen = []
  state, log = train_loop(recording_step(seen), 0, SPLIT, 2, 8, jax.random.key(3))
  expected, key = [], jax.random.key(3)
  for _ in range(2):
    key, shuffle_key = jax.random.split(key)
    for images, _ in iterate_batches(shuffle_key, SPLIT, 8):
      key, step_key = jax.random.split(key)
      expected.append((np.asarray(jax.random.key_data(step_key)), images))
  assert state == len(expected) == 4
  for (key_got, images_got), (key_want, images_want) in zip(seen, expected):
    np.testing.assert_array_equal(key_got, key_want)
    np.testing.assert_array_equal(images_got, images_want)
  assert [list(entry) for entry in log] == [["epoch", "loss", "accuracy"]] * 2
  assert log[0]["loss"] == pytest.approx(np.mean([images.sum() for _, images in seen[:2]]))


def test_fold_in_keys_shuffle_each_epoch_from_the_key_as_darts_retraining_did():
  seen = []
  train_loop(recording_step(seen), 0, SPLIT, 3, 8, jax.random.key(5), keys="fold_in")
  expected = [
    images
    for epoch in range(3)
    for images, _ in iterate_batches(jax.random.fold_in(jax.random.key(5), epoch), SPLIT, 8)
  ]
  assert len(seen) == len(expected) == 6
  for (_, images_got), images_want in zip(seen, expected):
    np.testing.assert_array_equal(images_got, images_want)
  assert len({tuple(key.ravel()) for key, _ in seen}) == 6  # every step its own key


def test_logged_metrics_keep_the_order_asked_for():
  jitted = jax.jit(lambda state, images, labels, key: (state, {"loss": images.sum(), "accuracy": labels.mean()}))
  _, log = train_loop(jitted, 0, SPLIT, 1, 8, jax.random.key(0))
  assert list(log[0]) == ["epoch", "accuracy", "loss"]  # jit returns a dict's keys sorted
  _, log = train_loop(jitted, 0, SPLIT, 1, 8, jax.random.key(0), metrics=("loss", "accuracy"))
  assert list(log[0]) == ["epoch", "loss", "accuracy"]
  _, log = train_loop(recording_step([]), 0, SPLIT, 1, 8, jax.random.key(0), metrics=("loss",))
  assert list(log[0]) == ["epoch", "loss"]


def test_zero_epochs_and_bad_key_schedule():
  assert train_loop(recording_step([]), 7, SPLIT, 0, 8, jax.random.key(0)) == (7, [])
  with pytest.raises(ValueError, match="'split' or 'fold_in'"):
    train_loop(recording_step([]), 0, SPLIT, 1, 8, jax.random.key(0), keys="chain")


def test_progress_bar_runs(capsys):
  state, log = train_loop(recording_step([]), 0, SPLIT, 1, 8, jax.random.key(0), progress=True, desc="train test")
  assert state == 2 and len(log) == 1
  assert "train test" in capsys.readouterr().err
