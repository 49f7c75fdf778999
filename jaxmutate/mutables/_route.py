"""Routes: differentiable input selection (DARTS node inputs).

A route has one edge per input: edge ``i`` runs on input ``i``. Its choice is
either logits, one per edge (a softmax or Gumbel-softmax mixture), or a
discrete choice of ``num_chosen`` distinct edge indices: the route then runs
only those edges and sums them, as MMRazor's fixed route and the derived
discrete network do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import ChoiceError, SearchSpaceError
from jaxmutate.mutables._candidates import is_fixed_subnet, record_spec, same_structure, tree_sum
from jaxmutate.mutables._diff_op import DiffMutableModule, scale, weighted_sum
from jaxmutate.mutables._gumbel import check_temperature, gumbel_softmax
from jaxmutate.registry import MODELS
from jaxmutate.spaces import EdgeSubsetSpace, is_traced


class ChoiceRoute(DiffMutableModule):
  """Base of input-selection routes: edge ``i`` runs on input ``i``.

  Subclasses declare ``edges`` and ``num_chosen`` (see :class:`DiffChoiceRoute`
  and :class:`GumbelChoiceRoute`); the logic lives here so that each subclass
  keeps the argument order the SPEC gives it.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> route = jm.DiffChoiceRoute({"p0": nn.Dense(2), "p1": nn.Dense(2), "p2": nn.Dense(2)})
    >>> isinstance(route, jm.ChoiceRoute), route.choice_names, route.num_chosen
    (True, ('p0', 'p1', 'p2'), 2)
    >>> issubclass(jm.GumbelChoiceRoute, jm.ChoiceRoute), issubclass(jm.DiffMutableOP, jm.ChoiceRoute)
    (True, False)
  """

  candidates_field = "edges"

  @property
  def space(self) -> EdgeSubsetSpace:
    names = self.choice_names
    num_chosen = self.num_chosen
    if isinstance(num_chosen, bool) or not isinstance(num_chosen, int) or not 1 <= num_chosen <= len(names):
      raise SearchSpaceError(
        f"{type(self).__name__} {self.mutable_name!r}: num_chosen must be an int in [1, {len(names)}] "
        f"(the number of edges {names}), got {num_chosen!r}."
      )
    return EdgeSubsetSpace(names, num_chosen)

  def _check_inputs(self, xs: Sequence[Any]) -> None:
    names = self.choice_names
    if not isinstance(xs, Sequence) or len(xs) != len(names):
      got = len(xs) if isinstance(xs, Sequence) else type(xs).__name__
      raise ChoiceError(
        f"{type(self).__name__} {self.mutable_name!r} expects a list of {len(names)} inputs "
        f"(one per edge {names}), got {got}."
      )

  def _run_edges(self, edges: Any, xs: Sequence[Any], choices: Any, kwargs: Mapping[str, Any], tau: Any) -> Any:
    """The sum of the chosen edges (each a switch when traced, a direct call when concrete)."""
    count = len(edges) if not is_traced(edges) else edges.shape[0]
    outputs = [self._run_chosen(edges[k], list(xs), choices, kwargs, self._call_kwargs(tau)) for k in range(count)]
    return tree_sum(outputs)

  def _route(self, xs: Sequence[Any], choices: Any, tau: Any, kwargs: Mapping[str, Any], mix: Any) -> Any:
    self._check_inputs(xs)
    record_spec(self, choices)
    choice = None if self.is_initializing() and choices is None else self._checked_choice(choices)
    # A fixed subnet's discrete choice runs (and, at init, creates) only its edges.
    if self.is_initializing() and not (is_fixed_subnet(choices) and self.space.is_discrete(choice)):
      outputs = self._call_all(list(xs), choices, kwargs, self._call_kwargs(tau))
      same_structure(self._owner, outputs)
      if choice is None:
        return tree_sum(list(outputs.values()))
      if self.space.is_discrete(choice):
        return tree_sum([jax.tree.map(lambda *outs: jnp.stack(outs)[i], *outputs.values()) for i in choice])
      return weighted_sum(jax.nn.softmax(choice), list(outputs.values()))
    if self.space.is_discrete(choice):
      return self._run_edges(choice, xs, choices, kwargs, tau)
    return mix(choice)

  def _soft_mix(self, xs: Sequence[Any], choices: Any, kwargs: Mapping[str, Any], tau: Any, weights: jax.Array) -> Any:
    outputs = self._call_all(list(xs), choices, kwargs, self._call_kwargs(tau))
    return weighted_sum(weights, list(outputs.values()))


@MODELS.register_module()
class DiffChoiceRoute(ChoiceRoute):
  """Weighted input selection (DARTS node inputs): ``Σᵢ softmax(l)ᵢ · edgeᵢ(xᵢ)``.

  ``route(xs, choices)`` takes one input per edge, in the edges' order. The
  choice is a logit vector, one per edge; export keeps the ``num_chosen`` edges
  with the largest logits. A discrete choice (``num_chosen`` int32 edge
  indices) runs and sums only those edges. Edges that are mutables themselves
  receive ``choices`` too (and differentiable ones the call's ``tau``).

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

  @nn.compact
  def __call__(
    self, xs: Sequence[Any], choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any
  ) -> Any:
    return self._route(
      xs, choices, tau, kwargs, lambda logits: self._soft_mix(xs, choices, kwargs, tau, self._weights(logits))
    )


@MODELS.register_module()
class GumbelChoiceRoute(ChoiceRoute):
  """Input selection with Gumbel-softmax weights (GDAS-style).

  Draws Gumbel noise from the ``'gumbel'`` PRNG stream, so ``apply`` needs
  ``rngs={"gumbel": key}``. With ``hard=True`` the forward weights are one-hot
  and the gradient is the soft one (straight-through); only the sampled edge
  runs (a :func:`~jaxmutate.mutables.switch` under ``jit``), multiplied by its
  straight-through weight. The temperature is the field ``tau`` unless the
  call passes ``tau=...``. A discrete choice runs and sums its edges.

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

  @nn.compact
  def __call__(
    self, xs: Sequence[Any], choices: Mapping[str, Any] | None = None, tau: Any = None, **kwargs: Any
  ) -> Any:
    self._no_direct_weights()
    tau = check_temperature(self._owner, self.tau if tau is None else tau)

    def mix(logits: jax.Array) -> Any:
      if not self.hard:
        return self._soft_mix(xs, choices, kwargs, tau, gumbel_softmax(self._gumbel_key(), logits, tau, False))
      soft = gumbel_softmax(self._gumbel_key(), logits, tau, hard=False)
      index = jnp.argmax(soft).astype(jnp.int32)
      weight = 1.0 - jax.lax.stop_gradient(soft[index]) + soft[index]
      return scale(weight, self._run_chosen(index, list(xs), choices, kwargs, self._call_kwargs(tau)))

    return self._route(xs, choices, tau, kwargs, mix)
