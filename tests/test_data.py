"""User data sets: NpzDataset, ImageFolder, streaming splits, build_dataset and their errors."""

from __future__ import annotations

import sys
import textwrap
import uuid

import jax
import numpy as np
import pytest

from jaxmutate.data import (
  Dataset,
  Digits,
  ImageFolder,
  Normalization,
  NpzDataset,
  Split,
  StreamingDataset,
  StreamSplit,
  build_dataset,
  check_dataset,
  iterate_batches,
  load_digits,
)
from jaxmutate.errors import ConfigError, ConfigTypeError, UnknownTypeError
from jaxmutate.registry import DATASETS


def _npz(tmp_path, name="data.npz", n=40, shape=(6, 6, 3), num_classes=4, dtype=np.uint8, **extra):
  rng = np.random.default_rng(0)
  arrays = dict(x=rng.integers(0, 255, (n, *shape)).astype(dtype), y=np.arange(n) % num_classes)
  arrays.update(extra)
  path = tmp_path / name
  np.savez(path, **arrays)
  return path


# Digits -----------------------------------------------------------------------------


def test_digits_is_the_default_and_matches_load_digits():
  plain = load_digits(seed=3, val_fraction=0.1, test_fraction=0.1)
  for data in (
    build_dataset(dict(type="Digits", seed=3, val_fraction=0.1, test_fraction=0.1)),
    build_dataset(dict(type="digits", seed=3, val_fraction=0.1, test_fraction=0.1)),
    build_dataset(dict(val_fraction=0.1, test_fraction=0.1), seed=3),
  ):
    assert isinstance(data, Dataset) and isinstance(data, Digits)
    assert np.array_equal(data.train.images, plain.train.images) and np.array_equal(data.val.labels, plain.val.labels)
  default = build_dataset()
  assert default.num_classes == 10 and default.input_shape == (8, 8, 1) and len(default.test) == 359
  assert plain.normalization == Normalization(scale=1 / 16) and plain.class_names == tuple("0123456789")


def test_load_digits_keeps_its_errors():
  with pytest.raises(ValueError, match="sum to less than 1"):
    load_digits(val_fraction=0.6, test_fraction=0.5)


# NpzDataset -------------------------------------------------------------------------


def test_npz_dataset_splits_scales_and_infers_classes(tmp_path):
  path = _npz(tmp_path)
  data = NpzDataset(path, val_fraction=0.25, test_fraction=0.25, seed=1)
  assert (len(data.train), len(data.val), len(data.test)) == (20, 10, 10)
  assert data.num_classes == 4 and data.input_shape == (6, 6, 3)
  assert data.train.images.dtype == np.float32 and 0 <= data.train.images.min() and data.train.images.max() <= 1
  assert data.train.labels.dtype == np.int32 and data.normalization.scale == pytest.approx(1 / 255)
  again = build_dataset(dict(type="NpzDataset", path=str(path), val_fraction=0.25, test_fraction=0.25), seed=1)
  assert np.array_equal(again.val.images, data.val.images)
  other = NpzDataset(path, val_fraction=0.25, test_fraction=0.25, seed=2)
  assert not np.array_equal(other.val.labels, data.val.labels)
  assert "NpzDataset(train=20, val=10, test=10, num_classes=4" in repr(data)


def test_npz_dataset_keys_grey_images_classes_and_standardize(tmp_path):
  path = _npz(tmp_path, shape=(5, 5), dtype=np.float32)
  np.savez(path, images=np.load(path)["x"] / 255.0, targets=np.load(path)["y"])
  data = NpzDataset(
    path, images_key="images", labels_key="targets", num_classes=6, normalize="standardize", class_names=list("abcdef")
  )
  assert data.input_shape == (5, 5, 1) and data.num_classes == 6 and data.class_names == tuple("abcdef")
  assert abs(float(data.train.images.mean())) < 1e-4 and data.normalization.scale is None
  assert len(data.normalization.mean) == 1
  assert np.allclose(data.normalization.apply(np.load(path)["images"][..., None][:2]).std(), 1.0, atol=0.3)


def test_npz_dataset_uses_predefined_splits(tmp_path):
  x = np.zeros((30, 4, 4, 1), np.uint8)
  y = np.arange(30) % 3
  path = tmp_path / "presplit.npz"
  np.savez(path, x_train=x, y_train=y, x_test=x[:7], y_test=y[:7])
  data = NpzDataset(path, val_fraction=0.2)
  assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 7)


_X = np.zeros((10, 4, 4), np.uint8)
_Y = np.zeros(10, np.int64)


@pytest.mark.parametrize(
  "arrays, kwargs, error, match",
  [
    (dict(x=_X, y=_Y[:9]), {}, ConfigError, "10 images but 9 labels"),
    (dict(x=_X, y=np.arange(10) - 1), {}, ConfigError, r"labels must lie in \[0, num_classes\); found \[-1\]"),
    (
      dict(x=_X, y=np.arange(10)),
      dict(num_classes=5),
      ConfigError,
      r"labels must lie in \[0, 5\); found \[5, 6, 7, 8, 9\]",
    ),
    (dict(x=_X, y=np.zeros(10, np.float32)), {}, ConfigTypeError, "labels must be integer"),
    (dict(x=_X, y=np.eye(10, dtype=np.int64)), {}, ConfigError, "rank 1.*one-hot"),
    (dict(x=np.zeros((10, 16), np.uint8), y=_Y), {}, ConfigError, r"rank 4 .* got shape \(10, 16\)"),
    (dict(x=np.zeros((10, 2, 4, 4, 1), np.uint8), y=_Y), {}, ConfigError, "rank 5"),
    (dict(x=np.array([["a"] * 4] * 10), y=_Y), {}, ConfigTypeError, "numeric"),
    (dict(x=np.full((10, 4, 4), np.nan, np.float32), y=_Y), {}, ConfigError, "NaN"),
    (
      dict(x=_X[:4], y=_Y[:4]),
      dict(val_fraction=0.1, test_fraction=0.1),
      ConfigError,
      r"val split is empty \(val_fraction=0.1",
    ),
    (dict(x=_X, y=_Y), dict(val_fraction=0.5, test_fraction=0.5), ConfigError, "sum to 1 or more"),
    (dict(x=_X, y=_Y), dict(val_fraction=-0.1), ConfigError, r"val_fraction must be .* \[0, 1\)"),
    (dict(x=_X, y=_Y), dict(normalize="zscore"), ConfigError, "normalize must be one of"),
    (dict(x=_X, y=_Y), dict(images_key="images"), ConfigError, r"has no array 'images'; it holds \['x', 'y'\]"),
    (dict(x=_X, y=_Y), dict(num_classes=0), ConfigError, "num_classes must be a positive int"),
  ],
)
def test_npz_dataset_errors_name_the_file_and_what_was_expected(tmp_path, arrays, kwargs, error, match):
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(error, match=match) as info:
    NpzDataset(path, **kwargs)
  assert "bad.npz" in str(info.value)


def test_npz_dataset_missing_or_unreadable_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    build_dataset(dict(type="NpzDataset", path=str(tmp_path / "missing.npz")))
  (tmp_path / "junk.npz").write_text("not an archive")
  with pytest.raises(ConfigError, match="junk.npz"):
    NpzDataset(tmp_path / "junk.npz")


# ImageFolder ------------------------------------------------------------------------


def _npy_folder(root, classes=("cat", "dog", "eel"), per_class=5, shape=(6, 6, 3)):
  for index, name in enumerate(classes):
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      np.save(root / name / f"{i}.npy", np.full(shape, 10 * index + i, np.uint8))
  return root


def test_image_folder_of_npy_files(tmp_path):
  root = _npy_folder(tmp_path / "images")
  (root / "cat" / "notes.txt").write_text("ignored: not an image suffix")
  data = build_dataset(dict(type="ImageFolder", root=str(root), val_fraction=0.2, test_fraction=0.2))
  assert data.class_names == ("cat", "dog", "eel") and data.num_classes == 3 and data.input_shape == (6, 6, 3)
  assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 3)
  # Labels follow the folders: every image of class k holds values 10k..10k+4.
  all_images = np.concatenate([data.train.images, data.val.images, data.test.images])
  all_labels = np.concatenate([data.train.labels, data.val.labels, data.test.labels])
  assert np.array_equal((all_images[:, 0, 0, 0] * 255).round() // 10, all_labels)


def test_image_folder_with_train_and_test_folders(tmp_path):
  _npy_folder(tmp_path / "train", per_class=4)
  _npy_folder(tmp_path / "test", classes=("cat", "eel"), per_class=2)
  data = ImageFolder(tmp_path, val_fraction=0.25)
  assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 4)
  assert set(data.test.labels.tolist()) == {0, 2}


def test_image_folder_decodes_images_with_pillow(tmp_path):
  image_module = pytest.importorskip("PIL.Image")
  for index, name in enumerate(("a", "b")):
    (tmp_path / name).mkdir()
    for i in range(3):
      size = (8, 8) if i else (10, 12)
      image_module.fromarray(np.full((*size, 3), 40 * index + i, np.uint8)).save(tmp_path / name / f"{i}.png")
  with pytest.raises(ConfigError, match="images differ in shape.*image_size"):
    ImageFolder(tmp_path)
  data = ImageFolder(tmp_path, image_size=(8, 8), channels=1, val_fraction=0.2, test_fraction=0.2)
  assert data.input_shape == (8, 8, 1) and data.num_classes == 2 and len(data.train) == 4


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda root: root.mkdir(), "has no class sub-folders"),
    (lambda root: (_npy_folder(root), (root / "empty").mkdir()), "class folder .*empty.* has no images"),
    (
      lambda root: (_npy_folder(root), np.save(root / "cat" / "9.npy", np.zeros((5, 5, 3), np.uint8))),
      "images differ in shape",
    ),
    (lambda root: (_npy_folder(root), (root / "cat" / "9.npy").write_text("junk")), r"cannot read .*9\.npy"),
    (lambda root: _npy_folder(root, classes=("solo",), per_class=2), "val split is empty"),
  ],
)
def test_image_folder_errors(tmp_path, make, match):
  root = tmp_path / "images"
  make(root)
  with pytest.raises(ConfigError, match=match):
    ImageFolder(root, val_fraction=0.2, test_fraction=0.2)


def test_image_folder_missing_root(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    ImageFolder(tmp_path / "nowhere")


# Streams ----------------------------------------------------------------------------


def _batches(n_batches=3, size=5, num_classes=3, shape=(4, 4)):
  def source():
    for b in range(n_batches):
      yield np.full((size, *shape), b, np.uint8), (np.arange(size) + b) % num_classes

  return source


def test_stream_split_rebatches_and_normalises():
  stream = StreamSplit(_batches(), num_classes=3, name="train")
  sizes = [len(y) for _, y in iterate_batches(jax.random.key(0), stream, 4)]
  assert sizes == [4, 4, 4]
  sizes = [len(y) for _, y in stream.batches(None, 4, drop_last=False)]
  assert sizes == [4, 4, 4, 3]
  images, labels = next(stream.batches(None, 6))
  assert images.shape == (6, 4, 4, 1) and images.dtype == np.float32 and labels.dtype == np.int32
  assert images[5].max() == pytest.approx(1 / 255)
  assert len(stream.take(7)) == 7 and len(stream.take()) == 15 and stream.image_shape == (4, 4, 1)
  with pytest.raises(TypeError, match="num_examples"):
    len(stream)
  assert len(StreamSplit(_batches(), num_classes=3, num_examples=15)) == 15


def test_stream_split_passes_the_epoch_key_to_sources_that_take_one():
  seen = []

  def source(key):
    seen.append(int(jax.random.randint(key, (), 0, 1000)))
    yield np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.int64)

  stream = StreamSplit(source, num_classes=1)
  list(iterate_batches(jax.random.key(1), stream, 2))
  list(iterate_batches(jax.random.key(2), stream, 2))
  assert len(seen) == 3 and seen[1] != seen[2]


def test_one_shot_iterators_stream_once():
  stream = StreamSplit(_batches()(), num_classes=3, name="once")
  assert len(list(stream.batches(None, 5))) == 3
  with pytest.raises(ConfigError, match="one-shot iterator.*already read"):
    list(stream.batches(None, 5))
  listed = StreamSplit(list(_batches()()), num_classes=3)  # a list iterates again
  assert len(list(listed.batches(None, 5))) == len(list(listed.batches(None, 5))) == 3


_GOOD = (np.zeros((4, 3, 3)), np.zeros(4, np.int64))


@pytest.mark.parametrize(
  "batches, match",
  [
    ([_GOOD, (np.zeros((4, 3, 3)), np.full(4, 7))], r"batch 1: labels must lie in \[0, 3\)"),
    ([_GOOD, (np.zeros((4, 5, 5)), np.zeros(4, np.int64))], r"batch 1: images of shape \(5, 5, 1\)"),
    ([_GOOD, (np.zeros((4, 3, 3)), np.zeros(3, np.int64))], "batch 1: 4 images but 3 labels"),
    ([_GOOD, np.zeros(3)], r"batch 1: a batch must be an \(images, labels\) pair"),
  ],
)
def test_stream_errors_name_the_batch(batches, match):
  stream = StreamSplit(batches, num_classes=3, name="train")
  with pytest.raises(ConfigError, match=f"'train', {match}"):
    list(stream.batches(None, 2))


def test_stream_construction_errors():
  with pytest.raises(ConfigError, match="yielded no batch"):
    StreamSplit([], num_classes=2, name="val")
  with pytest.raises(ConfigError, match="batch 0: 2 images but 3 labels"):
    StreamSplit([(np.zeros((2, 3, 3)), np.zeros(3, np.int64))], num_classes=2)
  with pytest.raises(ConfigTypeError, match="callable returning an iterable"):
    StreamSplit(42, num_classes=2)
  with pytest.raises(ConfigError, match="standardize.*needs mean"):
    StreamSplit(_batches(), num_classes=3, normalize="standardize")
  with pytest.raises(ConfigError, match="num_classes=... is required"):
    StreamingDataset(train=_batches(), val=_batches())


@pytest.fixture
def data_module(tmp_path, monkeypatch):
  """A module on sys.path with a batch generator and a registered data set builder."""
  module_name = f"jm_test_data_{uuid.uuid4().hex[:8]}"
  builder = f"TinyData{uuid.uuid4().hex[:8]}"
  (tmp_path / f"{module_name}.py").write_text(
    textwrap.dedent(f"""
      import numpy as np
      from jaxmutate.data import Dataset, Split
      from jaxmutate.registry import DATASETS

      def train_batches():
        for b in range(4):
          yield np.full((8, 4, 4, 3), b, np.uint8), np.arange(8) % 2

      @DATASETS.register_module()
      def {builder}(n=6, broken=False):
        split = Split(np.zeros((n, 3), np.float32), np.arange(n, dtype=np.int32) % 2)
        return "not a data set" if broken else Dataset(split, split, split, num_classes=2)
      """)
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  yield module_name, builder
  sys.modules.pop(module_name, None)
  DATASETS._entries.pop(builder, None)


def test_streaming_dataset_from_a_config(data_module):
  module_name, _ = data_module
  val = (np.zeros((6, 4, 4, 3), np.uint8), np.arange(6) % 2)
  data = build_dataset(dict(type="StreamingDataset", train=f"{module_name}:train_batches", val=val, num_classes=2))
  assert isinstance(data.train, StreamSplit) and isinstance(data.val, Split) and data.test is data.val
  assert data.input_shape == (4, 4, 3) and data.num_classes == 2
  assert len(list(iterate_batches(jax.random.key(0), data.train, 16))) == 2
  with pytest.raises(ConfigError, match="has no 'nope'"):
    build_dataset(dict(type="StreamingDataset", train=f"{module_name}:nope", val=val, num_classes=2))
  with pytest.raises(ConfigError, match="splits' images differ in shape"):
    wrong_size = (np.zeros((6, 5, 5, 3), np.uint8), np.zeros(6, np.int64))
    StreamingDataset(train=f"{module_name}:train_batches", val=wrong_size, num_classes=2)


def test_user_builders_load_through_custom_imports(data_module):
  module_name, builder = data_module
  custom_imports = dict(imports=[module_name], allow_failed_imports=False)
  data = build_dataset(dict(type=builder, n=4, custom_imports=custom_imports), seed=0)  # seed: not taken, dropped
  assert data.num_classes == 2 and data.input_shape == (3,)
  with pytest.raises(ConfigTypeError, match="must return a jaxmutate.data.Dataset, got str"):
    build_dataset(dict(type=builder, broken=True))
  with pytest.raises(ConfigTypeError, match="unexpected keyword"):
    build_dataset(dict(type=builder, colour="red"))


def test_build_dataset_errors():
  with pytest.raises(UnknownTypeError, match="'NpzDatset'.*Did you mean.*NpzDataset"):
    build_dataset(dict(type="NpzDatset", path="x.npz"))
  with pytest.raises(ConfigTypeError, match="data must be a dict"):
    build_dataset("digits")


def test_check_dataset_rejects_empty_and_mismatched_splits():
  good = Split(np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.int32))
  with pytest.raises(ConfigError, match="the val split is empty"):
    check_dataset(Dataset(good, good.take(0), good, num_classes=1))
  with pytest.raises(ConfigError, match=r"labels must lie in \[0, 1\)"):
    check_dataset(Dataset(good, Split(good.images, np.ones(4, np.int32)), good, num_classes=1))
  with pytest.raises(ConfigTypeError, match="float32"):
    check_dataset(Dataset(good, Split(good.images.astype(np.float64), good.labels), good, num_classes=1))
  with pytest.raises(ConfigError, match="differ in shape"):
    check_dataset(Dataset(good, Split(np.zeros((4, 3, 3, 1), np.float32), good.labels), good, num_classes=1))
  with pytest.raises(ConfigError, match="2 class_names for 1 classes"):
    check_dataset(Dataset(good, good, good, num_classes=1, class_names=("a", "b")))


def test_iterate_batches_on_arrays_is_unchanged():
  split = Split(np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1), np.arange(10, dtype=np.int32))
  batches = list(iterate_batches(jax.random.key(0), split, 4))
  assert [len(y) for _, y in batches] == [4, 4]
  assert [len(y) for _, y in iterate_batches(jax.random.key(0), split, 4, drop_last=False)] == [4, 4, 2]
  with pytest.raises(ValueError, match="larger than the split"):
    list(iterate_batches(jax.random.key(0), split, 11))
