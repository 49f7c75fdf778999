"""Differentiable operations: architecture logits weight the candidates.

Three ways to turn a group's logits into a forward pass:

* softmax mixtures (DARTS): :class:`DiffMutableOP`; every candidate runs,
  weighted by ``softmax(logits)`` (or, with ``direct_weights=True``, by the
  choice itself, used to compare a supernet with a derived discrete network);
* Gumbel-softmax (GDAS): :class:`GumbelMutableOP`; weights
  ``softmax((logits + g) / tau)``; in ``hard`` mode only the sampled candidate
  runs (a :func:`~jaxmutate.mutables.switch` on the sampled index) and its
  output is multiplied by the straight-through weight;
* one-hot sampling (DSNAS): :class:`OneHotMutableOP`; one candidate drawn from
  ``softmax(logits)`` runs, scaled by a weight of value 1 whose gradient is the
  score function ``∇ log p``.

Every differentiable mutable also takes a **discrete** choice (an int32 index:
what ``NasMutator.sample_choices`` or a loaded subnet file gives). It then
runs only the chosen candidate, exactly like a one-shot op: a concrete index
traces to that candidate alone, a traced one is a switch that pays for one.

The temperature of the Gumbel mutables is the module field ``tau`` unless the
call passes ``tau=...`` (a float or a traced scalar, so an annealing schedule
never recompiles). Every differentiable mutable accepts and consumes the
``tau`` keyword (softmax mixtures ignore it), and hands it on to nested
differentiable mutables, so a backbone can pass one temperature to all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError
from jaxmutate.mutables._candidates import CandidateMutable, is_fixed_subnet, record_spec, same_structure, tree_sum
from jaxmutate.mutables._gumbel import GUMBEL_RNG, check_temperature, gumbel_softmax
from jaxmutate.registry import MODELS
from jaxmutate.spaces import LogitSpace


def weighted_sum(weights: jax.Array, outputs: Sequence[Any]) -> Any:
  """``Σᵢ weights[i] · outputs[i]`` over pytrees of arrays."""

  def mix(*outs: jax.Array) -> jax.Array:
    total = weights[0].astype(outs[0].dtype) * outs[0]
    for i, out in enumerate(outs[1:], 1):
      total = total + weights[i].astype(out.dtype) * out
    return total

  return jax.tree.map(mix, *outputs)


def scale(weight: jax.Array, tree: Any) -> Any:
  """``weight · tree`` leaf-wise, in each leaf's dtype."""
  return jax.tree.map(lambda o: weight.astype(o.dtype) * o, tree)


class DiffMutableModule(CandidateMutable):
  """Base of differentiable mutables: the choice is a vector of logits.

  Subclasses declare their candidates (``candidates`` or ``edges``) and a
  ``direct_weights: bool`` field: when true, the choice is used as the mixture
  weights themselves instead of logits (no softmax), e.g. one-hot or multi-hot
  vectors to reproduce a derived discrete network with the supernet. A discrete
  (integer) choice runs only the chosen candidates.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
    >>> isinstance(op, jm.DiffMutableModule), op.choice_names
    (True, ('a', 'b'))
    >>> issubclass(jm.DiffChoiceRoute, jm.DiffMutableModule), issubclass(jm.OneShotMutableOP, jm.DiffMutableModule)
    (True, False)
  """

  @property
  def space(self) -> LogitSpace:
    return LogitSpace(self.choice_names)

  def _weights(self, logits: jax.Array) -> jax.Array:
    if getattr(self, "direct_weights", False):
      return logits
    return jax.nn.softmax(logits)

  def _gumbel_key(self) -> jax.Array:
    if not self.has_rng(GUMBEL_RNG):
      raise ConfigError(f"{self._owner} draws Gumbel noise: pass rngs={{'{GUMBEL_RNG}': key}} to apply.")
    return self.make_rng(GUMBEL_RNG)

  def _no_direct_weights(self) -> None:
    if getattr(self, "direct_weights", False):
      raise ConfigError(
        f"{self._owner}: direct_weights applies to softmax mixtures (DiffMutableOP, DiffChoiceRoute) only."
      )

  def _call_kwargs(self, tau: Any):
    """The keywords each candidate is called with: nested diff mutables also get ``tau``."""

    def call_kwargs(candidate: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
      if tau is not None and isinstance(candidate, DiffMutableModule):
        return {**kwargs, "tau": tau}
      return dict(kwargs)

    return call_kwargs

  def _init_outputs(self, x: Any, choice: Any, choices: Any, kwargs: Mapping[str, Any], tau: Any) -> Any:
    """At init every candidate runs (creating its variables); the output follows the choice."""
    outputs = self._call_all([x] * len(self.choice_names), choices, kwargs, self._call_kwargs(tau))
    same_structure(self._owner, outputs)
    if choice is None:
      return tree_sum(list(outputs.values()))
    if self.space.is_discrete(choice):
      return jax.tree.map(lambda *outs: jnp.stack(outs)[choice], *outputs.values())
    return weighted_sum(self._weights(choice), list(outputs.values()))

  def _forward(self, x: Any, choices: Any, tau: Any, kwargs: Mapping[str, Any], mix: Any) -> Any:
    """Shared by the ops: init, discrete choices, then ``mix(logits)`` for logits."""
    choice = None if self.is_initializing() and choices is None else self._checked_choice(choices)
    if self.is_initializing() and not (is_fixed_subnet(choices) and self.space.is_discrete(choice)):
      return self._init_outputs(x, choice, choices, kwargs, tau)
    if self.space.is_discrete(choice):
      return self._run_chosen(choice, [x], choices, kwargs, self._call_kwargs(tau))
    return mix(choice)


@MODELS.register_module()
class DiffMutableOP(DiffMutableModule):
  """A DARTS mixed operation: ``Σᵢ softmax(logits)ᵢ · candidateᵢ(x)``.

  The choice is a float vector of architecture logits, one per candidate
  (``DiffModuleMutator.init_arch_params`` makes them): every candidate runs.
  An int32 index instead runs only that candidate. Keyword arguments of the
  call are forwarded to every candidate, except ``tau`` (see the module
  docs), which is consumed.

  Attributes:
    candidates: ordered mapping of candidate name to module, callable or config.
    alias: mutables sharing an alias share their logits.
    direct_weights: when true the choice is the weight vector itself
      (``Σᵢ choiceᵢ · candidateᵢ(x)``, no softmax); with a one-hot choice the
      op computes exactly its chosen candidate (zero-weighted ones still run).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
    >>> variables = op.init(jax.random.key(0), jnp.ones((1, 2)), None)
    >>> op.apply(variables, jnp.ones((1, 2)), {"": jnp.zeros(2)}).shape
    (1, 3)
    >>> b_only = op.apply(variables, jnp.ones((1, 2)), {"": 1})  # discrete: runs "b" alone
    >>> bool(jnp.allclose(b_only, op.apply(variables, jnp.ones((1, 2)), {"": jnp.array([-1e9, 0.0])})))
    True
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  alias: str | None = None
  direct_weights: bool = False

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    record_spec(self, choices)

    def mix(logits: jax.Array) -> Any:
      outputs = self._call_all([x] * len(self.choice_names), choices, kwargs, self._call_kwargs(tau))
      return weighted_sum(self._weights(logits), list(outputs.values()))

    return self._forward(x, choices, tau, kwargs, mix)


@MODELS.register_module()
class GumbelMutableOP(DiffMutableOP):
  """A GDAS operation: Gumbel-softmax weights over the candidates.

  Weights are ``softmax((logits + g) / tau)`` with Gumbel noise ``g`` drawn
  from the ``'gumbel'`` PRNG stream (``apply(..., rngs={"gumbel": key})``).
  With ``hard=True`` (GDAS) only the sampled candidate ``i = argmax`` runs —
  under ``jit`` a :func:`~jaxmutate.mutables.switch` on the sampled index, so
  the step pays for one candidate — and its output is multiplied by the
  straight-through weight ``1 − sg(pᵢ) + pᵢ`` (value 1, gradient that of the
  soft weight ``pᵢ``), so gradients reach every logit. With ``hard=False``
  every candidate runs, weighted by the soft weights. A discrete (int32)
  choice runs that candidate and needs no noise.

  The temperature is the field ``tau`` unless the call passes ``tau=...``
  (e.g. from :func:`gumbel_temperature_schedule`, traced: no recompile).

  Attributes:
    candidates: ordered mapping of candidate name to module, callable or config.
    alias: mutables sharing an alias share their logits.
    direct_weights: must stay false (Gumbel weights are sampled).
    tau: default temperature, > 0.
    hard: sample one candidate (straight-through) instead of a soft mixture.

  Raises:
    ConfigError: at call, a temperature <= 0, or no ``'gumbel'`` PRNG stream.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.GumbelMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, tau=1.0)
    >>> variables = op.init(jax.random.key(0), jnp.ones((1, 2)), None)
    >>> op.apply(variables, jnp.ones((1, 2)), {"": jnp.zeros(2)}, tau=0.5,
    ...          rngs={"gumbel": jax.random.key(1)}).shape
    (1, 3)
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  alias: str | None = None
  direct_weights: bool = False
  tau: float = 1.0
  hard: bool = True

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    record_spec(self, choices)
    self._no_direct_weights()
    tau = check_temperature(self._owner, self.tau if tau is None else tau)

    def mix(logits: jax.Array) -> Any:
      soft = gumbel_softmax(self._gumbel_key(), logits, tau, hard=False)
      if not self.hard:
        outputs = self._call_all([x] * len(self.choice_names), choices, kwargs, self._call_kwargs(tau))
        return weighted_sum(soft, list(outputs.values()))
      index = jnp.argmax(soft).astype(jnp.int32)
      weight = 1.0 - jax.lax.stop_gradient(soft[index]) + soft[index]
      return scale(weight, self._run_chosen(index, [x], choices, kwargs, self._call_kwargs(tau)))

    return self._forward(x, choices, tau, kwargs, mix)


@MODELS.register_module()
class OneHotMutableOP(DiffMutableOP):
  """A DSNAS operation: one candidate sampled from ``softmax(logits)`` runs.

  Each call draws ``i ~ Categorical(softmax(logits))`` from the ``'gumbel'``
  PRNG stream and returns ``w · candidateᵢ(x)`` where ``w = exp(log pᵢ −
  sg(log pᵢ))`` has value 1 and gradient ``∇ log pᵢ``: the logits get DSNAS's
  score-function gradient ``⟨∂L/∂out, candidateᵢ(x)⟩ · ∇ log pᵢ``, and the
  candidate's weights get their ordinary gradient. Under ``jit`` the sampled
  candidate runs through :func:`~jaxmutate.mutables.switch`, so a step costs
  one candidate. Unlike MMRazor's ``OneHotMutableOP`` there is no in-forward
  self-fixing (``fix_threshold``): derive the subnet with the mutator's argmax.

  Attributes:
    candidates: ordered mapping of candidate name to module, callable or config.
    alias: mutables sharing an alias share their logits.
    direct_weights: must stay false (the weights are sampled).

  Raises:
    ConfigError: at call, no ``'gumbel'`` PRNG stream.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneHotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
    >>> variables = op.init(jax.random.key(0), jnp.ones((1, 2)), None)
    >>> op.apply(variables, jnp.ones((1, 2)), {"": jnp.zeros(2)}, rngs={"gumbel": jax.random.key(1)}).shape
    (1, 3)
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  alias: str | None = None
  direct_weights: bool = False

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    record_spec(self, choices)
    self._no_direct_weights()

    def mix(logits: jax.Array) -> Any:
      index = jax.random.categorical(self._gumbel_key(), jax.lax.stop_gradient(logits)).astype(jnp.int32)
      log_prob = jax.nn.log_softmax(logits)[index]
      weight = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))
      return scale(weight, self._run_chosen(index, [x], choices, kwargs, self._call_kwargs(tau)))

    return self._forward(x, choices, tau, kwargs, mix)
