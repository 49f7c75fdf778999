"""One-shot operation mutables: exactly one candidate runs per subnet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import SearchSpaceError
from jaxmutate.mutables._candidates import CandidateMutable, is_fixed_subnet, record_spec, same_structure, tree_sum
from jaxmutate.registry import MODELS
from jaxmutate.spaces import IndexSpace


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

  @property
  def space(self) -> IndexSpace:
    return IndexSpace(self.choice_names)

  @nn.compact
  def __call__(self, x: Any, choices: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    record_spec(self, choices)
    if self.is_initializing() and not is_fixed_subnet(choices):
      outputs = self._call_all([x] * len(self.choice_names), choices, kwargs, lambda c, kw: dict(kw))
      same_structure(self._owner, outputs)
      if choices is None:
        return tree_sum(list(outputs.values()))
      index = self._checked_choice(choices)
      return jax.tree.map(lambda *outs: jnp.stack(outs)[index], *outputs.values())
    # Concrete: exactly the chosen candidate (in a fixed subnet, at init too). Traced: a switch that runs one.
    return self._run_chosen(self._checked_choice(choices), [x], choices, kwargs)


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

  @property
  def space(self) -> IndexSpace:
    probs = tuple(float(p) for p in self.choice_probs)
    names = self.choice_names
    owner = f"OneShotProbMutableOP {self.mutable_name!r}"
    if len(probs) != len(names):
      raise SearchSpaceError(
        f"{owner}: choice_probs has {len(probs)} entries but there are {len(names)} candidates {names}."
      )
    if any(p < 0 for p in probs):
      raise SearchSpaceError(f"{owner}: choice_probs must be non-negative, got {probs}.")
    if abs(sum(probs) - 1.0) > 1e-6:
      raise SearchSpaceError(f"{owner}: choice_probs must sum to 1 ± 1e-6, got {probs} (sum {np.sum(probs)!r}).")
    return IndexSpace(names, probs)
