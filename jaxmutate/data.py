"""Data sets: the embedded digits, user arrays and image folders, and streamed batches.

Every data set is a :class:`Dataset`: ``train``, ``val`` and ``test`` splits,
``num_classes``, and what follows from the data (``input_shape``,
``class_names``, the :class:`Normalization` applied). An in-memory split is a
:class:`Split` of NHWC float32 images and int32 labels; a :class:`StreamSplit`
reads ``(images, labels)`` batches from an iterable or generator for data that
does not fit in memory. :func:`iterate_batches` and ``split.take(n)`` work on
both kinds.

Builders, registered in :data:`jaxmutate.registry.DATASETS` and built from a
config's ``data`` dict by :func:`build_dataset`:

- ``Digits`` (also ``digits``, the default): 1,797 grey 8×8 images of the digits
  0–9 (scikit-learn's ``load_digits``, BSD licensed, from the UCI ML
  repository), committed as ``jaxmutate/digits.npz`` (45 KB) so nothing is
  downloaded and scikit-learn is not needed; images in [0, 1].
- ``NpzDataset``: arrays in a ``.npz``/``.npy`` file.
- ``ImageFolder``: a folder of class sub-folders of images (``.npy`` always;
  ``.png``/``.jpg``/... when Pillow is installed).
- ``StreamingDataset``: splits read batch by batch from user code.

User builders register with ``@DATASETS.register_module()`` (a module named in
``custom_imports``) and return a :class:`Dataset`.

Example:
  >>> from jaxmutate.data import load_digits
  >>> splits = load_digits(seed=0)
  >>> splits.train.images.shape[1:], splits.num_classes
  ((8, 8, 1), 10)
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.registry import DATASETS, apply_custom_imports, build
from jaxmutate.typing import PRNGKey

NORMALIZE_MODES = ("scale", "standardize", "none")
IMAGE_EXTENSIONS = (".npy", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class Normalization(NamedTuple):
  """How raw images became the split's float32 images: ``(raw * scale - mean) / std``.

  Attributes:
    scale: multiplies the raw values (``1/255`` for ``uint8``), or ``None``.
    mean: per-channel mean subtracted after scaling, or ``None``.
    std: per-channel standard deviation divided by, or ``None``.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.data import Normalization
    >>> Normalization(scale=1 / 255).apply(np.full((1, 1, 1, 1), 255, np.uint8)).item()
    1.0
  """

  scale: float | None = None
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None

  def apply(self, images: Any) -> np.ndarray:
    """Normalises raw NHWC images the way the data set's images were (e.g. new images at inference)."""
    out = np.asarray(images).astype(np.float32)
    if self.scale is not None:
      out = out * np.float32(self.scale)
    if self.mean is not None:
      out = out - np.asarray(self.mean, np.float32)
    if self.std is not None:
      out = out / np.asarray(self.std, np.float32)
    return out


class Split(NamedTuple):
  """One in-memory split of a data set.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.data import Split
    >>> split = Split(np.zeros((5, 4, 4, 1), np.float32), np.arange(5, dtype=np.int32))
    >>> len(split), split.image_shape, len(split.take(2))
    (5, (4, 4, 1), 2)
  """

  images: np.ndarray  # float32 [n, h, w, c]
  labels: np.ndarray  # int32 [n]

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @property
  def image_shape(self) -> tuple[int, ...]:
    """The shape of one image, ``(h, w, c)``."""
    return tuple(int(d) for d in self.images.shape[1:])

  def take(self, n: int | None = None, key: PRNGKey | None = None) -> Split:
    """The first ``n`` examples (all when ``None``); ``key`` is unused (streams take it)."""
    del key
    return self if n is None else Split(self.images[:n], self.labels[:n])


class StreamSplit:
  """A split read batch by batch: for data that does not fit in memory.

  ``source`` yields ``(images, labels)`` batches of any size; batches are
  re-cut to the size the trainer asks for (:meth:`batches`,
  :func:`iterate_batches`), checked (rank, dtype, counts, label range, image
  shape equal to the first batch's) and normalised like in-memory data.
  Shuffling is the source's job: a callable source that takes one argument
  receives each epoch's PRNG key.

  Args:
    source: a callable returning a fresh iterable per epoch (a generator
      function; with one parameter it is called with the epoch's key), a
      re-iterable object (a list, a ``grain``/``tf.data``-style loader whose
      ``iter()`` starts over), a one-shot iterator (a generator object: one
      pass only), or ``"module:function"`` naming such a callable.
    num_classes: labels must lie in ``[0, num_classes)``.
    num_examples: examples per epoch, when known (``len(split)``).
    name: used in error messages, e.g. ``"train"``.
    normalize: ``"scale"`` (integer images divided by their dtype's maximum,
      float images kept), ``"none"``; ``"standardize"`` needs ``mean`` and
      ``std``.
    mean: per-channel mean subtracted after scaling.
    std: per-channel standard deviation divided by after that.

  Raises:
    ConfigError: the first batch is malformed, ``num_classes`` is not a
      positive int, or ``"standardize"`` comes without ``mean``/``std``.
    ConfigTypeError: ``source`` is not iterable or callable.

  Example:
    >>> import jax, numpy as np
    >>> from jaxmutate.data import StreamSplit, iterate_batches
    >>> def batches():
    ...   for _ in range(3):
    ...     yield np.zeros((5, 4, 4, 1), np.uint8), np.ones(5, np.int64)
    >>> stream = StreamSplit(batches, num_classes=2, name="train")
    >>> [x.shape[0] for x, y in iterate_batches(jax.random.key(0), stream, 4)]
    [4, 4, 4]
    >>> stream.image_shape, stream.take(7).images.shape
    ((4, 4, 1), (7, 4, 4, 1))
  """

  def __init__(
    self,
    source: Any,
    num_classes: int,
    num_examples: int | None = None,
    name: str = "stream",
    normalize: str = "scale",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
  ):
    self.name = name
    self.num_classes = _check_num_classes(num_classes, f"StreamSplit {name!r}")
    bad_count = isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1
    if num_examples is not None and bad_count:
      raise ConfigError(f"StreamSplit {name!r}: num_examples must be a positive int or None, got {num_examples!r}.")
    self.num_examples = num_examples
    self._source = _resolve_source(source, f"StreamSplit {name!r}")
    self._one_shot = not callable(self._source) and iter(self._source) is self._source
    self._used = False
    first = next(iter(self._open(None, peek=True)), None)
    if first is None:
      raise ConfigError(f"StreamSplit {name!r}: the source yielded no batch (an empty split).")
    images, labels = _check_arrays(first[0], first[1], f"StreamSplit {name!r}, batch 0", self.num_classes)
    self._image_shape = tuple(int(d) for d in images.shape[1:])
    self._raw_dtype = images.dtype
    self.normalization = _normalization(normalize, images.dtype, mean, std, None, f"StreamSplit {name!r}")
    self._peeked = first if self._one_shot else None

  def __repr__(self) -> str:
    return (
      f"StreamSplit(name={self.name!r}, num_classes={self.num_classes}, image_shape={self._image_shape}, "
      f"num_examples={self.num_examples})"
    )

  def __len__(self) -> int:
    if self.num_examples is None:
      raise ConfigTypeError(f"StreamSplit {self.name!r} has no known length; pass num_examples=... to give it one.")
    return self.num_examples

  @property
  def image_shape(self) -> tuple[int, ...]:
    """The shape of one image, ``(h, w, c)``, read from the first batch."""
    return self._image_shape

  def _open(self, key: PRNGKey | None, peek: bool = False) -> Iterable[Any]:
    source = self._source
    if callable(source):
      takes_key = _takes_one_argument(source)
      if takes_key:
        iterable = source(jax.random.key(0) if key is None else key)
      else:
        iterable = source()
      return _iterable(iterable, f"StreamSplit {self.name!r}: the source callable")
    if self._one_shot:
      if peek:
        return source
      if self._used:
        raise ConfigError(
          f"StreamSplit {self.name!r}: the source is a one-shot iterator (e.g. a generator object) and was "
          "already read; pass a callable that returns a fresh iterator per epoch (the generator function)."
        )
      self._used = True
      peeked, self._peeked = self._peeked, None
      return itertools.chain([peeked], source) if peeked is not None else source
    return source

  def raw_batches(self, key: PRNGKey | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The source's batches, checked and normalised, at the source's batch size."""
    for index, batch in enumerate(self._open(key)):
      if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ConfigError(
          f"StreamSplit {self.name!r}, batch {index}: a batch must be an (images, labels) pair, got "
          f"{type(batch).__name__}."
        )
      where = f"StreamSplit {self.name!r}, batch {index}"
      images, labels = _check_arrays(batch[0], batch[1], where, self.num_classes)
      if tuple(images.shape[1:]) != self._image_shape or images.dtype != self._raw_dtype:
        raise ConfigError(
          f"{where}: images of shape {tuple(images.shape[1:])} and dtype {images.dtype}, expected "
          f"{self._image_shape} and {self._raw_dtype} like the first batch."
        )
      yield self.normalization.apply(images), labels

  def batches(
    self, key: PRNGKey | None, batch_size: int, drop_last: bool = True
  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(images, labels)`` batches of exactly ``batch_size`` (the last may be smaller)."""
    if batch_size < 1:
      raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    pending_x: list[np.ndarray] = []
    pending_y: list[np.ndarray] = []
    have = 0
    for images, labels in self.raw_batches(key):
      pending_x.append(images)
      pending_y.append(labels)
      have += len(labels)
      if have < batch_size:
        continue
      x, y = np.concatenate(pending_x), np.concatenate(pending_y)
      stop = len(y) - len(y) % batch_size
      for start in range(0, stop, batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]
      pending_x, pending_y, have = [x[stop:]], [y[stop:]], len(y) - stop
    if have and not drop_last:
      yield np.concatenate(pending_x), np.concatenate(pending_y)

  def take(self, n: int | None = None, key: PRNGKey | None = None) -> Split:
    """Reads the first ``n`` examples (all when ``None``) into an in-memory :class:`Split`.

    Fewer come back when the stream is shorter. For calibration images, or to
    hold a validation set in memory for scoring.
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    for images, labels in self.raw_batches(key):
      xs.append(images)
      ys.append(labels)
      have += len(labels)
      if n is not None and have >= n:
        break
    if not xs:
      raise ConfigError(f"StreamSplit {self.name!r}: the source yielded no batch (an empty split).")
    x, y = np.concatenate(xs), np.concatenate(ys)
    return Split(x[:n], y[:n]) if n is not None else Split(x, y)


class Dataset(NamedTuple):
  """Train / validation / test splits of an image classification set.

  Attributes:
    train: the training split (a :class:`Split` or a :class:`StreamSplit`).
    val: the validation split (the search scores subnets on it).
    test: the held-out test split.
    num_classes: labels lie in ``[0, num_classes)``.
    class_names: a name per label, when the data has them.
    normalization: how raw images became the split's images.

  Example:
    >>> from jaxmutate.data import load_digits
    >>> data = load_digits()
    >>> data.input_shape, data.class_names[:3]
    ((8, 8, 1), ('0', '1', '2'))
  """

  train: Split | StreamSplit
  val: Split | StreamSplit
  test: Split | StreamSplit
  num_classes: int
  class_names: tuple[str, ...] | None = None
  normalization: Normalization | None = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    """The shape of one image, ``(h, w, c)``: what a model is initialised with."""
    return self.train.image_shape


# Checks -----------------------------------------------------------------------------


def _check_num_classes(num_classes: Any, where: str) -> int:
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ConfigError(f"{where}: num_classes must be a positive int, got {num_classes!r}.")
  return int(num_classes)


def _check_arrays(
  images: Any, labels: Any, where: str, num_classes: int | None, allow_vectors: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Checks raw images and labels; returns NHWC images (raw dtype) and int32 labels.

  With ``allow_vectors``, rank-2 ``(n, features)`` inputs pass unchanged (user
  builders for MLP supernets).
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.dtype == object or not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_):
    raise ConfigTypeError(f"{where}: images must be a numeric array (uint8, float32, ...), got dtype {images.dtype}.")
  if np.issubdtype(images.dtype, np.complexfloating):
    raise ConfigTypeError(f"{where}: images must be real numbers, got dtype {images.dtype}.")
  if images.ndim == 3 and not allow_vectors:
    images = images[..., None]  # grey images without a channel axis
  elif images.ndim != 4 and not (allow_vectors and images.ndim == 2):
    raise ConfigError(
      f"{where}: images must have rank 4 (n, height, width, channels) or "
      f"{'2 (n, features)' if allow_vectors else '3 (n, height, width)'}, got shape {images.shape} "
      f"(rank {images.ndim})."
    )
  if not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
    raise ConfigTypeError(
      f"{where}: labels must be integer class indices, got dtype {labels.dtype}"
      + (" (one-hot or probabilities? pass labels.argmax(-1))" if labels.ndim == 2 else "")
      + "."
    )
  if labels.ndim != 1:
    raise ConfigError(
      f"{where}: labels must have rank 1 (one class index per image), got shape {labels.shape}"
      + (" (one-hot? pass labels.argmax(-1))" if labels.ndim == 2 else "")
      + "."
    )
  if images.shape[0] != labels.shape[0]:
    raise ConfigError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; the counts must match.")
  if np.issubdtype(images.dtype, np.floating) and images.size and not np.isfinite(images).all():
    raise ConfigError(f"{where}: images hold NaN or infinite values.")
  if labels.size:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
      bad = labels[(labels < 0) | (labels >= (num_classes if num_classes is not None else high + 1))]
      expected = f"[0, {num_classes})" if num_classes is not None else "[0, num_classes)"
      raise ConfigError(
        f"{where}: labels must lie in {expected}; found {np.unique(bad)[:5].tolist()} (min {low}, max {high})."
      )
  return images, labels.astype(np.int32)


def _normalization(
  mode: str,
  dtype: np.dtype,
  mean: Sequence[float] | None,
  std: Sequence[float] | None,
  train_images: np.ndarray | None,
  where: str,
) -> Normalization:
  if mode not in NORMALIZE_MODES:
    raise ConfigError(f"{where}: normalize must be one of {NORMALIZE_MODES}, got {mode!r}.")
  scale = None
  if mode != "none":
    if dtype == np.bool_:
      scale = 1.0
    elif np.issubdtype(dtype, np.integer):
      scale = 1.0 / float(np.iinfo(dtype).max)
  if mode == "standardize" and (mean is None or std is None):
    if train_images is None:
      raise ConfigError(f"{where}: normalize='standardize' on streamed data needs mean=... and std=... .")
    scaled = Normalization(scale).apply(train_images)
    mean = tuple(float(v) for v in scaled.mean(axis=(0, 1, 2))) if mean is None else mean
    std = tuple(float(v) for v in scaled.std(axis=(0, 1, 2))) if std is None else std
  mean_t = None if mean is None else tuple(float(v) for v in np.atleast_1d(np.asarray(mean, np.float64)))
  std_t = None if std is None else tuple(float(v) for v in np.atleast_1d(np.asarray(std, np.float64)))
  if std_t is not None and not all(s > 0 for s in std_t):
    # A constant channel has std 0; dividing by it would make NaNs.
    std_t = tuple(s if s > 0 else 1.0 for s in std_t)
  return Normalization(scale, mean_t, std_t)


def _check_fractions(val_fraction: float, test_fraction: float, where: str) -> None:
  for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
      raise ConfigError(f"{where}: {name} must be a number in [0, 1), got {value!r}.")
  if val_fraction + test_fraction >= 1:
    raise ConfigError(
      f"{where}: val_fraction={val_fraction} and test_fraction={test_fraction} sum to 1 or more; nothing is "
      "left to train on."
    )


def _check_split(split: Any, name: str, where: str) -> None:
  if isinstance(split, StreamSplit):
    return
  if not isinstance(split, Split):
    raise ConfigTypeError(
      f"{where}: the {name} split must be a jaxmutate.data.Split or StreamSplit, got {type(split).__name__}."
    )
  if len(split) == 0:
    raise ConfigError(f"{where}: the {name} split is empty; it needs at least one example.")


def check_dataset(dataset: Any, where: str = "data set") -> Dataset:
  """Checks a data set before any training: split kinds, empty splits, shapes, labels.

  :func:`build_dataset` runs it on whatever a builder returns, so user
  builders get the same checks.

  Args:
    dataset: a :class:`Dataset`.
    where: names the data set in error messages.

  Returns:
    ``dataset``.

  Raises:
    ConfigTypeError: not a :class:`Dataset`, or a split of the wrong kind or
      dtype.
    ConfigError: an empty split, splits whose images differ in shape, labels
      outside ``[0, num_classes)``, a bad ``num_classes``.

  Example:
    >>> from jaxmutate.data import check_dataset, load_digits
    >>> check_dataset(load_digits()).num_classes
    10
  """
  if not isinstance(dataset, Dataset):
    raise ConfigTypeError(
      f"{where}: a data set builder must return a jaxmutate.data.Dataset, got {type(dataset).__name__}."
    )
  num_classes = _check_num_classes(dataset.num_classes, where)
  shapes = {}
  for name in ("train", "val", "test"):
    split = getattr(dataset, name)
    _check_split(split, name, where)
    if isinstance(split, Split):
      images, _ = _check_arrays(split.images, split.labels, f"{where}, {name} split", num_classes, allow_vectors=True)
      if images.dtype != np.float32:
        raise ConfigTypeError(f"{where}, {name} split: images must be float32 (normalised), got {images.dtype}.")
    elif split.num_classes != num_classes:
      raise ConfigError(f"{where}, {name} split: streams {split.num_classes} classes, the data set {num_classes}.")
    shapes[name] = split.image_shape
  if len(set(shapes.values())) > 1:
    raise ConfigError(f"{where}: the splits' images differ in shape: {shapes}.")
  if dataset.class_names is not None and len(dataset.class_names) != num_classes:
    raise ConfigError(f"{where}: {len(dataset.class_names)} class_names for {num_classes} classes.")
  return dataset


# Builders ---------------------------------------------------------------------------


def _split_arrays(
  images: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  order = np.random.default_rng(seed).permutation(len(labels))
  images, labels = images[order], labels[order]
  n_test = int(round(test_fraction * len(labels)))
  n_val = int(round(val_fraction * len(labels)))
  test = (images[:n_test], labels[:n_test])
  val = (images[n_test : n_test + n_val], labels[n_test : n_test + n_val])
  train = (images[n_test + n_val :], labels[n_test + n_val :])
  return train, val, test


def _assemble(
  parts: Mapping[str, tuple[np.ndarray, np.ndarray]],
  num_classes: int | None,
  normalize: str,
  mean: Sequence[float] | None,
  std: Sequence[float] | None,
  class_names: Sequence[str] | None,
  where: str,
  fractions: str,
) -> tuple[Split, Split, Split, int, tuple[str, ...] | None, Normalization]:
  """Checks raw split arrays, infers num_classes, normalises; every split must be non-empty."""
  checked = {}
  for name, (images, labels) in parts.items():
    checked[name] = _check_arrays(images, labels, f"{where}, {name} split", num_classes)
    if len(checked[name][1]) == 0:
      raise ConfigError(
        f"{where}: the {name} split is empty ({fractions}); it needs at least one example: give more data or a "
        "larger fraction."
      )
  shapes = {name: tuple(images.shape[1:]) for name, (images, _) in checked.items()}
  if len(set(shapes.values())) > 1:
    raise ConfigError(f"{where}: the splits' images differ in shape: {shapes}.")
  dtypes = {name: str(images.dtype) for name, (images, _) in checked.items()}
  if len(set(dtypes.values())) > 1:
    raise ConfigTypeError(f"{where}: the splits' images differ in dtype: {dtypes}.")
  if num_classes is None:
    num_classes = max(int(labels.max()) for _, labels in checked.values()) + 1
    if class_names is not None:
      num_classes = max(num_classes, len(class_names))
  names = None
  if class_names is not None:
    names = tuple(str(n) for n in class_names)
    if len(names) != num_classes:
      raise ConfigError(f"{where}: {len(names)} class_names for {num_classes} classes.")
  train_images = checked["train"][0]
  norm = _normalization(normalize, train_images.dtype, mean, std, train_images, where)
  splits = [Split(norm.apply(checked[name][0]), checked[name][1]) for name in ("train", "val", "test")]
  return splits[0], splits[1], splits[2], int(num_classes), names, norm


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

  Example:
    >>> from jaxmutate.data import load_digits
    >>> len(load_digits(val_fraction=0.1, test_fraction=0.1).val)
    180
  """
  if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
    raise ConfigError(
      f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum to less than 1."
    )
  with np.load(Path(__file__).with_name("digits.npz")) as archive:
    images = (archive["images"].astype(np.float32) / 16.0)[..., None]
    labels = archive["labels"].astype(np.int32)
  train, val, test = _split_arrays(images, labels, val_fraction, test_fraction, seed)
  return Dataset(
    Split(*train),
    Split(*val),
    Split(*test),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    normalization=Normalization(scale=1 / 16),
  )


class _DatasetBuilder(Dataset):
  """A :class:`Dataset` made by a builder's constructor (pickles as a plain Dataset)."""

  def __reduce__(self) -> Any:
    return (Dataset, tuple(self))

  def __repr__(self) -> str:
    splits = ", ".join(f"{name}={_describe(getattr(self, name))}" for name in ("train", "val", "test"))
    return f"{type(self).__name__}({splits}, num_classes={self.num_classes}, input_shape={self.input_shape})"


def _describe(split: Split | StreamSplit) -> str:
  if isinstance(split, Split):
    return str(len(split))
  return f"stream({split.num_examples if split.num_examples is not None else '?'})"


@DATASETS.register_module()
class Digits(_DatasetBuilder):
  """The embedded digits (the default data set): :func:`load_digits` as a builder.

  Registered as ``Digits`` and ``digits``.

  Example:
    >>> from jaxmutate.data import Digits
    >>> data = Digits(seed=1)
    >>> data.num_classes, data.input_shape, len(data.train) + len(data.val) + len(data.test)
    (10, (8, 8, 1), 1797)
  """

  def __new__(cls, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Digits:
    return super().__new__(cls, *load_digits(seed, val_fraction, test_fraction))


DATASETS.register_alias("digits", "Digits")


def _load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
  if not path.is_file():
    raise FileNotFoundError(f"NpzDataset: data file {str(path)!r} does not exist.")
  try:
    if path.suffix == ".npy":
      # A .npy file holding a dict (np.save of {"x": ..., "y": ...}).
      loaded = np.load(path, allow_pickle=True)
      if loaded.dtype != object or loaded.shape != ():
        raise ConfigError(f"NpzDataset: {str(path)!r} holds one array; store images and labels in a .npz file.")
      arrays = loaded.item()
      if not isinstance(arrays, Mapping):
        raise ConfigError(f"NpzDataset: {str(path)!r} must hold a dict of arrays.")
      return {str(k): np.asarray(v) for k, v in arrays.items()}
    with np.load(path, allow_pickle=False) as archive:
      return {k: archive[k] for k in archive.files}
  except (OSError, ValueError) as error:
    if isinstance(error, ConfigError):
      raise
    raise ConfigError(f"NpzDataset: cannot read {str(path)!r} as a NumPy .npz archive: {error}") from error


@DATASETS.register_module()
class NpzDataset(_DatasetBuilder):
  """Images and labels from a NumPy ``.npz`` file, split into train/val/test.

  The file holds ``images_key`` (``(n, h, w[, c])``, any real dtype) and
  ``labels_key`` (``(n,)`` integer class indices), shuffled with ``seed`` and
  split by the fractions. A file with predefined splits holds
  ``{images_key}_train``/``{labels_key}_train`` and optionally ``_val`` and
  ``_test`` pairs; a missing split is carved out of the training arrays by its
  fraction. The number of classes is ``max(label) + 1`` unless given; images
  are normalised per ``normalize``.

  Args:
    path: the ``.npz`` file (or a ``.npy`` holding a dict of arrays).
    images_key: name of the images array.
    labels_key: name of the labels array.
    val_fraction: share held out for validation.
    test_fraction: share held out for the test.
    seed: seed of the shuffle before splitting.
    num_classes: labels must lie in ``[0, num_classes)``; ``None`` infers it.
    normalize: ``"scale"`` (integer images divided by their dtype's maximum:
      ``uint8`` → [0, 1]; float images kept), ``"standardize"`` (scale, then
      per-channel mean/std of the train split, or the given ones), ``"none"``.
    mean: per-channel mean for ``"standardize"`` (after scaling).
    std: per-channel standard deviation for ``"standardize"``.
    class_names: a name per class.

  Raises:
    FileNotFoundError: the file does not exist.
    ConfigError: a key is missing, image and label counts differ, labels fall
      outside ``[0, num_classes)``, images have the wrong rank, a split is
      empty, or the fractions are out of range (the message names the file
      and the key).
    ConfigTypeError: images are not numeric or labels not integers.

  Example:
    >>> import pathlib, tempfile, numpy as np
    >>> from jaxmutate.data import NpzDataset
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> np.savez(path, x=np.zeros((20, 4, 4, 3), np.uint8), y=np.arange(20) % 4)
    >>> data = NpzDataset(path, val_fraction=0.2, test_fraction=0.2)
    >>> data.num_classes, data.input_shape, len(data.train), data.train.images.dtype
    (4, (4, 4, 3), 12, dtype('float32'))
  """

  def __new__(
    cls,
    path: str | Path,
    images_key: str = "x",
    labels_key: str = "y",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    num_classes: int | None = None,
    normalize: str = "scale",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
  ) -> NpzDataset:
    path = Path(path).expanduser()
    where = f"NpzDataset {str(path)!r}"
    _check_fractions(val_fraction, test_fraction, where)
    if num_classes is not None:
      num_classes = _check_num_classes(num_classes, where)
    arrays = _load_npz_arrays(path)

    def get(key: str) -> np.ndarray:
      if key not in arrays:
        raise ConfigError(f"{where} has no array {key!r}; it holds {sorted(arrays)}.")
      return arrays[key]

    fractions = f"val_fraction={val_fraction}, test_fraction={test_fraction}"
    if images_key in arrays or f"{images_key}_train" not in arrays:
      images, labels = get(images_key), get(labels_key)
      images, labels = _check_arrays(images, labels, f"{where}, keys {images_key!r}/{labels_key!r}", num_classes)
      train, val, test = _split_arrays(images, labels, val_fraction, test_fraction, seed)
      parts = dict(train=train, val=val, test=test)
    else:
      parts = {"train": (get(f"{images_key}_train"), get(f"{labels_key}_train"))}
      for name in ("val", "test"):
        if f"{images_key}_{name}" in arrays:
          parts[name] = (get(f"{images_key}_{name}"), get(f"{labels_key}_{name}"))
      missing = [name for name in ("val", "test") if name not in parts]
      if missing:
        images, labels = _check_arrays(*parts["train"], f"{where}, train split", num_classes)
        train, val, test = _split_arrays(
          images, labels, val_fraction if "val" in missing else 0.0, test_fraction if "test" in missing else 0.0, seed
        )
        parts["train"] = train
        parts.setdefault("val", val)
        parts.setdefault("test", test)
      parts = {name: parts[name] for name in ("train", "val", "test")}
    made = _assemble(parts, num_classes, normalize, mean, std, class_names, where, fractions)
    self = super().__new__(cls, *made)
    self.path = path
    return self


def _pil() -> Any:
  try:
    from PIL import Image
  except ImportError:
    return None
  return Image


def _read_image(path: Path, channels: int | None, image_size: tuple[int, int] | None) -> np.ndarray:
  if path.suffix.lower() == ".npy":
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
      raise ConfigError(f"ImageFolder: cannot read {str(path)!r} as a .npy array: {error}") from error
    if array.ndim == 2:
      array = array[..., None]
    if array.ndim != 3:
      raise ConfigError(f"ImageFolder: {str(path)!r} must hold an (h, w) or (h, w, c) array, got shape {array.shape}.")
    if image_size is not None and tuple(array.shape[:2]) != tuple(image_size):
      raise ConfigError(
        f"ImageFolder: {str(path)!r} has size {tuple(array.shape[:2])}, expected image_size={tuple(image_size)} "
        "(.npy images are not resized)."
      )
    return array
  image_module = _pil()
  if image_module is None:
    raise ConfigError(
      f"ImageFolder: reading {str(path)!r} needs Pillow (pip install pillow, or jaxmutate's 'images' extra); "
      "without it, store each image as a .npy file."
    )
  try:
    with image_module.open(path) as image:
      mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels or 0) or ("L" if image.mode in ("1", "L", "I;16") else "RGB")
      image = image.convert(mode)
      if image_size is not None:
        image = image.resize((int(image_size[1]), int(image_size[0])))
      array = np.asarray(image)
  except OSError as error:
    raise ConfigError(f"ImageFolder: cannot decode the image {str(path)!r}: {error}") from error
  return array[..., None] if array.ndim == 2 else array


def _scan_classes(root: Path, extensions: tuple[str, ...], where: str) -> tuple[list[str], list[tuple[Path, str]]]:
  classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
  if not classes:
    raise ConfigError(
      f"{where}: {str(root)!r} has no class sub-folders; expected {str(root)}/<class name>/<image files>."
    )
  files = []
  for name in classes:
    found = sorted(
      p
      for p in (root / name).rglob("*")
      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )
    if not found:
      raise ConfigError(
        f"{where}: the class folder {str(root / name)!r} has no images with extensions {list(extensions)}."
      )
    files.extend((p, name) for p in found)
  return classes, files


@DATASETS.register_module()
class ImageFolder(_DatasetBuilder):
  """Images in class sub-folders (``root/<class>/<image>``), read into memory.

  Labels follow the sorted class folder names. With ``root/train/<class>/...``
  (and optionally ``root/val/...``, ``root/test/...``) the given splits are
  used; a missing one is carved from ``train`` by its fraction. ``.npy`` files
  (``(h, w)`` or ``(h, w, c)`` arrays) are always read; other image files
  need Pillow, which is used when installed. All images must end up with one
  shape: give ``image_size`` to resize decoded images.

  Args:
    root: the folder.
    val_fraction: share held out for validation.
    test_fraction: share held out for the test.
    seed: seed of the shuffle before splitting.
    image_size: ``(height, width)`` to resize decoded images to.
    channels: 1, 3 or 4 channels for decoded images; ``None``: grey files
      stay grey, others become RGB.
    extensions: file suffixes read as images.
    normalize: as :class:`NpzDataset`.
    mean: as :class:`NpzDataset`.
    std: as :class:`NpzDataset`.

  Raises:
    FileNotFoundError: ``root`` is not a folder.
    ConfigError: no class folders, an empty class folder, an unreadable
      image, images of different shapes, an empty split.

  Example:
    >>> import pathlib, tempfile, numpy as np
    >>> from jaxmutate.data import ImageFolder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("cat", "dog"):
    ...   (root / name).mkdir()
    ...   for i in range(5):
    ...     np.save(root / name / f"{i}.npy", np.full((6, 6, 3), i, np.uint8))
    >>> data = ImageFolder(root, val_fraction=0.2, test_fraction=0.2)
    >>> data.class_names, data.input_shape, len(data.train)
    (('cat', 'dog'), (6, 6, 3), 6)
  """

  def __new__(
    cls,
    root: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    normalize: str = "scale",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
  ) -> ImageFolder:
    root = Path(root).expanduser()
    where = f"ImageFolder {str(root)!r}"
    if not root.is_dir():
      raise FileNotFoundError(f"{where}: the folder does not exist.")
    _check_fractions(val_fraction, test_fraction, where)
    if channels not in (None, 1, 3, 4):
      raise ConfigError(f"{where}: channels must be None, 1, 3 or 4, got {channels!r}.")
    if image_size is not None and (len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size)):
      raise ConfigError(f"{where}: image_size must be (height, width) of positive ints, got {image_size!r}.")
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    def read(folder: Path, classes: list[str] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
      found_classes, files = _scan_classes(folder, extensions, where)
      if classes is not None:
        unknown = sorted(set(found_classes) - set(classes))
        if unknown:
          raise ConfigError(f"{where}: {str(folder)!r} has classes {unknown} that the train folder does not have.")
        found_classes = classes
      index = {name: i for i, name in enumerate(found_classes)}
      images = [_read_image(p, channels, size) for p, _ in files]
      shapes = {tuple(a.shape) for a in images}
      if len(shapes) > 1:
        first = {}
        for (p, _), a in zip(files, images):
          first.setdefault(tuple(a.shape), str(p))
        raise ConfigError(
          f"{where}: images differ in shape ({first}); give image_size=(h, w) (and channels=) to resize them."
        )
      dtypes = {a.dtype for a in images}
      if len(dtypes) > 1:
        raise ConfigTypeError(f"{where}: images differ in dtype ({sorted(map(str, dtypes))}).")
      return found_classes, np.stack(images), np.asarray([index[name] for _, name in files], np.int32)

    split_dirs = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    presplit = "train" in split_dirs and all(any(c.is_dir() for c in d.iterdir()) for d in split_dirs.values())
    fractions = f"val_fraction={val_fraction}, test_fraction={test_fraction}"
    if presplit:
      classes, images, labels = read(split_dirs["train"], None)
      parts = {"train": (images, labels)}
      for name in ("val", "test"):
        if name in split_dirs:
          _, x, y = read(split_dirs[name], classes)
          parts[name] = (x, y)
      missing = [name for name in ("val", "test") if name not in parts]
      if missing:
        train, val, test = _split_arrays(
          images, labels, val_fraction if "val" in missing else 0.0, test_fraction if "test" in missing else 0.0, seed
        )
        parts["train"] = train
        parts.setdefault("val", val)
        parts.setdefault("test", test)
      parts = {name: parts[name] for name in ("train", "val", "test")}
    else:
      classes, images, labels = read(root, None)
      train, val, test = _split_arrays(images, labels, val_fraction, test_fraction, seed)
      parts = dict(train=train, val=val, test=test)
    made = _assemble(parts, len(classes), normalize, mean, std, classes, where, fractions)
    self = super().__new__(cls, *made)
    self.root = root
    return self


def _resolve_source(source: Any, where: str) -> Any:
  if isinstance(source, str):
    module_name, sep, attr = source.partition(":")
    if not sep:
      module_name, _, attr = source.rpartition(".")
    if not module_name or not attr:
      raise ConfigError(f"{where}: a source string must be 'module:function', got {source!r}.")
    try:
      obj = importlib.import_module(module_name)
    except ImportError as error:
      raise ConfigError(f"{where}: cannot import {module_name!r} for the source {source!r}: {error}") from error
    for part in attr.split("."):
      if not hasattr(obj, part):
        raise ConfigError(f"{where}: {module_name!r} has no {attr!r} (the source {source!r}).")
      obj = getattr(obj, part)
    source = obj
  if isinstance(source, (Split, StreamSplit, np.ndarray)):
    raise ConfigTypeError(f"{where}: the source must yield (images, labels) batches, got a {type(source).__name__}.")
  if not callable(source) and not isinstance(source, Iterable):
    raise ConfigTypeError(
      f"{where}: the source must be a callable returning an iterable of (images, labels) batches, an iterable "
      f"of them, or 'module:function'; got {type(source).__name__}."
    )
  return source


def _takes_one_argument(function: Callable[..., Any]) -> bool:
  try:
    parameters = inspect.signature(function).parameters.values()
  except (TypeError, ValueError):
    return False
  positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  required = [p for p in positional if p.default is p.empty]
  return len(required) == 1 or (not required and len(positional) >= 1 and positional[0].name in ("key", "rng", "seed"))


def _iterable(value: Any, where: str) -> Iterable[Any]:
  if not isinstance(value, Iterable):
    raise ConfigTypeError(f"{where} must return an iterable of (images, labels) batches, got {type(value).__name__}.")
  return value


def _as_split(
  value: Any, name: str, num_classes: int, normalize: str, mean: Any, std: Any, where: str
) -> Split | StreamSplit:
  if isinstance(value, (Split, StreamSplit)):
    return value
  if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, np.ndarray) for v in value):
    images, labels = _check_arrays(value[0], value[1], f"{where}, {name} split", num_classes)
    if len(labels) == 0:
      raise ConfigError(f"{where}: the {name} split is empty; it needs at least one example.")
    norm = _normalization(normalize if normalize != "standardize" else "scale", images.dtype, mean, std, None, where)
    return Split(norm.apply(images), labels)
  return StreamSplit(value, num_classes, name=name, normalize=normalize, mean=mean, std=std)


@DATASETS.register_module()
class StreamingDataset(_DatasetBuilder):
  """A data set whose splits are read batch by batch (see :class:`StreamSplit`).

  Each of ``train``, ``val`` and ``test`` is a stream source (a generator
  function, a re-iterable loader, ``"module:function"``), a ready
  :class:`Split`/:class:`StreamSplit`, or an ``(images, labels)`` pair of
  arrays. ``test`` defaults to ``val``. ``num_classes`` must be given: a
  stream cannot be counted before training.

  Args:
    train: the training stream.
    val: the validation stream.
    test: the test stream (``None``: the validation one).
    num_classes: labels must lie in ``[0, num_classes)``.
    num_train_examples: examples per training epoch, when known.
    normalize: ``"scale"`` or ``"none"``; ``"standardize"`` with ``mean``
      and ``std``.
    mean: per-channel mean (after scaling).
    std: per-channel standard deviation.
    class_names: a name per class.

  Raises:
    ConfigError: a first batch is malformed, the splits' images differ in
      shape, ``num_classes`` is missing or bad.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.data import StreamingDataset
    >>> def train_batches():
    ...   for i in range(4):
    ...     yield np.full((8, 4, 4), i, np.uint8), np.arange(8) % 3
    >>> val = (np.zeros((6, 4, 4), np.uint8), np.arange(6) % 3)
    >>> data = StreamingDataset(train=train_batches, val=val, num_classes=3)
    >>> data.input_shape, len(data.val), data.train.take(10).images.shape
    ((4, 4, 1), 6, (10, 4, 4, 1))
  """

  def __new__(
    cls,
    train: Any,
    val: Any,
    test: Any = None,
    num_classes: int | None = None,
    num_train_examples: int | None = None,
    normalize: str = "scale",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
  ) -> StreamingDataset:
    where = "StreamingDataset"
    if num_classes is None:
      raise ConfigError(f"{where}: num_classes=... is required (streamed labels cannot be counted before training).")
    num_classes = _check_num_classes(num_classes, where)
    if isinstance(train, (Split, StreamSplit)) or (isinstance(train, tuple) and len(train) == 2):
      train_split = _as_split(train, "train", num_classes, normalize, mean, std, where)
    else:
      train_split = StreamSplit(
        train, num_classes, num_examples=num_train_examples, name="train", normalize=normalize, mean=mean, std=std
      )
    val_split = _as_split(val, "val", num_classes, normalize, mean, std, where)
    test_split = val_split if test is None else _as_split(test, "test", num_classes, normalize, mean, std, where)
    names = None if class_names is None else tuple(str(n) for n in class_names)
    norm = train_split.normalization if isinstance(train_split, StreamSplit) else None
    dataset = super().__new__(cls, train_split, val_split, test_split, num_classes, names, norm)
    return check_dataset(dataset, where)  # type: ignore[return-value]


def build_dataset(cfg: Mapping[str, Any] | None = None, **default_args: Any) -> Dataset:
  """Builds a config's ``data`` dict into a checked :class:`Dataset`.

  ``cfg["type"]`` names a builder in :data:`jaxmutate.registry.DATASETS`
  (``Digits``/``digits``, ``NpzDataset``, ``ImageFolder``,
  ``StreamingDataset``, or a user builder registered there by a module in
  ``cfg["custom_imports"]``); a missing ``type`` or ``cfg=None`` means the
  embedded digits. The result goes through :func:`check_dataset`, so
  problems surface here, before any training.

  Args:
    cfg: e.g. ``dict(type="NpzDataset", path="my.npz", val_fraction=0.1)``.
    **default_args: used where ``cfg`` does not set them and the builder takes
      them (e.g. ``seed=...`` from the command line); others are dropped.

  Returns:
    The data set.

  Raises:
    UnknownTypeError: the type is not registered in ``DATASETS``.
    ConfigTypeError: ``cfg`` is not a dict, or the builder returned something
      other than a :class:`Dataset`.
    ConfigError: the builder rejected its arguments or the data (see the
      builders).
    FileNotFoundError: a data file or folder does not exist.

  Example:
    >>> from jaxmutate.data import build_dataset
    >>> data = build_dataset(dict(type="Digits", seed=0, val_fraction=0.1))
    >>> type(data).__name__, data.num_classes, len(data.val)
    ('Digits', 10, 180)
    >>> build_dataset().input_shape
    (8, 8, 1)
  """
  if cfg is None:
    cfg = {}
  if not isinstance(cfg, Mapping):
    raise ConfigTypeError(
      f"data must be a dict like dict(type='NpzDataset', path=...), got {type(cfg).__name__}: {cfg!r}."
    )
  cfg = dict(cfg)
  cfg.setdefault("type", "Digits")
  type_name = cfg["type"]
  if default_args:
    probe = dict(cfg)
    custom_imports = probe.pop("custom_imports", None)
    if custom_imports is not None:
      apply_custom_imports(custom_imports)  # the builder may live in the imported module
    target = type_name if callable(type_name) else DATASETS.get(type_name)
    try:
      parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
      parameters = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key, value in default_args.items():
      if key not in cfg and (takes_any or key in parameters):
        cfg[key] = value
  label = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", repr(type_name))
  try:
    dataset = build(cfg, registry=DATASETS)
  except TypeError as error:
    if isinstance(error, ConfigTypeError):
      raise
    raise ConfigTypeError(f"data (type {label!r}): {error}") from error
  return check_dataset(dataset, f"data set {label!r}")


def iterate_batches(
  key: PRNGKey, split: Split | StreamSplit, batch_size: int, drop_last: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields shuffled ``(images, labels)`` batches for one epoch.

  A :class:`StreamSplit` yields its source's order (the source shuffles; it
  receives ``key`` when it takes an argument), re-cut to ``batch_size``.

  Args:
    key: PRNG key for the shuffle.
    split: the data.
    batch_size: images per batch (> 0).
    drop_last: drop the last, smaller batch so every batch has one shape
      (one compiled step serves all).

  Raises:
    ValueError: ``batch_size`` < 1 or larger than the split with ``drop_last``.

  Example:
    >>> import jax
    >>> from jaxmutate.data import iterate_batches, load_digits
    >>> images, labels = next(iterate_batches(jax.random.key(0), load_digits().val, 32))
    >>> images.shape, labels.dtype
    ((32, 8, 8, 1), dtype('int32'))
  """
  if isinstance(split, StreamSplit):
    yield from split.batches(key, batch_size, drop_last)
    return
  if batch_size < 1:
    raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
  if drop_last and batch_size > len(split):
    raise ConfigError(f"batch_size {batch_size} is larger than the split ({len(split)} examples).")
  order = np.asarray(jax.random.permutation(key, len(split)))
  stop = len(split) - (len(split) % batch_size if drop_last else 0)
  for start in range(0, stop, batch_size):
    index = order[start : start + batch_size]
    yield split.images[index], split.labels[index]
