"""One-shot operation mutables: exactly one candidate runs per subnet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.mutables._base import (
    MUTABLES_COLLECTION,
    CandidateMutable,
    bind_candidates,
    call_candidate,
    check_index_choice,
    is_traced,
    run_candidate_functionally,
    same_structure,
    tree_sum,
    unbound_candidates,
)
from jaxmutate.mutables._dispatch import switch
from jaxmutate.registry import MODELS


class OneShotMutableModule(CandidateMutable):
  """Base of one-shot operation mutables: one candidate chosen by an int index.

  Subclasses declare a ``candidates`` field; see :class:`OneShotMutableOP`.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotMutableOP({"wide": nn.Dense(8), "narrow": nn.Dense(2)})
    >>> isinstance(op, jm.OneShotMutableModule), op.choice_names
    (True, ('wide', 'narrow'))
    >>> issubclass(jm.OneShotProbMutableOP, jm.OneShotMutableModule), issubclass(jm.DiffMutableOP, jm.OneShotMutableModule)
    (True, False)
  """

  search_space_kind = "op"

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    return self._forward(x, choices, kwargs)

  def _forward(self, x: Any, choices: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> Any:
    names = self.choice_names
    self._record_spec()
    owner = f"{type(self).__name__} {self.mutable_name!r}"
    if self.is_initializing():
      bound = bind_candidates(self, self.candidates)
      outputs = {name: call_candidate(c, x, choices, kwargs) for name, c in bound.items()}
      same_structure(owner, outputs)
      if choices is None:
        return tree_sum(list(outputs.values()))
      index = check_index_choice(self.mutable_name, self._read_choice(choices), len(names))
      return jax.tree.map(lambda *outs: jnp.stack(outs)[index], *outputs.values())

    index = check_index_choice(self.mutable_name, self._read_choice(choices), len(names))
    if not is_traced(index):
      # A concrete choice: the network is exactly the chosen candidate.
      name = names[int(index)]
      chosen = bind_candidates(self, {name: self.candidates[name]})[name]
      return call_candidate(chosen, x, choices, kwargs)

    candidates = unbound_candidates(owner, self.candidates)
    variables = {col: tree for col, tree in self.variables.items() if col != MUTABLES_COLLECTION}
    mutable_collections = [col for col in variables if self.is_mutable_collection(col)]
    rngs = {stream: self.make_rng(stream) for stream in self.scope.rngs}

    def candidate_path(name: str) -> str:
      return f"{self.mutable_name}.{name}" if self.mutable_name else name

    def inside(key: str, path: str) -> bool:
      return key == path or key.startswith(f"{path}.")

    def branch(name: str):
      path = candidate_path(name)

      def run(variables, rngs, x, choices):
        # Applied on its own, the candidate is the root: its own key becomes ""
        # and its descendants lose the "<path>." prefix.
        nested = {k[len(path) + 1:]: v for k, v in choices.items() if inside(k, path)}
        return run_candidate_functionally(
            candidates[name], name, variables, mutable_collections, rngs, x, nested, kwargs
        )

      return run

    nested_choices = {
        k: v for k, v in dict(choices).items() if any(inside(k, candidate_path(name)) for name in names)
    }
    out, updated = switch(index, [branch(name) for name in names], variables, rngs, x, nested_choices)
    for col, tree in updated.items():
      for name, value in tree.items():
        self.put_variable(col, name, value)
    return out

@MODELS.register_module()
class OneShotMutableOP(OneShotMutableModule):
  """Chooses one of several candidate operations by an int32 index.

  ``op(x, choices)`` runs ``candidates[names[choices[op.mutable_name]]](x)``.
  Under ``jit`` with a traced choice only the chosen candidate runs (a switch),
  and changing the choice never recompiles; under ``vmap`` over a batch of
  choices each member runs only its own candidate (see
  :func:`jaxmutate.mutables.switch`). A concrete (non-traced) choice calls the
  chosen candidate directly, with no switch at all. At ``init``, every
  candidate's variables are created under ``params[<mutable name>][<candidate
  name>]``; with ``choices=None`` the output is the sum of all candidates
  (MMRazor's ``forward_all``).

  Keyword arguments of the call (e.g. ``train=True``) are forwarded to every
  candidate and must be static Python values. Mutable collections such as
  ``batch_stats`` are updated for the chosen candidate only. Traced indices out
  of range are clamped (as ``lax.switch`` does); concrete ones raise.

  Attributes:
    candidates: ordered mapping of candidate name to a Flax module, a callable,
      or a config dict built with :data:`jaxmutate.MODELS`.
    alias: mutables sharing an alias share a search group.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotMutableOP({"small": nn.Dense(4), "big": nn.Dense(4, use_bias=False)})
    >>> variables = op.init(jax.random.key(0), jnp.ones((2, 3)), None)
    >>> sorted(variables["params"])
    ['big', 'small']
    >>> op.apply(variables, jnp.ones((2, 3)), {"": jnp.int32(1)}).shape
    (2, 4)
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  alias: str | None = None


@MODELS.register_module()
class OneShotProbMutableOP(OneShotMutableModule):
  """A :class:`OneShotMutableOP` sampled with given probabilities.

  Attributes:
    choice_probs: one probability per candidate, summing to 1 (± 1e-6).

  Raises:
    ValueError: at init, if the probabilities do not match the candidates in
      number, are negative or do not sum to 1.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotProbMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, choice_probs=(0.9, 0.1))
    >>> variables = op.init(jax.random.key(0), jnp.ones((1, 3)), None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> mutator.search_groups
    {0: ('',)}
  """

  candidates: Mapping[str, Any] = None  # type: ignore[assignment]
  choice_probs: Sequence[float] = ()
  alias: str | None = None

  def _spec_fields(self) -> dict[str, Any]:
    probs = tuple(float(p) for p in self.choice_probs)
    names = self.choice_names
    owner = f"OneShotProbMutableOP {self.mutable_name!r}"
    if len(probs) != len(names):
      raise ValueError(f"{owner}: choice_probs has {len(probs)} entries but there are {len(names)} candidates {names}.")
    if any(p < 0 for p in probs):
      raise ValueError(f"{owner}: choice_probs must be non-negative, got {probs}.")
    if abs(sum(probs) - 1.0) > 1e-6:
      raise ValueError(f"{owner}: choice_probs must sum to 1 ± 1e-6, got {probs} (sum {np.sum(probs)!r}).")
    return {"choice_probs": probs}
