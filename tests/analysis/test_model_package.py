"""Models from a Flax model package, unmodified: jax-resnet's ResNet (basic and bottleneck blocks).

jax-resnet (a test extra; pure Python on jax and flax, no weights downloaded unless asked) builds its
networks from its own `ConvBlock`, `ResNetSkipConnection` and `Sequential`. In a ResNet every convolution's
input and output channels belong to units (residual sums share one unit per stage), so keeping half of
every unit halves every kernel's two channel axes, except the image's 3 input channels and the 10 classes.
"""

import jax
import numpy as np
import pytest
from test_zoo import check_unmodified_model

jax_resnet = pytest.importorskip("jax_resnet")


def expect_units(sizes):
  def check(found):
    assert sorted(found.values()) == sorted(sizes), found

  return check


def every_kernel_halved(variables, small):
  flat = {
    "/".join(k.key for k in p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  }
  sliced = {
    "/".join(k.key for k in p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(small["params"])[0]
  }
  for path, shape in flat.items():
    if not path.endswith("kernel"):
      continue
    *spatial, cin, cout = shape
    if len(spatial) == 2:  # a convolution: the image's channels stay
      want = (*spatial, cin if cin == 3 else cin // 2, cout // 2)
    else:  # the classifier: its classes stay
      want = (cin // 2, cout)
    assert sliced[path] == want, (path, shape, sliced[path])
  assert sum(np.size(v) for v in jax.tree.leaves(small["params"])) < sum(
    np.size(v) for v in jax.tree.leaves(variables["params"])
  )


@pytest.mark.slow
def test_jax_resnet_basic_blocks():
  # Stem 64 (hard-coded by jax-resnet), two stages of one basic block: widths 8 and 16.
  model = jax_resnet.ResNet(jax_resnet.ResNetBlock, stage_sizes=[1, 1], n_classes=10, hidden_sizes=(8, 16))
  # Units: the stem; per block its inner conv and its residual sum (conv2 + projection).
  check_unmodified_model(
    model, (1, 16, 16, 3), np.float32, expect_units([64, 8, 8, 16, 16]), every_kernel_halved, channelwise=True
  )


@pytest.mark.slow
def test_jax_resnet_bottleneck_blocks():
  model = jax_resnet.ResNet(jax_resnet.ResNetBottleneckBlock, stage_sizes=[1], n_classes=10, hidden_sizes=(8,))
  # Units: the stem (64); the block's two inner convs (8, 8); its residual sum, 4 x 8 wide.
  check_unmodified_model(
    model, (1, 16, 16, 3), np.float32, expect_units([64, 8, 8, 32]), every_kernel_halved, channelwise=True
  )
