"""The embedded default data set: the UCI/scikit-learn handwritten digits.

1,797 grey 8×8 images of the digits 0–9 (scikit-learn's ``load_digits``, BSD
licensed, from the UCI ML repository), committed as ``jaxmutate/digits.npz``
(45 KB) so nothing is downloaded and scikit-learn is not needed. Images come
as NHWC float32 in [0, 1].

Example:
  >>> from jaxmutate.data import load_digits
  >>> splits = load_digits(seed=0)
  >>> splits.train.images.shape[1:], splits.num_classes
  ((8, 8, 1), 10)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxmutate._typing import PRNGKey


class Split(NamedTuple):
  """One split of a data set."""

  images: np.ndarray  # float32 [n, h, w, c]
  labels: np.ndarray  # int32 [n]

  def __len__(self) -> int:
    return int(self.labels.shape[0])


class Dataset(NamedTuple):
  """Train / validation / test splits of an image classification set."""

  train: Split
  val: Split
  test: Split
  num_classes: int


def load_digits(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
  """Loads scikit-learn's digits, shuffled and split deterministically.

  Args:
    seed: seed of the shuffle before splitting.
    val_fraction: share of the images held out for validation (the search
      scores subnets on it).
    test_fraction: share held out for the final test.

  Returns:
    A :class:`Dataset` with images scaled to [0, 1], shape ``(n, 8, 8, 1)``.

  Raises:
    ValueError: fractions outside (0, 1) or summing to 1 or more.
  """
  if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
    raise ValueError(
        f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum to less than 1."
    )
  with np.load(Path(__file__).with_name("digits.npz")) as archive:
    images = (archive["images"].astype(np.float32) / 16.0)[..., None]
    labels = archive["labels"].astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(labels))
  images, labels = images[order], labels[order]
  n_test = int(round(test_fraction * len(labels)))
  n_val = int(round(val_fraction * len(labels)))
  test = Split(images[:n_test], labels[:n_test])
  val = Split(images[n_test:n_test + n_val], labels[n_test:n_test + n_val])
  train = Split(images[n_test + n_val:], labels[n_test + n_val:])
  return Dataset(train, val, test, num_classes=10)


def iterate_batches(key: PRNGKey, split: Split, batch_size: int, drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields shuffled ``(images, labels)`` batches for one epoch.

  Args:
    key: PRNG key for the shuffle.
    split: the data.
    batch_size: images per batch (> 0).
    drop_last: drop the last, smaller batch so every batch has one shape
      (one compiled step serves all).

  Raises:
    ValueError: ``batch_size`` < 1 or larger than the split with ``drop_last``.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if drop_last and batch_size > len(split):
    raise ValueError(f"batch_size {batch_size} is larger than the split ({len(split)} examples).")
  order = np.asarray(jax.random.permutation(key, len(split)))
  stop = len(split) - (len(split) % batch_size if drop_last else 0)
  for start in range(0, stop, batch_size):
    index = order[start:start + batch_size]
    yield split.images[index], split.labels[index]
