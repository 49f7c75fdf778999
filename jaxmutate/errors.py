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
    ├── ConfigError (ValueError)          a config (or an argument) is invalid
    │   ├── ConfigKeyError (KeyError)     a config names a key that does not exist
    │   │   └── UnknownTypeError          a ``type`` that no registry holds
    │   └── ConfigTypeError (TypeError)   a config of the wrong Python type
    │   └── ShardingError                 a device mesh does not fit the work
    ├── NotPreparedError (RuntimeError)   a mutator used before preparation
    ├── SearchError (RuntimeError)        a search cannot go on (e.g. nothing
    │                                     meets the constraints)
    ├── CheckpointError (RuntimeError)    a checkpoint cannot be resumed
    │   ├── CheckpointCorruptError        a partial or damaged checkpoint
    │   ├── CheckpointMismatchError (ValueError)
    │   │                                 another config or search space
    │   └── CheckpointExistsError         checkpoints exist, resume not asked
    └── NonFiniteLossError (FloatingPointError)
                                          a training loss became NaN or inf

Example:
  >>> import jaxmutate as jm
  >>> try:
  ...   jm.NasMutator().search_groups
  ... except jm.errors.NotPreparedError as error:
  ...   print(isinstance(error, RuntimeError), error)
  True NasMutator is not prepared: call NasMutator.prepare_from_supernet(variables) and keep the mutator it returns.
"""

from __future__ import annotations


class JaxMutateError(Exception):
  """Base class of every error jaxmutate raises on purpose.

  ``str(error)`` is the message itself (also for the ``KeyError`` subclasses,
  whose builtin ``str`` would quote it).

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.ChoiceError, jm.errors.JaxMutateError), issubclass(jm.errors.ChoiceError, ValueError)
    (True, True)
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

  Example:
    >>> from jaxmutate.errors import SearchSpaceError
    >>> from jaxmutate.spaces import IndexSpace
    >>> try:
    ...   IndexSpace(("conv3", "conv5")).max()
    ... except SearchSpaceError as error:
    ...   print(error)
    IndexSpace(['conv3', 'conv5']) has no max choice (only sorted values do).
  """


class ChoiceError(JaxMutateError, ValueError):
  """A choice (or group choice) is out of range or has the wrong shape.

  Concrete choices are checked eagerly. Traced choices (inside ``jit`` or
  ``vmap``) cannot be checked by value: an index out of range is clipped into
  range (see :mod:`jaxmutate.spaces`), never an error or a NaN.

  Example:
    >>> from jaxmutate.errors import ChoiceError
    >>> from jaxmutate.spaces import IndexSpace
    >>> try:
    ...   IndexSpace(("conv3", "conv5")).check(5, "block1")
    ... except ChoiceError as error:
    ...   print(error)
    Mutable 'block1': choice 5 is out of range [0, 2).
  """


class ChoiceTypeError(ChoiceError, TypeError):
  """A choice of the wrong kind: e.g. a float where an int index is expected.

  Example:
    >>> from jaxmutate.errors import ChoiceTypeError
    >>> from jaxmutate.spaces import IndexSpace
    >>> try:
    ...   IndexSpace(("conv3", "conv5")).check(1.0, "block1")
    ... except ChoiceTypeError as error:
    ...   print(error)
    Mutable 'block1' expects an integer choice index, got dtype float64."""


class MissingChoiceError(ChoiceError, KeyError):
  """A mutable (or a search group) has no entry in the choices it was given.

  Build choices with a mutator's ``set_choices``, which fills every mutable.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   mutator.set_choices({})
    ... except jm.errors.MissingChoiceError as error:
    ...   print(error)
    Missing choice for search group 0 ('w'); every group of [0] needs one.
  """


class TracedChoiceError(ChoiceError, TypeError):
  """A concrete choice was needed (e.g. to export a subnet) but it is traced.

  Call the function outside ``jit``/``vmap``, or pass ``jax.device_get(...)``.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   jax.jit(lambda c: mutator.export_fix_subnet({0: c}))(1)
    ... except jm.errors.TracedChoiceError as error:
    ...   print(type(error).__name__)
    TracedChoiceError
  """


class SubnetFileError(JaxMutateError, ValueError):
  """A subnet (a dict or a YAML/JSON file) does not fit the search space.

  Raised for unknown entries, values that are not among the candidates, and
  two entries of one search group that disagree.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   mutator.load_fix_subnet({"w": {"chosen": 3}})
    ... except jm.errors.SubnetFileError as error:
    ...   print(error)
    Subnet entry 'w': chosen 3 is not one of [1, 2].
  """


class SubnetEntryMissingError(SubnetFileError, KeyError):
  """A subnet has no entry for a mutable, alias or unit it must cover.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   mutator.load_fix_subnet({})
    ... except jm.errors.SubnetEntryMissingError as error:
    ...   print(error)
    Subnet has no entry for 'w' (search group 0).
  """


class SubnetFileTypeError(SubnetFileError, TypeError):
  """A subnet (or one of its entries) is not a mapping of the expected layout.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   mutator.load_fix_subnet({"w": 2})
    ... except jm.errors.SubnetFileTypeError as error:
    ...   print(error)
    Subnet entry 'w' must be a mapping with a 'chosen' key, got 2.
  """


class ConfigError(JaxMutateError, ValueError):
  """A config dict, config file or argument is invalid: a bad value.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> value = jm.OneShotMutableValue([1, 2], alias="w")
    >>> mutator = jm.NasMutator().prepare_from_supernet(value.init(jax.random.key(0), None))
    >>> try:
    ...   mutator.sample_choices(jax.random.key(0), kind="largest")
    ... except jm.errors.ConfigError as error:
    ...   print(error)
    sample_choices: kind must be 'random', 'max' or 'min', got 'largest'.
  """


class ConfigKeyError(ConfigError, KeyError):
  """A config names a key that does not exist (e.g. a resource a function does not give).

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.ConfigKeyError, KeyError), issubclass(jm.errors.UnknownTypeError, jm.errors.ConfigKeyError)
    (True, True)
  """


class UnknownTypeError(ConfigKeyError):
  """A config's ``type`` names nothing registered; the message lists close matches.

  Example:
    >>> import jaxmutate as jm
    >>> try:
    ...   jm.build(dict(type="NasMutatr"))
    ... except KeyError as error:
    ...   print("NasMutator" in str(error))
    True
  """


class ConfigTypeError(ConfigError, TypeError):
  """A config, one of its values, or an argument has the wrong Python type.

  Example:
    >>> import jaxmutate as jm
    >>> try:
    ...   jm.NasMutator(custom_group="block1")
    ... except jm.errors.ConfigTypeError as error:
    ...   print(error)
    custom_group must be a list of lists of mutable names or aliases, got 'block1'.
  """


class NotPreparedError(JaxMutateError, RuntimeError):
  """A mutator was used before ``prepare_from_supernet``.

  Mutators are immutable: ``prepare_from_supernet`` returns a new, prepared
  mutator; keep the returned object (``mutator = mutator.prepare_...``).

  Example:
    >>> import jaxmutate as jm
    >>> try:
    ...   jm.OneShotModuleMutator().search_groups
    ... except RuntimeError as error:
    ...   print(type(error).__name__)
    NotPreparedError
  """


class SearchError(JaxMutateError, RuntimeError):
  """A search cannot go on: e.g. no candidate meets the constraints within the attempt cap.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.SearchError, RuntimeError)
    True
  """


class ShardingError(ConfigError):
  """A device mesh does not fit the work: an axis that does not divide the batch or the population.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.ShardingError, ValueError), issubclass(jm.errors.ShardingError, jm.errors.ConfigError)
    (True, True)
  """


class CheckpointError(JaxMutateError, RuntimeError):
  """A checkpoint cannot be resumed; a run never silently restarts from scratch instead.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.CheckpointCorruptError, jm.errors.CheckpointError), issubclass(
    ...   jm.errors.CheckpointError, RuntimeError)
    (True, True)
  """


class CheckpointCorruptError(CheckpointError):
  """A checkpoint is partial or damaged (a file missing or truncated); the message names the step and folder.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.CheckpointCorruptError, RuntimeError)
    True
  """


class CheckpointMismatchError(CheckpointError, ValueError):
  """A checkpoint was written by another config or another search space (its fingerprints differ).

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.CheckpointMismatchError, ValueError)
    True
  """


class CheckpointExistsError(CheckpointError):
  """A run would write checkpoints into a folder that already holds some, without being asked to resume.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.CheckpointExistsError, jm.errors.CheckpointError)
    True
  """


class NonFiniteLossError(JaxMutateError, FloatingPointError):
  """A training loss became NaN or infinite; the message names the first bad step and its subnet.

  Example:
    >>> import jaxmutate as jm
    >>> issubclass(jm.errors.NonFiniteLossError, FloatingPointError)
    True
  """


__all__ = [
  "CheckpointCorruptError",
  "CheckpointError",
  "CheckpointExistsError",
  "CheckpointMismatchError",
  "ChoiceError",
  "ChoiceTypeError",
  "ConfigError",
  "ConfigKeyError",
  "ConfigTypeError",
  "JaxMutateError",
  "MissingChoiceError",
  "NonFiniteLossError",
  "NotPreparedError",
  "SearchError",
  "SearchSpaceError",
  "ShardingError",
  "SubnetEntryMissingError",
  "SubnetFileError",
  "SubnetFileTypeError",
  "TracedChoiceError",
  "UnknownTypeError",
]
