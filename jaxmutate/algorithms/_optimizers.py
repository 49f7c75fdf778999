"""Optax optimisers from config dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from jaxmutate.errors import ConfigKeyError, UnknownTypeError


def build_optimizer(config: Mapping[str, Any] | optax.GradientTransformation) -> optax.GradientTransformation:
  """Builds an optax optimiser from ``dict(type="sgd", learning_rate=..., ...)``.

  ``type`` names any optax function (``sgd``, ``adam``, ``adamw``, ...);
  nested dicts with a ``type`` build optax functions too, so a schedule is
  ``learning_rate=dict(type="cosine_decay_schedule", init_value=0.1,
  decay_steps=1000)``. A ``GradientTransformation`` passes through.

  Raises:
    KeyError: the config has no ``type``.
    UnknownTypeError: (a ``KeyError``) optax has no function of that name.

  Example:
    >>> from jaxmutate.algorithms import build_optimizer
    >>> optimizer = build_optimizer(dict(type="sgd", learning_rate=0.1, momentum=0.9))
    >>> type(optimizer).__name__
    'GradientTransformationExtraArgs'
  """
  if isinstance(config, optax.GradientTransformation):
    return config

  def build(value: Any) -> Any:
    if isinstance(value, Mapping) and "type" in value:
      kwargs = {k: build(v) for k, v in value.items() if k != "type"}
      name = value["type"]
      factory = getattr(optax, name, None) if isinstance(name, str) else None
      if not callable(factory):
        raise UnknownTypeError(
          f"Optimiser config type {name!r} is not an optax function; use one such as 'sgd', 'adam', 'adamw' or "
          "'cosine_decay_schedule'."
        )
      return factory(**kwargs)
    return value

  if not isinstance(config, Mapping) or "type" not in config:
    # A missing ``type`` is the registry's KeyError; an unknown one is UnknownTypeError.
    raise ConfigKeyError(
      f"An optimiser config needs a 'type' naming an optax function (e.g. dict(type='sgd', learning_rate=0.1)), "
      f"got {config!r}."
    )
  return build(config)


def make_weight_optimizer(config: Mapping[str, Any] | optax.GradientTransformation) -> optax.GradientTransformation:
  """An optax optimiser from ``dict(type=..., weight_decay=0, clip_grad_norm=None, ...)``.

  ``weight_decay`` becomes an L2 term added to the gradient (PyTorch's SGD /
  Adam ``weight_decay``, as DARTS uses) and ``clip_grad_norm`` a global-norm
  clip before it; the other keys go to :func:`~jaxmutate.algorithms.build_optimizer`.

  Example:
    >>> from jaxmutate.algorithms import make_weight_optimizer
    >>> config = dict(type="sgd", learning_rate=0.1, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0)
    >>> opt = make_weight_optimizer(config)
    >>> type(opt).__name__
    'GradientTransformationExtraArgs'
  """
  if isinstance(config, optax.GradientTransformation):
    return config
  config = dict(config)
  weight_decay = float(config.pop("weight_decay", 0.0))
  clip = config.pop("clip_grad_norm", None)
  parts = []
  if clip is not None:
    parts.append(optax.clip_by_global_norm(float(clip)))
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts.append(build_optimizer(config))
  return optax.chain(*parts)
