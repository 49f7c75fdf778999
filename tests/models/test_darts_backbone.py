"""The DARTS search space: structure, aliases, derived network equivalence, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.algorithms import discrete_arch_weights
from jaxmutate.models import (
  DARTS_OPS,
  DartsBackbone,
  darts_genotype,
  derive_discrete_network,
  discrete_network_variables,
)
from jaxmutate.spaces import EdgeSubsetSpace

FAST = {"xla_backend_optimization_level": 0}  # compiles the supernet several times faster on CPU
X = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))


def shapes_of(net):
  """Variables of ``net`` without running it (eval_shape keeps the mutable specs)."""
  return jax.eval_shape(lambda: net.init(jax.random.key(0), X, None))


def test_aliases_share_arch_params_per_cell_type():
  net = DartsBackbone(base_channels=4, num_layers=3, num_nodes=2, num_classes=10, reduction_layers=(1,))
  mutator = jm.DiffModuleMutator().prepare_from_supernet(shapes_of(net))
  groups = {mutator.group_key(g): names for g, names in mutator.search_groups.items()}
  # 2 cell types × (2 routes + 2 + 3 edges).
  assert len(groups) == 14
  assert groups["normal_n2_p0"] == ("cell0.normal_n2.normal_n2_p0", "cell2.normal_n2.normal_n2_p0")
  assert groups["normal_n3"] == ("cell0.normal_n3", "cell2.normal_n3")
  assert groups["reduce_n3_p2"] == ("cell1.reduce_n3.reduce_n3_p2",)
  spec = mutator.group_spec(next(g for g, k in enumerate(groups) if k == "normal_n3_p1"))
  assert spec.choice_names == DARTS_OPS
  route_spec = mutator.name_to_spec["cell0.normal_n3"]
  assert (
    route_spec.choice_names == ("normal_n3_p0", "normal_n3_p1", "normal_n3_p2") and route_spec.space.num_chosen == 2
  )


def test_candidates_live_under_the_edge_scope_and_reduction_halves():
  net = DartsBackbone(base_channels=4, num_layers=3, num_nodes=2, num_classes=None, reduction_layers=(1,))
  variables = shapes_of(net)
  edge = variables["params"]["cell1"]["reduce_n2"]["reduce_n2_p0"]
  # Convs have weights (at stride 2 skip_connect is a FactorizedReduce); pools only
  # BatchNorm statistics (DARTS searches with affine=False BatchNorm).
  assert sorted(edge) == sorted(["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"])
  stats = variables["batch_stats"]["cell1"]["reduce_n2"]["reduce_n2_p0"]
  assert sorted(stats) == sorted(set(DARTS_OPS) - {"zero"})
  assert "skip_connect" not in variables["params"]["cell0"]["normal_n2"]["normal_n2_p0"]  # identity at stride 1
  assert "preproc0" in variables["params"]["cell2"]  # FactorizedReduce after the reduction cell
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  choices = mutator.set_choices(mutator.init_arch_params(jax.random.key(1)))
  out = jax.eval_shape(lambda v: net.apply(v, X, choices), variables)
  assert out.shape == (4, 4, 4, 2 * 8)  # reduced once, 2 nodes × 2C channels


@pytest.mark.slow
def test_derived_network_equals_supernet_with_one_hot_weights():
  kwargs = dict(base_channels=4, num_layers=2, num_nodes=2, num_classes=10, reduction_layers=(1,))
  net = DartsBackbone(**kwargs)
  weighted = DartsBackbone(
    **kwargs, mutable_cfg=dict(direct_weights=True), route_cfg=dict(type="DiffChoiceRoute", direct_weights=True)
  )
  variables = jax.jit(lambda k, x: net.init(k, x, None), compiler_options=FAST)(jax.random.key(1), X)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  # A genotype that uses every kind of op, "zero" included, and non-adjacent inputs.
  group_choices = {}
  for g in mutator.search_groups:
    spec = mutator.group_spec(g)
    if not isinstance(spec.space, EdgeSubsetSpace):
      group_choices[g] = jnp.int32((3 * g) % len(DARTS_OPS))
    else:
      group_choices[g] = jnp.arange(spec.num_choices - spec.space.num_chosen, spec.num_choices, dtype=jnp.int32)[::-1]
  fix_subnet = mutator.export_fix_subnet(group_choices)
  assert "zero" in {v["chosen"] for v in fix_subnet.values() if isinstance(v["chosen"], str)}
  discrete = derive_discrete_network(net, fix_subnet)
  sub_vars = discrete_network_variables(discrete, variables, X)
  choices = mutator.set_choices(discrete_arch_weights(mutator, group_choices))

  # Inference-mode and training-mode BatchNorm, one compile each.
  def supernet_out(v, x):
    return weighted.apply(v, x, choices, train=False), weighted.apply(
      v, x, choices, train=True, mutable=["batch_stats"]
    )

  def discrete_out(v, x):
    return discrete.apply(v, x, train=False), discrete.apply(v, x, train=True, mutable=["batch_stats"])

  (eval_expected, (train_expected, stats_expected)) = jax.jit(supernet_out, compiler_options=FAST)(variables, X)
  (eval_got, (train_got, stats_got)) = jax.jit(discrete_out, compiler_options=FAST)(sub_vars, X)
  np.testing.assert_allclose(eval_got, eval_expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(train_got, train_expected, rtol=1e-5, atol=1e-5)
  # The chosen ops' BatchNorm statistics move identically in both networks.
  stem = lambda stats: stats["batch_stats"]["stem"]["bn"]["mean"]
  np.testing.assert_allclose(stem(stats_got), stem(stats_expected), rtol=1e-5, atol=1e-6)
  # The derived network holds only the chosen ops: far fewer weights.
  count = lambda tree: sum(np.size(a) for a in jax.tree.leaves(tree))
  assert count(sub_vars["params"]) < count(variables["params"]) / 3
  edges = [e for node in discrete.normal_genotype + discrete.reduce_genotype for e in node]
  assert all(len(node) == 2 for node in discrete.normal_genotype + discrete.reduce_genotype)
  assert {op for _, _, op in edges} <= set(DARTS_OPS)


def test_genotype_reads_mmrazor_subnet_files():
  net = DartsBackbone(base_channels=4, num_layers=1, num_nodes=2, reduction_layers=())
  fix_subnet = {
    "normal_n2": {"chosen": ["normal_n2_p1", "normal_n2_p0"]},
    "normal_n2_p0": {"chosen": ["sep_conv_3x3"]},  # MMRazor writes op choices as one-element lists
    "normal_n2_p1": {"chosen": "skip_connect"},
    "normal_n3": {"chosen": ["normal_n3_p2", "normal_n3_p0"]},
    "normal_n3_p0": {"chosen": "dil_conv_3x3"},
    "normal_n3_p1": {"chosen": "zero"},
    "normal_n3_p2": {"chosen": "max_pool_3x3"},
  }
  genotype = darts_genotype(net, fix_subnet, reduction=False)
  assert genotype == (
    (("normal_n2_p0", 0, "sep_conv_3x3"), ("normal_n2_p1", 1, "skip_connect")),
    (("normal_n3_p0", 0, "dil_conv_3x3"), ("normal_n3_p2", 2, "max_pool_3x3")),
  )
  with pytest.raises(KeyError, match="'normal_n3_p0'"):
    darts_genotype(net, {k: v for k, v in fix_subnet.items() if k != "normal_n3_p0"}, reduction=False)
  with pytest.raises(ValueError, match="'normal_n2_p1': unknown operation 'conv_9x9'"):
    darts_genotype(net, {**fix_subnet, "normal_n2_p1": {"chosen": "conv_9x9"}}, reduction=False)
  with pytest.raises(ValueError, match="unknown edge 'normal_n2_p7'"):
    darts_genotype(net, {**fix_subnet, "normal_n2": {"chosen": ["normal_n2_p7", "normal_n2_p0"]}}, reduction=False)


def test_unknown_operation_names_are_named():
  with pytest.raises(ValueError, match=r"unknown operation name\(s\) \['conv_7x7'\]"):
    jm.build(dict(type="DartsBackbone", op_names=["sep_conv_3x3", "conv_7x7"]))


def test_route_num_chosen_larger_than_edges():
  with pytest.raises(ValueError, match="num_chosen=3 is larger than the number of edges.*normal_n2"):
    DartsBackbone(route_cfg=dict(type="DiffChoiceRoute", num_chosen=3))


def test_bad_layout_and_mutable_configs():
  with pytest.raises(ValueError, match="reduction_layers"):
    DartsBackbone(num_layers=2, reduction_layers=(4,))
  with pytest.raises(ValueError, match="num_nodes must be an int >= 1"):
    DartsBackbone(num_nodes=0)
  with pytest.raises(TypeError, match="mutable_cfg must build a DiffMutableModule"):
    DartsBackbone(mutable_cfg=dict(type="OneShotMutableOP"))
  with pytest.raises(ValueError, match="may not set 'candidates'"):
    DartsBackbone(mutable_cfg=dict(type="DiffMutableOP", candidates={}))


def test_gumbel_backbone_takes_a_temperature():
  net = jm.build(
    dict(
      type="DartsBackbone",
      base_channels=4,
      num_layers=1,
      num_nodes=2,
      num_classes=10,
      mutable_cfg=dict(type="GumbelMutableOP", hard=True),
    )
  )
  variables = shapes_of(net)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  alpha = mutator.init_arch_params(jax.random.key(0))
  out = jax.eval_shape(
    lambda v: net.apply(v, X, mutator.set_choices(alpha), tau=0.5, rngs={"gumbel": jax.random.key(1)}), variables
  )
  assert out.shape == (4, 10)
  with pytest.raises(ValueError, match="tau must be > 0"):
    jax.eval_shape(
      lambda v: net.apply(v, X, mutator.set_choices(alpha), tau=0.0, rngs={"gumbel": jax.random.key(1)}), variables
    )
