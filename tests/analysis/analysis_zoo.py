"""Unmodified Flax models for the channel-analysis coverage sweep (written as a user would, no jaxmutate inside).

Each entry of :data:`ZOO` is ``(model, sample input shape, apply kwargs)``.
``torchvision_resnet`` follows torchvision's layout and names (ResNet-18/50).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

BN = dict(use_running_average=True, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  expansion = 1

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.features, (3, 3), self.strides, padding=1, use_bias=False, name="conv1")(x)
    y = nn.relu(nn.BatchNorm(**BN, name="bn1")(y))
    y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(y)
    y = nn.BatchNorm(**BN, name="bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False, name="downsample_0")(x)
      x = nn.BatchNorm(**BN, name="downsample_1")(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  features: int
  strides: int = 1
  expansion = 4

  @nn.compact
  def __call__(self, x):
    out = self.features * 4
    y = nn.relu(nn.BatchNorm(**BN, name="bn1")(nn.Conv(self.features, (1, 1), use_bias=False, name="conv1")(x)))
    y = nn.Conv(self.features, (3, 3), self.strides, padding=1, use_bias=False, name="conv2")(y)
    y = nn.relu(nn.BatchNorm(**BN, name="bn2")(y))
    y = nn.BatchNorm(**BN, name="bn3")(nn.Conv(out, (1, 1), use_bias=False, name="conv3")(y))
    if self.strides != 1 or x.shape[-1] != out:
      x = nn.Conv(out, (1, 1), self.strides, use_bias=False, name="downsample_0")(x)
      x = nn.BatchNorm(**BN, name="downsample_1")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """torchvision's ResNet: ``conv1 7x7/2, bn1, maxpool 3x3/2, layer1..4, avgpool, fc``."""

  block: Any = BasicBlock
  layers: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: int = 64
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.stem, (7, 7), 2, padding=3, use_bias=False, name="conv1")(x)
    x = nn.relu(nn.BatchNorm(**BN, name="bn1")(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, (count, width) in enumerate(zip(self.layers, self.widths)):
      for i in range(count):
        strides = 2 if stage > 0 and i == 0 else 1
        x = self.block(width, strides, name=f"layer{stage + 1}_{i}")(x)
    return nn.Dense(self.num_classes, name="fc")(x.mean((1, 2)))


def torchvision_resnet(depth: int = 18, num_classes: int = 1000) -> ResNet:
  """ResNet-18/34 (basic blocks) or ResNet-50 (bottlenecks) in torchvision's layout."""
  if depth == 18:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes)
  if depth == 34:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes)
  if depth == 50:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes)
  raise ValueError(f"depth must be 18, 34 or 50, got {depth}")


class InvertedResidual(nn.Module):
  features: int
  expand: int
  strides: int = 1
  se: bool = False
  act: Any = nn.relu6

  @nn.compact
  def __call__(self, x):
    hidden = x.shape[-1] * self.expand
    y = x
    if self.expand != 1:
      y = self.act(nn.BatchNorm(**BN, name="expand_bn")(nn.Conv(hidden, (1, 1), use_bias=False, name="expand")(y)))
    y = nn.Conv(hidden, (3, 3), self.strides, padding=1, feature_group_count=hidden, use_bias=False, name="dw")(y)
    y = self.act(nn.BatchNorm(**BN, name="dw_bn")(y))
    if self.se:
      s = y.mean((1, 2), keepdims=True)
      s = nn.silu(nn.Conv(max(1, x.shape[-1] // 4), (1, 1), name="se_reduce")(s))
      y = y * nn.sigmoid(nn.Conv(hidden, (1, 1), name="se_expand")(s))
    y = nn.BatchNorm(**BN, name="project_bn")(nn.Conv(self.features, (1, 1), use_bias=False, name="project")(y))
    return x + y if self.strides == 1 and x.shape[-1] == self.features else y


class MobileNetV2(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu6(nn.BatchNorm(**BN, name="stem_bn")(nn.Conv(8, (3, 3), 2, padding=1, use_bias=False, name="stem")(x)))
    x = InvertedResidual(8, 1, name="b0")(x)
    x = InvertedResidual(16, 4, 2, name="b1")(x)
    x = InvertedResidual(16, 4, name="b2")(x)
    x = nn.relu6(nn.BatchNorm(**BN, name="last_bn")(nn.Conv(32, (1, 1), use_bias=False, name="last")(x)))
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


class EfficientNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.silu(nn.BatchNorm(**BN, name="stem_bn")(nn.Conv(8, (3, 3), 2, padding=1, use_bias=False, name="stem")(x)))
    x = InvertedResidual(8, 1, se=True, act=nn.silu, name="b0")(x)
    x = InvertedResidual(16, 4, 2, se=True, act=nn.silu, name="b1")(x)
    x = InvertedResidual(16, 4, se=True, act=nn.silu, name="b2")(x)
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


def channel_shuffle(x, groups=2):
  n, h, w, c = x.shape
  return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)


class ShuffleBlock(nn.Module):
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    half = self.features // 2
    if self.strides == 1:
      left, right = jnp.split(x, 2, axis=-1)
    else:
      left = right = x
      left = nn.Conv(x.shape[-1], (3, 3), 2, padding=1, feature_group_count=x.shape[-1], use_bias=False, name="b1_dw")(
        left
      )
      left = nn.BatchNorm(**BN, name="b1_dw_bn")(left)
      left = nn.relu(nn.BatchNorm(**BN, name="b1_pw_bn")(nn.Conv(half, (1, 1), use_bias=False, name="b1_pw")(left)))
    r = nn.relu(nn.BatchNorm(**BN, name="b2_pw1_bn")(nn.Conv(half, (1, 1), use_bias=False, name="b2_pw1")(right)))
    r = nn.Conv(half, (3, 3), self.strides, padding=1, feature_group_count=half, use_bias=False, name="b2_dw")(r)
    r = nn.BatchNorm(**BN, name="b2_dw_bn")(r)
    r = nn.relu(nn.BatchNorm(**BN, name="b2_pw2_bn")(nn.Conv(half, (1, 1), use_bias=False, name="b2_pw2")(r)))
    return channel_shuffle(jnp.concatenate([left, r], axis=-1))


class ShuffleNetV2(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.BatchNorm(**BN, name="stem_bn")(nn.Conv(8, (3, 3), 2, padding=1, use_bias=False, name="stem")(x)))
    x = ShuffleBlock(16, 2, name="s0")(x)
    x = ShuffleBlock(16, 1, name="s1")(x)
    x = ShuffleBlock(16, 1, name="s2")(x)
    x = nn.relu(nn.BatchNorm(**BN, name="last_bn")(nn.Conv(32, (1, 1), use_bias=False, name="last")(x)))
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


class DenseNet(nn.Module):
  growth: int = 4

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (3, 3), padding=1, use_bias=False, name="stem")(x)
    for i in range(3):
      y = nn.relu(nn.BatchNorm(**BN, name=f"d{i}_bn1")(x))
      y = nn.Conv(8, (1, 1), use_bias=False, name=f"d{i}_conv1")(y)
      y = nn.relu(nn.BatchNorm(**BN, name=f"d{i}_bn2")(y))
      y = nn.Conv(self.growth, (3, 3), padding=1, use_bias=False, name=f"d{i}_conv2")(y)
      x = jnp.concatenate([x, y], axis=-1)
    x = nn.relu(nn.BatchNorm(**BN, name="final_bn")(x))
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


class VGG(nn.Module):
  @nn.compact
  def __call__(self, x):
    for i, width in enumerate((8, 8, 16, 16)):
      x = nn.relu(nn.BatchNorm(**BN, name=f"bn{i}")(nn.Conv(width, (3, 3), padding=1, name=f"conv{i}")(x)))
      if i % 2:
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)  # flatten (2x2x16): the classifier reads each channel at 4 positions
    x = nn.relu(nn.Dense(32, name="fc1")(x))
    return nn.Dense(10, name="fc2")(x)


class Attention(nn.Module):
  """Multi-head self-attention written with reshapes and einsum (timm-style: one fused qkv projection)."""

  dim: int
  heads: int

  @nn.compact
  def __call__(self, x, bias=None):
    b, t, _ = x.shape
    head_dim = self.dim // self.heads
    qkv = nn.Dense(3 * self.dim, name="qkv")(x).reshape(b, t, 3, self.heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
    if bias is not None:
      logits = logits + bias
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, t, self.dim)
    return nn.Dense(self.dim, name="proj")(out)


class Mlp(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(x.shape[-1], name="fc2")(nn.gelu(nn.Dense(self.hidden, name="fc1")(x)))


class ViT(nn.Module):
  dim: int = 16
  depth: int = 2

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.dim, (4, 4), 4, name="patch_embed")(x)
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, c))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c)), x], axis=1)
    x = x + self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, c))
    for i in range(self.depth):
      x = x + Attention(self.dim, 2, name=f"block{i}_attn")(nn.LayerNorm(name=f"block{i}_norm1")(x))
      x = x + Mlp(2 * self.dim, name=f"block{i}_mlp")(nn.LayerNorm(name=f"block{i}_norm2")(x))
    x = nn.LayerNorm(name="norm")(x)
    return nn.Dense(10, name="head")(x[:, 0])


class WindowAttentionBlock(nn.Module):
  """Swin's block: window partition, attention with a relative position bias, window merge, MLP."""

  dim: int = 16
  heads: int = 2
  window: int = 2

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    ws = self.window
    y = nn.LayerNorm(name="norm1")(x)
    y = y.reshape(b, h // ws, ws, w // ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
    table = self.param("relative_position_bias_table", nn.initializers.normal(0.02), ((2 * ws - 1) ** 2, self.heads))
    coords = jnp.stack(jnp.meshgrid(jnp.arange(ws), jnp.arange(ws), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + ws - 1
    index = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
    bias = table[index.reshape(-1)].reshape(ws * ws, ws * ws, self.heads).transpose(2, 0, 1)
    y = Attention(self.dim, self.heads, name="attn")(y, bias[None])
    y = y.reshape(b, h // ws, w // ws, ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    x = x + y
    return x + Mlp(2 * self.dim, name="mlp")(nn.LayerNorm(name="norm2")(x))


class Swin(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(name="patch_norm")(nn.Conv(16, (2, 2), 2, name="patch_embed")(x))
    x = WindowAttentionBlock(name="block0")(x)
    x = WindowAttentionBlock(name="block1")(x)
    return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x).mean((1, 2)))


class UNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    def block(x, width, name):
      x = nn.relu(nn.BatchNorm(**BN, name=f"{name}_bn1")(nn.Conv(width, (3, 3), padding=1, name=f"{name}_conv1")(x)))
      return nn.relu(nn.BatchNorm(**BN, name=f"{name}_bn2")(nn.Conv(width, (3, 3), padding=1, name=f"{name}_conv2")(x)))

    e1 = block(x, 8, "enc1")
    e2 = block(nn.max_pool(e1, (2, 2), (2, 2)), 16, "enc2")
    mid = block(nn.max_pool(e2, (2, 2), (2, 2)), 16, "mid")
    u2 = nn.ConvTranspose(16, (2, 2), (2, 2), name="up2")(mid)
    d2 = block(jnp.concatenate([u2, e2], -1), 16, "dec2")
    u1 = nn.ConvTranspose(8, (2, 2), (2, 2), name="up1")(d2)
    d1 = block(jnp.concatenate([u1, e1], -1), 8, "dec1")
    return nn.Conv(2, (1, 1), name="head")(d1)


class MixerBlock(nn.Module):
  tokens_hidden: int
  channels_hidden: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(name="norm1")(x).swapaxes(1, 2)
    y = nn.Dense(x.shape[1], name="token_fc2")(nn.gelu(nn.Dense(self.tokens_hidden, name="token_fc1")(y)))
    x = x + y.swapaxes(1, 2)
    y = nn.LayerNorm(name="norm2")(x)
    return x + nn.Dense(x.shape[-1], name="channel_fc2")(nn.gelu(nn.Dense(self.channels_hidden, name="channel_fc1")(y)))


class MLPMixer(nn.Module):
  dim: int = 16
  tokens_hidden: int = 8
  channels_hidden: int = 32
  depth: int = 2

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.dim, (2, 2), 2, name="stem")(x)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    for i in range(self.depth):
      x = MixerBlock(self.tokens_hidden, self.channels_hidden, name=f"mixer{i}")(x)
    return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x).mean(1))


class GRUClassifier(nn.Module):
  """A scan-based recurrent classifier (``nn.RNN`` over ``nn.GRUCell``)."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(8, name="embed")(x)
    x = nn.RNN(nn.GRUCell(16), name="gru")(x)
    return nn.Dense(4, name="head")(x[:, -1])


class LSTMClassifier(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(8, name="embed")(x)
    x = nn.RNN(nn.OptimizedLSTMCell(12), name="lstm")(x)
    return nn.Dense(4, name="head")(x.mean(1))


class FlaxTransformer(nn.Module):
  """A block built on flax's own ``MultiHeadDotProductAttention`` (heads as a separate kernel axis)."""

  dim: int = 16
  heads: int = 2
  qkv_features: int = 16

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.dim, name="embed")(x)
    y = nn.LayerNorm(name="norm1")(x)
    attention = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.qkv_features, name="attn")
    x = x + attention(y, y)
    x = x + Mlp(2 * self.dim, name="mlp")(nn.LayerNorm(name="norm2")(x))
    return nn.Dense(4, name="head")(x.mean(1))


class ResNeXt(nn.Module):
  """Grouped 3x3 convolutions (4 groups): groups stay whole, the same positions are pruned in each."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.BatchNorm(**BN, name="stem_bn")(nn.Conv(16, (3, 3), padding=1, use_bias=False, name="stem")(x)))
    y = nn.relu(nn.BatchNorm(**BN, name="bn1")(nn.Conv(16, (1, 1), use_bias=False, name="conv1")(x)))
    y = nn.Conv(16, (3, 3), padding=1, feature_group_count=4, use_bias=False, name="conv2")(y)
    y = nn.relu(nn.BatchNorm(**BN, name="bn2")(y))
    y = nn.BatchNorm(**BN, name="bn3")(nn.Conv(16, (1, 1), use_bias=False, name="conv3")(y))
    x = nn.relu(x + y)
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


class RematGroupNormNet(nn.Module):
  """``nn.remat`` blocks, GroupNorm (channels split into groups by a reshape) and a ``lax.cond``-free skip."""

  width: int = 16

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.width, (3, 3), padding=1, name="stem")(x)
    block = nn.remat(ResidualGN)
    x = block(self.width, name="block0")(x)
    x = block(self.width, name="block1")(x)
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


class ResidualGN(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    y = nn.swish(nn.GroupNorm(num_groups=4, name="gn1")(nn.Conv(self.features, (3, 3), padding=1, name="conv1")(x)))
    y = nn.GroupNorm(num_groups=4, name="gn2")(nn.Conv(self.features, (3, 3), padding=1, name="conv2")(y))
    return x + y


class NormStatsNet(nn.Module):
  """RMSNorm, then statistics written with ``jnp.mean``/``jnp.var`` over the channels, then a mean-pool over them."""

  hidden: int = 8
  width: int = 6

  @nn.compact
  def __call__(self, x):
    y = nn.RMSNorm(name="rms")(nn.Dense(self.hidden, name="fc1")(x))
    y = nn.Dense(self.width, name="fc2")(nn.relu(y))
    y = (y - jnp.mean(y, -1, keepdims=True)) / jnp.sqrt(jnp.var(y, -1, keepdims=True) + 1e-5)
    return nn.Dense(3, name="head")(jnp.concatenate([y, y.mean(-1, keepdims=True)], -1))


class TextClassifier(nn.Module):
  """Token embedding (a gather), a small MLP, mean pooling."""

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(50, 16, name="embed")(tokens)
    x = nn.relu(nn.Dense(32, name="fc1")(x))
    x = nn.Dense(16, name="fc2")(x) + x[..., :16] * 0 + nn.Dense(16, name="fc3")(x)
    return nn.Dense(3, name="head")(x.mean(1))


ZOO: dict[str, tuple[nn.Module, tuple[int, ...], Any]] = {
  "resnet_basic": (ResNet(BasicBlock, (1, 1), (8, 16), stem=8, num_classes=10), (1, 16, 16, 3), jnp.float32),
  "resnet_bottleneck": (ResNet(Bottleneck, (1, 1), (4, 8), stem=8, num_classes=10), (1, 16, 16, 3), jnp.float32),
  "mobilenet_v2": (MobileNetV2(), (1, 8, 8, 3), jnp.float32),
  "shufflenet_v2": (ShuffleNetV2(), (1, 8, 8, 3), jnp.float32),
  "densenet": (DenseNet(), (1, 8, 8, 3), jnp.float32),
  "vgg": (VGG(), (1, 8, 8, 3), jnp.float32),
  "efficientnet_se": (EfficientNet(), (1, 8, 8, 3), jnp.float32),
  "vit": (ViT(), (1, 8, 8, 3), jnp.float32),
  "swin_window_attention": (Swin(), (1, 8, 8, 3), jnp.float32),
  "unet": (UNet(), (1, 8, 8, 3), jnp.float32),
  "mlp_mixer": (MLPMixer(), (1, 8, 8, 3), jnp.float32),
  "gru": (GRUClassifier(), (1, 5, 3), jnp.float32),
  "lstm": (LSTMClassifier(), (1, 5, 3), jnp.float32),
  "flax_attention": (FlaxTransformer(), (1, 4, 3), jnp.float32),
  "resnext_grouped": (ResNeXt(), (1, 8, 8, 3), jnp.float32),
  "remat_groupnorm": (RematGroupNormNet(), (1, 8, 8, 3), jnp.float32),
  "text_embedding": (TextClassifier(), (1, 6), jnp.int32),
}
