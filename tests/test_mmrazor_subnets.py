"""MMRazor's subnet files as published: DARTS files that list only the kept edges, 0.x and plain layouts."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import jaxmutate as jm
from jaxmutate.errors import SubnetEntryMissingError, SubnetFileError, SubnetFileTypeError

FIXTURES = Path(__file__).parent / "fixtures"
DARTS_FILE = FIXTURES / "darts_subnet_cifar_mmrazor.yaml"


def _random_variables(shapes, seed=0):
  """Variables of the supernet's shapes without running its (slow to compile) init: the tests need a
  network whose output depends on every op, not trained weights. Variances are positive."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if "var" in jax.tree_util.keystr(path):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def darts():
  # num_nodes=4 as MMRazor's CIFAR DARTS; a normal and a reduction cell; the file's operations only.
  net = jm.DartsBackbone(
    base_channels=2,
    num_layers=2,
    num_nodes=4,
    stem_multiplier=1,
    num_classes=3,
    reduction_layers=(1,),
    op_names=("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"),
  )
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 1)), jnp.float32)
  variables = _random_variables(jax.eval_shape(lambda: net.init(jax.random.key(0), x, None)))
  return net, variables, x, jm.DiffModuleMutator().prepare_from_supernet(variables)


def test_darts_file_with_only_the_kept_edges_loads_and_exports_unchanged(darts):
  net, variables, x, mutator = darts
  published = yaml.safe_load(DARTS_FILE.read_text())
  assert "normal_n3_p2" not in published and "normal_n3_p2" in [mutator.group_key(g) for g in mutator.search_groups]
  loaded = mutator.load_fix_subnet(DARTS_FILE)
  assert sorted(loaded) == sorted(mutator.search_groups)  # every group has a choice, the omitted ones too
  by_key = {mutator.group_key(g): g for g in mutator.search_groups}
  assert np.asarray(loaded[by_key["normal_n5"]]).tolist() == [0, 2]
  assert mutator.group_space(by_key["normal_n5_p2"]).export(loaded[by_key["normal_n5_p2"]]) == "dil_conv_3x3"
  exported = mutator.export_fix_subnet(loaded)
  assert exported == published and list(exported) == list(published)  # MMRazor's layout, in its order


def test_omitted_operations_do_not_change_the_network(darts):
  net, variables, x, mutator = darts
  loaded = mutator.load_fix_subnet(DARTS_FILE)
  by_key = {mutator.group_key(g): g for g in mutator.search_groups}
  other = dict(loaded)
  for key in ("normal_n3_p2", "normal_n4_p3", "reduce_n3_p0"):  # inside edges the routes do not keep
    other[by_key[key]] = jnp.int32(1 - int(loaded[by_key[key]]))
  same = net.apply(variables, x, mutator.set_choices(loaded))
  np.testing.assert_allclose(net.apply(variables, x, mutator.set_choices({**loaded, **other})), same, rtol=1e-6)
  # reduce_n2_p0 is a kept edge: changing its op does change the output, so the check above is not vacuous.
  changed = {**loaded, by_key["reduce_n2_p0"]: jnp.int32(1)}  # max_pool_3x3 -> skip_connect
  assert not np.allclose(net.apply(variables, x, mutator.set_choices(changed)), same)


def test_a_missing_operation_of_a_kept_edge_is_still_an_error(darts, tmp_path):
  _, _, _, mutator = darts
  published = yaml.safe_load(DARTS_FILE.read_text())
  del published["normal_n5_p2"]  # normal_n5 keeps p0 and p2
  path = tmp_path / "incomplete.yaml"
  path.write_text(yaml.safe_dump(published))
  with pytest.raises(SubnetEntryMissingError, match=r"incomplete\.yaml.*'normal_n5_p2'"):
    mutator.load_fix_subnet(path)
  # A missing route is missing whatever it would have kept.
  published = yaml.safe_load(DARTS_FILE.read_text())
  del published["reduce_n3"]
  with pytest.raises(SubnetEntryMissingError, match="'reduce_n3'"):
    mutator.load_fix_subnet(published)


def test_derived_network_of_the_published_file(darts):
  net, variables, x, mutator = darts
  fix_subnet = jm.read_fix_subnet(DARTS_FILE)
  genotype = jm.models.darts_genotype(net, fix_subnet, reduction=False)
  assert genotype[3] == (("normal_n5_p0", 0, "skip_connect"), ("normal_n5_p2", 2, "dil_conv_3x3"))
  discrete = jm.models.derive_discrete_network(net, fix_subnet)
  assert jax.eval_shape(lambda: discrete.init(jax.random.key(0), x))["params"]


@pytest.fixture(scope="module")
def shufflenet():
  net = jm.SearchableShuffleNetV2(
    num_classes=3, arch_setting=((8, 2, 1), (16, 2, 2)), stem_channels=8, last_channels=16
  )
  # Loading needs the recorded specs only, not weights: shapes are enough (and fast).
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)), None))
  return jm.OneShotModuleMutator().prepare_from_supernet(variables)


@pytest.mark.parametrize(
  "name", ["spos_subnet_mmrazor0.yaml", "spos_subnet_plain.yaml", "spos_subnet_mmrazor1_meta.yaml"]
)
def test_older_and_plain_spos_layouts_load_like_the_1x_file(shufflenet, name):
  mutator = shufflenet
  expected = {
    "layers.0.0": {"chosen": "shuffle_7x7"},
    "layers.0.1": {"chosen": "shuffle_3x3"},
    "layers.1.0": {"chosen": "shuffle_xception"},
    "layers.1.1": {"chosen": "shuffle_5x5"},
  }
  loaded = mutator.load_fix_subnet(FIXTURES / name)
  assert {g: int(v) for g, v in loaded.items()} == {g: int(v) for g, v in mutator.load_fix_subnet(expected).items()}
  assert mutator.export_fix_subnet(loaded) == expected


def test_subnet_files_matching_nothing_name_the_file_and_what_was_expected(shufflenet, tmp_path):
  path = tmp_path / "other_model.yaml"
  path.write_text("neck.layers.0.0: {chosen: shuffle_7x7}\nneck.layers.0.1: {chosen: shuffle_3x3}\n")
  with pytest.raises(
    SubnetFileError, match=r"other_model\.yaml.*unknown entries.*expected keys.*'layers\.0\.0'.*prefix="
  ):
    shufflenet.load_fix_subnet(path)
  (tmp_path / "list.yaml").write_text("- shuffle_7x7\n")
  with pytest.raises(SubnetFileTypeError, match=r"list\.yaml.*mapping.*plain"):
    shufflenet.load_fix_subnet(tmp_path / "list.yaml")
  (tmp_path / "bad_value.yaml").write_text("stage_0_block_0: [shuffle_9x9]\n")
  with pytest.raises(SubnetFileError, match=r"bad_value\.yaml.*'layers\.0\.0'.*shuffle_9x9"):
    shufflenet.load_fix_subnet(tmp_path / "bad_value.yaml")
