"""The errors jaxmutate raises, one class per condition.

Every class derives from :class:`JaxMutateError` *and* from the builtin that
the public contract promises (``ValueError``, ``KeyError``, ``TypeError``,
``RuntimeError``), so ``except ValueError`` written against the contract keeps
working, while ``except jm.errors.JaxMutateError`` catches everything the
library raises on purpose. Messages name the offending key or value, what was
expected and, where there is one, how to fix it.

The hierarchy::

    JaxMutateError
    ├── SearchSpaceError (ValueError)     a search space or grouping is invalid
    ├── ChoiceError (ValueError)          a choice is out of range or malformed
    │   ├── ChoiceTypeError (TypeError)   a choice of the wrong kind or dtype
    │   ├── MissingChoiceError (KeyError) a mutable or group has no choice
    │   └── TracedChoiceError (TypeError) a concrete choice was needed
    ├── SubnetFileError (ValueError)      a subnet (file or dict) does not fit
    │   ├── SubnetEntryMissingError (KeyError)
    │   └── SubnetFileTypeError (TypeError)
    ├── ConfigError (ValueError)          a config is invalid
    │   ├── UnknownTypeError (KeyError)   a ``type`` that no registry holds
    │   └── ConfigTypeError (TypeError)   a config of the wrong Python type
    └── NotPreparedError (RuntimeError)   a mutator used before preparation

Example:
  >>> import jaxmutate as jm
  >>> try:
  ...   jm.NasMutator().search_groups
  ... except jm.errors.NotPreparedError as error:
  ...   print(isinstance(error, RuntimeError), error)
  True NasMutator is not prepared: call mutator = mutator.prepare_from_supernet(variables) first.
"""

from __future__ import annotations


class JaxMutateError(Exception):
  """Base class of every error jaxmutate raises on purpose.

  ``str(error)`` is the message itself (also for the ``KeyError`` subclasses,
  whose builtin ``str`` would quote it).
  """

  def __str__(self) -> str:
    if len(self.args) == 1 and isinstance(self.args[0], str):
      return self.args[0]
    return super().__str__()


class SearchSpaceError(JaxMutateError, ValueError):
  """A search space or a search grouping is invalid.

  Raised for empty or duplicated candidates, probabilities that do not sum to
  one, ``custom_group`` keys that match nothing, a mutable in two groups, or a
  group whose members have different search spaces. Fix the supernet
  definition or the mutator's ``custom_group``.
  """


class ChoiceError(JaxMutateError, ValueError):
  """A choice (or group choice) is out of range or has the wrong shape.

  Concrete choices are checked eagerly. Traced choices (inside ``jit`` or
  ``vmap``) cannot be checked by value: an index out of range is clipped into
  range (see :mod:`jaxmutate.spaces`), never an error or a NaN.
  """


class ChoiceTypeError(ChoiceError, TypeError):
  """A choice of the wrong kind: e.g. a float where an int index is expected."""


class MissingChoiceError(ChoiceError, KeyError):
  """A mutable (or a search group) has no entry in the choices it was given.

  Build choices with a mutator's ``set_choices``, which fills every mutable.
  """


class TracedChoiceError(ChoiceError, TypeError):
  """A concrete choice was needed (e.g. to export a subnet) but it is traced.

  Call the function outside ``jit``/``vmap``, or pass ``jax.device_get(...)``.
  """


class SubnetFileError(JaxMutateError, ValueError):
  """A subnet (a dict or a YAML/JSON file) does not fit the search space.

  Raised for unknown entries, values that are not among the candidates, and
  two entries of one search group that disagree.
  """


class SubnetEntryMissingError(SubnetFileError, KeyError):
  """A subnet has no entry for a mutable, alias or unit it must cover."""


class SubnetFileTypeError(SubnetFileError, TypeError):
  """A subnet (or one of its entries) is not a mapping of the expected layout."""


class ConfigError(JaxMutateError, ValueError):
  """A config dict or config file is invalid: bad keys or values."""


class UnknownTypeError(ConfigError, KeyError):
  """A config's ``type`` names nothing registered; the message lists close matches."""


class ConfigTypeError(ConfigError, TypeError):
  """A config (or one of its values) has the wrong Python type."""


class NotPreparedError(JaxMutateError, RuntimeError):
  """A mutator was used before ``prepare_from_supernet``.

  Mutators are immutable: ``prepare_from_supernet`` returns a new, prepared
  mutator; keep the returned object (``mutator = mutator.prepare_...``).
  """


__all__ = [
    "ChoiceError",
    "ChoiceTypeError",
    "ConfigError",
    "ConfigTypeError",
    "JaxMutateError",
    "MissingChoiceError",
    "NotPreparedError",
    "SearchSpaceError",
    "SubnetEntryMissingError",
    "SubnetFileError",
    "SubnetFileTypeError",
    "TracedChoiceError",
    "UnknownTypeError",
]
