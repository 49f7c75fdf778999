"""Differentiable mutables: architecture logits weight the candidates.

Three ways to turn a group's logits into a forward pass:

* softmax mixtures (DARTS): :class:`DiffMutableOP`, :class:`DiffChoiceRoute`;
  every candidate runs, weighted by ``softmax(logits)`` (or, with
  ``direct_weights=True``, by the choice itself, used to compare a supernet
  with a derived discrete network);
* Gumbel-softmax (GDAS): :class:`GumbelMutableOP`, :class:`GumbelChoiceRoute`;
  weights ``softmax((logits + g) / tau)``; in ``hard`` mode only the sampled
  candidate runs (a :func:`~jaxmutate.mutables.switch` on the sampled index)
  and its output is multiplied by the straight-through weight;
* one-hot sampling (DSNAS): :class:`OneHotMutableOP`; one candidate drawn
  from ``softmax(logits)`` runs, scaled by a weight of value 1 whose gradient
  is the score function ``∇ log p``.

The temperature of the Gumbel mutables is the module field ``tau`` unless the
call passes ``tau=...`` (a float or a traced scalar, so an annealing schedule
never recompiles). Every differentiable mutable accepts and consumes the
``tau`` keyword (softmax mixtures ignore it), and hands it on to nested
differentiable mutables, so a backbone can pass one temperature to all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.mutables._base import (
    MUTABLES_COLLECTION,
    CandidateMutable,
    MutableSpec,
    run_candidate_functionally,
    is_traced,
    bind_candidates,
    call_candidate,
    check_logits_choice,
    same_structure,
    tree_sum,
    unbound_candidates,
)
from jaxmutate.mutables._dispatch import switch
from jaxmutate.registry import MODELS

GUMBEL_RNG = "gumbel"
"""The PRNG stream Gumbel and one-hot mutables draw from: ``rngs={"gumbel": key}``."""


def weighted_sum(weights: jax.Array, outputs: Sequence[Any]) -> Any:
  """``Σᵢ weights[i] · outputs[i]`` over pytrees of arrays."""
  return jax.tree.map(
      lambda *outs: sum((weights[i].astype(o.dtype) * o for i, o in enumerate(outs[1:], 1)), weights[0].astype(outs[0].dtype) * outs[0]),
      *outputs,
  )


def check_temperature(owner: str, tau: Any) -> Any:
  """Validates a Gumbel temperature: ``> 0`` when concrete.

  A traced temperature (inside ``jit``) cannot be checked here; the schedule
  that makes it (:func:`gumbel_temperature_schedule`) checks its range.

  Raises:
    ValueError: a concrete temperature that is not a positive finite number.
    TypeError: a temperature that is not a real scalar.
  """
  if is_traced(tau):
    if jnp.shape(tau) != ():
      raise TypeError(f"{owner}: the temperature tau must be a scalar, got shape {jnp.shape(tau)}.")
    return tau
  try:
    value = np.asarray(tau, dtype=np.float64)
  except (TypeError, ValueError):
    raise TypeError(f"{owner}: the temperature tau must be a real number, got {tau!r}.") from None
  if value.shape != ():
    raise TypeError(f"{owner}: the temperature tau must be a scalar, got shape {value.shape}.")
  if not (np.isfinite(value) and value > 0):
    raise ValueError(f"{owner}: the temperature tau must be > 0 (and finite), got {float(value)!r}.")
  return tau


def gumbel_temperature_schedule(
    init_value: float = 10.0, end_value: float = 0.1, transition_steps: int = 1000, kind: str = "exponential"
) -> optax.Schedule:
  """The GDAS temperature annealing schedule: step → temperature.

  GDAS anneals ``tau`` from 10 to 0.1 over the search; ``"exponential"``
  interpolates geometrically, ``"linear"`` linearly, ``"cosine"`` along a
  half cosine. After ``transition_steps`` the temperature stays at
  ``end_value``. Works on Python ints and traced steps.

  Args:
    init_value: temperature at step 0, > 0.
    end_value: final temperature, > 0.
    transition_steps: steps to go from ``init_value`` to ``end_value`` (>= 1).
    kind: ``"exponential"``, ``"linear"`` or ``"cosine"``.

  Returns:
    An optax schedule (a function of the step count).

  Raises:
    ValueError: a temperature <= 0, ``transition_steps`` < 1 or an unknown
      ``kind``.

  Example:
    >>> from jaxmutate.mutables import gumbel_temperature_schedule
    >>> schedule = gumbel_temperature_schedule(10.0, 0.1, transition_steps=100)
    >>> round(float(schedule(0)), 3), round(float(schedule(50)), 3), round(float(schedule(500)), 3)
    (10.0, 1.0, 0.1)
  """
  check_temperature("gumbel_temperature_schedule init_value", init_value)
  check_temperature("gumbel_temperature_schedule end_value", end_value)
  if not isinstance(transition_steps, (int, np.integer)) or transition_steps < 1:
    raise ValueError(f"gumbel_temperature_schedule: transition_steps must be an int >= 1, got {transition_steps!r}.")
  if kind == "exponential":
    rate = float(end_value) / float(init_value)
    return optax.exponential_decay(float(init_value), int(transition_steps), rate, end_value=float(end_value))
  if kind == "linear":
    return optax.linear_schedule(float(init_value), float(end_value), int(transition_steps))
  if kind == "cosine":
    alpha = float(end_value) / float(init_value)
    return optax.cosine_decay_schedule(float(init_value), int(transition_steps), alpha=alpha)
  raise ValueError(f"gumbel_temperature_schedule: kind must be 'exponential', 'linear' or 'cosine', got {kind!r}.")


def _with_tau(candidate: Any, kwargs: Mapping[str, Any], tau: Any) -> dict[str, Any]:
  """The call keywords of ``candidate``: nested diff mutables also get ``tau``."""
  if tau is not None and isinstance(candidate, DiffMutableModule):
    return {**kwargs, "tau": tau}
  return dict(kwargs)


def _nested_choices(full_name: str, choices: Mapping[str, Any]) -> dict[str, Any]:
  """``choices`` seen from a candidate run as a root module.

  The candidate's own choice (key ``full_name``) becomes ``""``, and keys below
  it lose the ``full_name.`` prefix.
  """
  prefix = f"{full_name}."
  nested = {}
  for key, value in choices.items():
    if key == full_name:
      nested[""] = value
    elif key.startswith(prefix):
      nested[key[len(prefix):]] = value
  return nested


class DiffMutableModule(CandidateMutable):
  """Base of differentiable mutables: the choice is a vector of logits.

  Subclasses declare their candidates (``candidates`` or ``edges``) and a
  ``direct_weights: bool`` field: when true, the choice is used as the mixture
  weights themselves instead of logits (no softmax), e.g. one-hot or multi-hot
  vectors to reproduce a derived discrete network with the supernet.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)})
    >>> isinstance(op, jm.DiffMutableModule), op.choice_names
    (True, ('a', 'b'))
    >>> issubclass(jm.DiffChoiceRoute, jm.DiffMutableModule), issubclass(jm.OneShotMutableOP, jm.DiffMutableModule)
    (True, False)
  """

  search_space_kind = "diff_op"


  @property
  def _owner(self) -> str:
    return f"{type(self).__name__} {self.mutable_name!r}"

  # A diff group choice is either architecture logits (float, one per
  # candidate) or a discrete choice (what sampling and subnet files give),
  # which set_choices turns into logits with -inf for the candidates not taken.

  @classmethod
  def check_group_choice(cls, spec: MutableSpec, group: int, choice: Any) -> jax.Array:
    choice = jnp.asarray(choice)
    if jnp.issubdtype(choice.dtype, jnp.floating):
      return check_logits_choice(f"group {group}", choice, spec.num_choices)
    return cls._check_discrete(spec, group, choice)

  @classmethod
  def _check_discrete(cls, spec: MutableSpec, group: int, choice: jax.Array) -> jax.Array:
    return super().check_group_choice(spec, group, choice)

  @classmethod
  def mutable_choice(cls, spec: MutableSpec, group_choice: jax.Array) -> jax.Array:
    if jnp.issubdtype(group_choice.dtype, jnp.floating):
      return group_choice
    taken = jnp.zeros(spec.num_choices, bool).at[group_choice].set(True)
    return jnp.where(taken, 0.0, -jnp.inf).astype(jnp.float32)

  @classmethod
  def discrete_choice(cls, spec: MutableSpec, group_choice: jax.Array) -> jax.Array:
    """Argmax of logits (a discrete choice passes through)."""
    group_choice = jnp.asarray(group_choice)
    if not jnp.issubdtype(group_choice.dtype, jnp.floating):
      return group_choice
    return jnp.argmax(group_choice).astype(jnp.int32)

  @classmethod
  def export_choice(cls, spec: MutableSpec, group_choice: Any) -> Any:
    return super().export_choice(spec, cls.discrete_choice(spec, group_choice))

  @classmethod
  def discrete_weights(cls, spec: MutableSpec, group_choice: Any) -> jax.Array:
    """Mixture weights of the discrete choice: 1 on the chosen candidate(s), 0 elsewhere.

    Feed them to a supernet whose mutables have ``direct_weights=True`` to run
    exactly the derived discrete network.
    """
    chosen = cls.discrete_choice(spec, group_choice)
    return jnp.zeros(spec.num_choices, jnp.float32).at[chosen].set(1.0)

  def _logits(self, choices: Mapping[str, Any] | None) -> jax.Array:
    return check_logits_choice(self.mutable_name, self._read_choice(choices), len(self.choice_names))

  def _weights(self, choices: Mapping[str, Any] | None) -> jax.Array:
    logits = self._logits(choices)
    if getattr(self, "direct_weights", False):
      return logits
    return jax.nn.softmax(logits)

  def _gumbel_key(self) -> jax.Array:
    if not self.has_rng(GUMBEL_RNG):
      raise ValueError(f"{self._owner} draws Gumbel noise: pass rngs={{'{GUMBEL_RNG}': key}} to apply.")
    return self.make_rng(GUMBEL_RNG)

  def _no_direct_weights(self) -> None:
    if getattr(self, "direct_weights", False):
      raise ValueError(f"{self._owner}: direct_weights applies to softmax mixtures (DiffMutableOP, DiffChoiceRoute) only.")

  def _run_one(
      self,
      index: jax.Array,
      fields: Mapping[str, Any],
      inputs: Sequence[Any],
      choices: Mapping[str, Any],
      kwargs: Mapping[str, Any],
      tau: Any,
  ) -> Any:
    """Runs only candidate ``index`` (traced or concrete) on ``inputs[index]``.

    A traced index goes through :func:`jaxmutate.mutables.switch` over the
    candidates applied functionally to this mutable's variables, so the
    compiled program pays for one candidate; BatchNorm statistics (and other
    mutable collections) change for the chosen candidate only.
    """
    names = tuple(fields)
    if not is_traced(index):
      name = names[int(index)]
      chosen = bind_candidates(self, {name: fields[name]})[name]
      return call_candidate(chosen, inputs[int(index)], choices, _with_tau(chosen, kwargs, tau))

    candidates = unbound_candidates(self._owner, fields)
    variables = {col: tree for col, tree in self.variables.items() if col != MUTABLES_COLLECTION}
    mutable_collections = [col for col in variables if self.is_mutable_collection(col)]
    rngs = {stream: self.make_rng(stream) for stream in self.scope.rngs}
    base = f"{self.mutable_name}." if self.mutable_name else ""
    nested = {name: _nested_choices(base + name, choices) for name in names}

    def branch(position: int) -> Callable[..., Any]:
      name = names[position]
      candidate = candidates[name]
      call_kwargs = _with_tau(candidate, kwargs, tau)

      def run(variables, rngs, inputs, nested):
        return run_candidate_functionally(
            candidate, name, variables, mutable_collections, rngs, inputs[position], nested[name], call_kwargs
        )

      return run

    out, updated = switch(index, [branch(i) for i in range(len(names))], variables, rngs, list(inputs), nested)
    for col, tree in updated.items():
      for name, value in tree.items():
        self.put_variable(col, name, value)
    return out


def _scale(weight: jax.Array, tree: Any) -> Any:
  return jax.tree.map(lambda o: weight.astype(o.dtype) * o, tree)


@MODELS.register_module()
class DiffMutableOP(DiffMutableModule):
  """A DARTS mixed operation: ``Σᵢ softmax(logits)ᵢ · candidateᵢ(x)``.

  The choice is a float vector of architecture logits, one per candidate
  (``DiffModuleMutator.init_arch_params`` makes them). Every candidate runs.
  Keyword arguments of the call are forwarded to every candidate, except
  ``tau`` (see the module docs), which is consumed.

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
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  alias: str | None = None
  direct_weights: bool = False

  def _init_all(self, x: Any, choices: Any, kwargs: Mapping[str, Any], tau: Any) -> Any:
    bound = bind_candidates(self, self.candidates)
    outputs = {name: call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for name, c in bound.items()}
    same_structure(self._owner, outputs)
    return tree_sum(list(outputs.values()))

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    self._record_spec()
    if self.is_initializing() and choices is None:
      return self._init_all(x, choices, kwargs, tau)
    weights = self._weights(choices)
    bound = bind_candidates(self, self.candidates)
    outputs = [call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for c in bound.values()]
    return weighted_sum(weights, outputs)


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
  every candidate runs, weighted by the soft weights.

  The temperature is the field ``tau`` unless the call passes ``tau=...``
  (e.g. from :func:`gumbel_temperature_schedule`, traced: no recompile).

  Attributes:
    candidates: ordered mapping of candidate name to module, callable or config.
    alias: mutables sharing an alias share their logits.
    direct_weights: must stay false (Gumbel weights are sampled).
    tau: default temperature, > 0.
    hard: sample one candidate (straight-through) instead of a soft mixture.

  Raises:
    ValueError: at call, a temperature <= 0, or no ``'gumbel'`` PRNG stream.

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
    self._record_spec()
    self._no_direct_weights()
    tau = check_temperature(self._owner, self.tau if tau is None else tau)
    if self.is_initializing() and choices is None:
      return self._init_all(x, choices, kwargs, tau)
    logits = self._logits(choices)
    soft = gumbel_softmax(self._gumbel_key(), logits, tau, hard=False)
    if not self.hard:
      bound = bind_candidates(self, self.candidates)
      outputs = [call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for c in bound.values()]
      return weighted_sum(soft, outputs)
    index = jnp.argmax(soft).astype(jnp.int32)
    weight = 1.0 - jax.lax.stop_gradient(soft[index]) + soft[index]
    out = self._run_one(index, self.candidates, [x] * len(self.choice_names), choices, kwargs, tau)
    return _scale(weight, out)


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
    ValueError: at call, no ``'gumbel'`` PRNG stream.

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
    self._record_spec()
    self._no_direct_weights()
    if self.is_initializing() and choices is None:
      return self._init_all(x, choices, kwargs, tau)
    logits = self._logits(choices)
    index = jax.random.categorical(self._gumbel_key(), jax.lax.stop_gradient(logits)).astype(jnp.int32)
    log_prob = jax.nn.log_softmax(logits)[index]
    weight = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))
    out = self._run_one(index, self.candidates, [x] * len(self.choice_names), choices, kwargs, tau)
    return _scale(weight, out)


class _RouteMixin:
  """Input selection: edge ``i`` is applied to input ``i``."""

  def _check_inputs(self, xs: Sequence[Any]) -> None:
    names = self.choice_names
    if not isinstance(xs, Sequence) or len(xs) != len(names):
      got = len(xs) if isinstance(xs, Sequence) else type(xs).__name__
      raise ValueError(
          f"{type(self).__name__} {self.mutable_name!r} expects a list of {len(names)} inputs "
          f"(one per edge {names}), got {got}."
      )


class ChoiceRoute(_RouteMixin, DiffMutableModule):
  """Base of input-selection routes: edge ``i`` runs on input ``i``.

  Subclasses declare ``edges`` and ``num_chosen`` (see :class:`DiffChoiceRoute`
  and :class:`GumbelChoiceRoute`); the logic and the choice semantics live here
  so that each subclass keeps the argument order the SPEC gives it.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> route = jm.DiffChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2), "p2": nn.Dense(2)})
    >>> isinstance(route, jm.ChoiceRoute), route.choice_names, route.num_chosen
    (True, ('p0', 'p1', 'p2'), 2)
    >>> issubclass(jm.GumbelChoiceRoute, jm.ChoiceRoute), issubclass(jm.DiffMutableOP, jm.ChoiceRoute)
    (True, False)
  """

  search_space_kind = "diff_route"

  def _candidate_field(self) -> Mapping[str, Any]:
    return self.edges

  def _spec_fields(self) -> dict[str, Any]:
    num_edges = len(self.choice_names)
    if isinstance(self.num_chosen, bool) or not isinstance(self.num_chosen, int) or not 1 <= self.num_chosen <= num_edges:
      raise ValueError(
          f"{type(self).__name__} {self.mutable_name!r}: num_chosen must be an int in [1, {num_edges}] "
          f"(the number of edges {self.choice_names}), got {self.num_chosen!r}."
      )
    return {"num_chosen": self.num_chosen}

  def _edge_weights(self, choices: Mapping[str, Any] | None, tau: Any) -> jax.Array:
    return self._weights(choices)

  # A discrete route choice is an int32 vector of num_chosen edge indices,
  # strongest first; it is applied as equal weights on those edges.

  @classmethod
  def sample_choice(cls, spec: MutableSpec, key: jax.Array) -> jax.Array:
    return jax.random.choice(key, spec.num_choices, (spec.num_chosen,), replace=False).astype(jnp.int32)

  @classmethod
  def _check_discrete(cls, spec: MutableSpec, group: int, choice: jax.Array) -> jax.Array:
    if choice.shape != (spec.num_chosen,) or not jnp.issubdtype(choice.dtype, jnp.integer):
      raise ValueError(
          f"Route group {group} expects logits of shape ({spec.num_choices},) or {spec.num_chosen} int edge "
          f"indices, got shape {choice.shape} and dtype {choice.dtype}."
      )
    if not is_traced(choice):
      values = np.asarray(choice).tolist()
      if len(set(values)) != len(values) or not all(0 <= v < spec.num_choices for v in values):
        raise ValueError(
            f"Route group {group}: edge indices {values} must be distinct and in [0, {spec.num_choices})."
        )
    return choice.astype(jnp.int32)

  @classmethod
  def discrete_choice(cls, spec: MutableSpec, group_choice: jax.Array) -> jax.Array:
    """The top ``num_chosen`` edges by logit (a discrete choice passes through)."""
    group_choice = jnp.asarray(group_choice)
    if not jnp.issubdtype(group_choice.dtype, jnp.floating):
      return group_choice
    return jax.lax.top_k(group_choice, spec.num_chosen)[1].astype(jnp.int32)

  @classmethod
  def export_choice(cls, spec: MutableSpec, group_choice: Any) -> Any:
    indices = np.asarray(cls.discrete_choice(spec, group_choice)).tolist()
    return [spec.choice_names[i] for i in indices]

  @classmethod
  def import_choice(cls, spec: MutableSpec, key: str, chosen: Any) -> jax.Array:
    if not isinstance(chosen, (list, tuple)) or not all(isinstance(c, str) for c in chosen):
      raise ValueError(f"Subnet entry {key!r}: a route's chosen must be a list of edge names, got {chosen!r}.")
    unknown = [c for c in chosen if c not in spec.choice_names]
    if unknown or len(chosen) != spec.num_chosen or len(set(chosen)) != len(chosen):
      raise ValueError(
          f"Subnet entry {key!r}: chosen {list(chosen)} must be {spec.num_chosen} distinct edges of "
          f"{list(spec.choice_names)}" + (f"; unknown {unknown}." if unknown else ".")
      )
    return jnp.asarray([spec.choice_names.index(c) for c in chosen], jnp.int32)

  @nn.compact
  def __call__(self, xs: Sequence[Any], choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    self._check_inputs(xs)
    self._record_spec()
    bound = bind_candidates(self, self.edges)
    if self.is_initializing() and choices is None:
      outputs = [call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for c, x in zip(bound.values(), xs)]
      same_structure(self._owner, dict(zip(bound, outputs)))
      return tree_sum(outputs)
    weights = self._edge_weights(choices, tau)
    outputs = [call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for c, x in zip(bound.values(), xs)]
    return weighted_sum(weights, outputs)


@MODELS.register_module()
class DiffChoiceRoute(ChoiceRoute):
  """Weighted input selection (DARTS node inputs): ``Σᵢ softmax(l)ᵢ · edgeᵢ(xᵢ)``.

  ``route(xs, choices)`` takes one input per edge, in the edges' order. The
  choice is a logit vector, one per edge; export keeps the ``num_chosen`` edges
  with the largest logits. Edges that are mutables themselves receive
  ``choices`` too (and differentiable ones the call's ``tau``).

  Attributes:
    edges: ordered mapping of edge name to module, callable or config.
    num_chosen: how many edges a derived subnet keeps.
    alias: routes sharing an alias share their logits.
    direct_weights: when true the choice is the weight vector itself (no
      softmax): weight 1 on the ``num_chosen`` kept edges reproduces a derived
      network, which sums its kept edges.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> route = jm.DiffChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2)}, num_chosen=1)
    >>> xs = [jnp.ones((1, 3)), jnp.zeros((1, 3))]
    >>> variables = route.init(jax.random.key(0), xs, None)
    >>> route.apply(variables, xs, {"": jnp.array([0.0, 1.0])}).shape
    (1, 2)
  """

  edges: Mapping[str, Any] = None  # type: ignore[assignment]
  num_chosen: int = 2
  alias: str | None = None
  direct_weights: bool = False


def gumbel_softmax(key: jax.Array, logits: jax.Array, tau: Any, hard: bool) -> jax.Array:
  """Gumbel-softmax weights; ``hard`` gives a straight-through one-hot vector.

  Args:
    key: PRNG key for the Gumbel noise.
    logits: unnormalised log-probabilities, shape ``(n,)``.
    tau: temperature, > 0 (a float or a traced scalar).
    hard: when true the forward value is one-hot (argmax) while gradients are
      those of the soft weights.

  Returns:
    Weights of shape ``(n,)`` summing to 1.

  Raises:
    ValueError: a concrete ``tau`` <= 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.mutables import gumbel_softmax
    >>> w = gumbel_softmax(jax.random.key(0), jnp.zeros(3), tau=1.0, hard=True)
    >>> float(w.sum()), int((w == 1).sum())
    (1.0, 1)
  """
  tau = check_temperature("gumbel_softmax", tau)
  gumbels = jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax((logits + gumbels) / jnp.asarray(tau, logits.dtype))
  if not hard:
    return soft
  one_hot = jax.nn.one_hot(jnp.argmax(soft), logits.shape[-1], dtype=soft.dtype)
  return one_hot - jax.lax.stop_gradient(soft) + soft


@MODELS.register_module()
class GumbelChoiceRoute(ChoiceRoute):
  """Input selection with Gumbel-softmax weights (GDAS-style).

  Draws Gumbel noise from the ``'gumbel'`` PRNG stream, so ``apply`` needs
  ``rngs={"gumbel": key}``. With ``hard=True`` the forward weights are one-hot
  and the gradient is the soft one (straight-through); only the sampled edge
  runs (a :func:`~jaxmutate.mutables.switch` under ``jit``), multiplied by its
  straight-through weight. The temperature is the field ``tau`` unless the
  call passes ``tau=...``.

  Attributes:
    edges: ordered mapping of edge name to module, callable or config.
    tau: Gumbel-softmax temperature, > 0.
    hard: straight-through one-hot weights.
    num_chosen: how many edges a derived subnet keeps.
    alias: routes sharing an alias share their logits.
    direct_weights: must stay false (Gumbel weights are sampled).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> route = jm.GumbelChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2)}, tau=0.5)
    >>> xs = [jnp.ones((1, 3)), jnp.zeros((1, 3))]
    >>> variables = route.init(jax.random.key(0), xs, None)
    >>> route.apply(variables, xs, {"": jnp.zeros(2)}, rngs={"gumbel": jax.random.key(1)}).shape
    (1, 2)
  """

  edges: Mapping[str, Any] = None  # type: ignore[assignment]
  tau: float = 1.0
  hard: bool = True
  num_chosen: int = 1
  alias: str | None = None
  direct_weights: bool = False

  def _edge_weights(self, choices: Mapping[str, Any] | None, tau: Any) -> jax.Array:
    tau = check_temperature(self._owner, self.tau if tau is None else tau)
    logits = self._logits(choices)
    return gumbel_softmax(self._gumbel_key(), logits, tau, self.hard)

  @nn.compact
  def __call__(self, xs: Sequence[Any], choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any) -> Any:
    self._check_inputs(xs)
    self._record_spec()
    self._no_direct_weights()
    tau = check_temperature(self._owner, self.tau if tau is None else tau)
    if (self.is_initializing() and choices is None) or not self.hard:
      return self._soft(xs, choices, tau, kwargs)
    logits = self._logits(choices)
    soft = gumbel_softmax(self._gumbel_key(), logits, tau, hard=False)
    index = jnp.argmax(soft).astype(jnp.int32)
    weight = 1.0 - jax.lax.stop_gradient(soft[index]) + soft[index]
    out = self._run_one(index, self.edges, list(xs), choices, kwargs, tau)
    return _scale(weight, out)

  def _soft(self, xs: Sequence[Any], choices: Any, tau: Any, kwargs: Mapping[str, Any]) -> Any:
    bound = bind_candidates(self, self.edges)
    outputs = [call_candidate(c, x, choices, _with_tau(c, kwargs, tau)) for c, x in zip(bound.values(), xs)]
    if self.is_initializing() and choices is None:
      same_structure(self._owner, dict(zip(bound, outputs)))
      return tree_sum(outputs)
    return weighted_sum(self._edge_weights(choices, tau), outputs)
