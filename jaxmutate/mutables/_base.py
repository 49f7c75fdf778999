"""What every mutable shares: its spec, its name and how it reads its choice."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct

from jaxmutate.errors import ChoiceTypeError, ConfigTypeError, MissingChoiceError
from jaxmutate.spaces import SearchSpace

MUTABLES_COLLECTION = "mutables"
"""The variable collection where each mutable records its :class:`MutableSpec` at
``init``. It holds no arrays (a spec is a pytree without leaves), so it passes
through ``jit`` and costs nothing; mutators read it to find the search space."""


@flax.struct.dataclass
class MutableSpec:
  """Static description of one mutable, recorded in the ``mutables`` collection.

  A spec has no array leaves: every field is static metadata, so a variable
  tree that holds specs can be passed to jitted functions unchanged. What the
  mutable's choice means lives in its :mod:`search space <jaxmutate.spaces>`.

  Attributes:
    mutable_type: the mutable's class (mutators filter on it).
    alias: the mutable's alias, or ``None``.
    space: the mutable's :class:`~jaxmutate.spaces.SearchSpace`; mutables
      with equal spaces may share a search group.
    order: the position of the mutable in definition order within its supernet.
    init_args: the keyword arguments that rebuild the mutable, as
      ``(name, value)`` pairs in the mutable's order, with tuples for lists (hashable, static), for
      mutables that define them (channel units: MMRazor's ``init_args``);
      ``None`` otherwise.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotMutableOP({"k3": nn.Dense(2), "k5": nn.Dense(2)}, alias="stage1")
    >>> spec = op.init(jax.random.key(0), jnp.ones((1, 2)), None)["mutables"]["spec"]
    >>> spec.alias, spec.space, spec.num_choices
    ('stage1', IndexSpace(candidates=('k3', 'k5'), probs=None), 2)
    >>> jax.tree.leaves(spec)
    []
  """

  mutable_type: type = flax.struct.field(pytree_node=False)
  alias: str | None = flax.struct.field(pytree_node=False)
  space: SearchSpace = flax.struct.field(pytree_node=False)
  order: int = flax.struct.field(pytree_node=False, default=0)
  init_args: tuple[tuple[str, Any], ...] | None = flax.struct.field(pytree_node=False, default=None)

  @property
  def choice_names(self) -> tuple[Any, ...]:
    """The names of the discrete choices (candidates, edges or values)."""
    return self.space.names

  @property
  def num_choices(self) -> int:
    return self.space.num_choices

  def describe(self) -> str:
    """``"<mutable type>, <space>"`` for error messages."""
    return f"{self.mutable_type.__name__}, {self.space.describe()}"


# Definition order, counted per init (keyed by the root scope of that init) so
# that specs are identical across inits of the same supernet.
_DEFINITION_COUNTERS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def next_definition_order(scope: Any) -> int:
  """The next position in definition order within the supernet being initialised (one counter per ``init``).

  Mutables number their specs with it, and dynamic layers their channel
  records, so mutators can restore definition order after a jitted ``init``
  has sorted the variable dicts by key.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.mutables import next_definition_order
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     return next_definition_order(self.scope), next_definition_order(self.scope)
    >>> Net().init_with_output(jax.random.key(0), jnp.ones(1))[0]
    (0, 1)
  """
  root = scope.root
  order = _DEFINITION_COUNTERS.get(root, 0)
  _DEFINITION_COUNTERS[root] = order + 1
  return order


class BaseMutable(nn.Module):
  """Base class of every mutable: a Flax module whose behaviour is chosen by input.

  Subclasses read their choice from the ``choices`` dict passed at call time,
  keyed by :attr:`mutable_name`, and state what the choice means through
  :attr:`space` (a :class:`~jaxmutate.spaces.SearchSpace`). At ``init`` they
  record a :class:`MutableSpec` in the ``mutables`` collection, which
  mutators read.

  Every concrete mutable has an ``alias: str | None`` field (declared last so
  that the main arguments come first): mutables that share an alias share a
  search group and are exported under the alias.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, choices):
    ...     return jm.OneShotMutableValue([1, 2], name="width")(choices)
    >>> variables = Net().init(jax.random.key(0), None)
    >>> isinstance(jm.OneShotMutableValue([1]), jm.BaseMutable)
    True
    >>> int(Net().apply(variables, {"width": jnp.int32(1)}))
    2
    >>> try:
    ...   Net().apply(variables, {})
    ... except KeyError as error:
    ...   print(error)
    No choice for mutable 'width'; choices has keys [].
  """

  @property
  def mutable_name(self) -> str:
    """The module path from the root joined with ``.``; the key in ``choices``."""
    return ".".join(str(p) for p in self.scope.path) if self.scope is not None else ""

  @property
  def space(self) -> SearchSpace:
    """What this mutable's choice means (its search space)."""
    raise NotImplementedError(f"{type(self).__name__} must define its search space.")

  def _record_spec(self) -> None:
    alias = getattr(self, "alias", None)
    if alias is not None and not isinstance(alias, str):
      raise ConfigTypeError(f"Mutable {self.mutable_name!r}: alias must be a str or None, got {alias!r}.")
    if self.is_initializing() and not self.has_variable(MUTABLES_COLLECTION, "spec"):
      spec = MutableSpec(
        mutable_type=type(self),
        alias=alias,
        space=self.space,
        order=next_definition_order(self.scope),
        init_args=self._spec_init_args(),
      )
      self.put_variable(MUTABLES_COLLECTION, "spec", spec)

  def _spec_init_args(self) -> tuple[tuple[str, Any], ...] | None:
    """The spec's ``init_args`` (see :class:`MutableSpec`); ``None`` unless a subclass defines them."""
    return None

  def _read_choice(self, choices: Mapping[str, Any] | None) -> Any:
    """This mutable's raw entry of ``choices``."""
    name = self.mutable_name
    if choices is None:
      raise MissingChoiceError(
        f"Mutable {name!r} needs a choice but choices is None; only init accepts None. "
        "Build choices with a mutator's set_choices."
      )
    if not isinstance(choices, Mapping):
      raise ChoiceTypeError(f"choices must be a dict of mutable name -> choice, got {type(choices).__name__}.")
    if name not in choices:
      known = sorted(choices)
      raise MissingChoiceError(
        f"No choice for mutable {name!r}; choices has keys {known[:20]}{'...' if len(known) > 20 else ''}."
      )
    return choices[name]

  def _checked_choice(self, choices: Mapping[str, Any] | None) -> Any:
    """This mutable's choice, validated by its space (traced indices clipped)."""
    return self.space.check(self._read_choice(choices), self.mutable_name)
