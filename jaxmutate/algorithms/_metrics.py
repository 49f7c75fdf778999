"""Losses and accuracy: what a training step minimises and an evaluation reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmutate.typing import Choices

LossFunction = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss_fn(logits, labels) -> scalar``."""


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.algorithms import classification_loss
    >>> round(float(classification_loss(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log(4)
    1.3863
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.algorithms import accuracy
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    >>> float(accuracy(logits, jnp.array([0, 1, 1, 1])))
    0.75
  """
  return (jnp.argmax(logits, -1) == labels).mean()


def evaluate_accuracy(
  model: nn.Module, params: Any, batch_stats: Any, choices: Choices, images: jax.Array, labels: jax.Array
) -> jax.Array:
  """Top-1 accuracy of a subnet with running (inference) BatchNorm statistics.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import evaluate_accuracy
    >>> net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> choices = {"layers.0": 3}
    >>> labels = jnp.argmax(net.apply(variables, x, choices), -1)  # the subnet's own predictions
    >>> float(evaluate_accuracy(net, variables["params"], variables["batch_stats"], choices, x, labels))
    1.0
  """
  logits = model.apply({"params": params, "batch_stats": batch_stats}, images, choices, train=False)
  return accuracy(logits, labels)
