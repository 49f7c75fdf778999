"""Subnets with real weights: a supernet's chosen widths and candidates as a smaller static network.

:func:`export_subnet` turns a supernet, its variables and concrete choices
into ``(static_model, static_variables)``: a network with no search space
left, whose parameters are the supernet's, sliced to the kept channels and
chosen candidates (fewer of them), and whose output is the supernet's for
those choices. It runs, differentiates and trains on its own.

How it works:

- ``static_model`` is a :class:`FixedSubnet`: it calls the supernet with
  :class:`FixedChoices` (the choices, frozen into the module) inside
  :func:`jaxmutate.dynamic.static_mode`. There every dynamic layer is the plain
  static layer of its kept widths, with its variables declared at the kept
  shapes under the same names, and every mutable runs and creates only its
  chosen candidate(s). The variables keep the supernet's layout, minus what
  is not chosen.
- ``static_variables`` are assembled leaf by leaf: the supernet is applied
  once with the choices and the :data:`~jaxmutate.dynamic.SLICES_COLLECTION`
  mutable, so that every dynamic layer records its variables cut to its kept
  widths (prefixes, or ``order[:kept]`` for L1-style widths; BatchNorm
  statistics too); every other variable (a chosen candidate's layers, a
  switchable BatchNorm's chosen candidate) is the supernet's own.

What the supernet must respect for its subnets to be exportable:

- every layer whose input or output channels a unit prunes is a
  :mod:`jaxmutate.dynamic` layer given that width (an ``nn.Dense`` after a
  pruned conv would need other weights: :func:`export_subnet` names it);
- a module that sizes its layers (or decides a residual add or a projection)
  from its input's channel count reads the full count with
  :func:`jaxmutate.dynamic.full_channels` (in the static network ``x.shape[-1]``
  is the kept count);
- an L1-style ``order`` comes from outside the static network: pass it as a
  call argument (the exported network is called without it: its weights are
  already in that order), or compute it only when
  ``not jaxmutate.dynamic.is_static_mode()``;
- a dynamic layer's output in the static network has only the kept
  channels, where the supernet pads zeros: a supernet returning a pruned
  activation returns it padded, the subnet unpadded.

:func:`save_subnet` / :func:`load_subnet` write and read one file (msgpack):
the static network's registry config (``type`` and the constructor fields of
every module, which must be registered in :data:`jaxmutate.MODELS`), its fixed
choices and its variables, so it is rebuilt in a fresh process without the
supernet's weights.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> import jaxmutate as jm
  >>> from jaxmutate import dynamic
  >>> from jaxmutate.channels import OneShotMutableChannelUnit
  >>> from jaxmutate.export import export_subnet
  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, choices):
  ...     w = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="unit")(choices)
  ...     x = nn.relu(dynamic.DynamicConv(8, 3, name="conv")(x, out_width=w))
  ...     return dynamic.DynamicDense(3, name="fc")(x.mean((1, 2)), in_width=w)
  >>> net, x = Net(), jnp.ones((2, 6, 6, 3))
  >>> variables = net.init(jax.random.key(0), x, None)
  >>> static, static_variables = export_subnet(net, variables, {"unit": 1}, x)
  >>> jax.tree.map(jnp.shape, static_variables["params"]["conv"])
  {'bias': (4,), 'kernel': (3, 3, 3, 4)}
  >>> bool(jnp.allclose(static.apply(static_variables, x), net.apply(variables, x, {"unit": 1}), atol=1e-5))
  True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxmutate.dynamic import COSTS_COLLECTION, SLICES_COLLECTION, LayerSlices, static_mode
from jaxmutate.errors import (
  ChoiceTypeError,
  ConfigError,
  ConfigTypeError,
  SearchSpaceError,
  SubnetFileError,
  TracedChoiceError,
)
from jaxmutate.mutables import MUTABLES_COLLECTION
from jaxmutate.registry import MODELS, apply_custom_imports
from jaxmutate.spaces import is_traced

__all__ = [
  "FixedChoices",
  "FixedSubnet",
  "build_module",
  "export_subnet",
  "load_subnet",
  "module_config",
  "save_subnet",
]

SUBNET_FORMAT = "jaxmutate.subnet/1"
"""The ``format`` entry of a subnet file written by :func:`save_subnet`."""

FrozenChoices = tuple[tuple[str, Any], ...]


class FixedChoices(dict):
  """The choices of a fixed subnet: a ``dict`` whose mutables have nothing left to choose.

  Mutables that receive choices carrying ``fixed_subnet = True`` run their
  chosen candidate(s) only and, at ``init``, create only their variables and
  record no spec. :class:`FixedSubnet` passes its choices as this.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.export import FixedChoices
    >>> op = jm.OneShotMutableOP({"small": nn.Dense(2), "big": nn.Dense(2)})
    >>> sorted(op.init(jax.random.key(0), jnp.ones((1, 3)), FixedChoices({"": 1})))
    ['params']
    >>> sorted(op.init(jax.random.key(0), jnp.ones((1, 3)), FixedChoices({"": 1}))["params"])
    ['big']
  """

  fixed_subnet = True


def freeze_choices(choices: Mapping[str, Any]) -> FrozenChoices:
  """Concrete choices as sorted ``(mutable name, value)`` pairs of plain Python (ints, floats, tuples).

  Raises:
    ChoiceTypeError: ``choices`` is not a mapping of mutable names.
    TracedChoiceError: a traced choice (naming the mutable).
  """
  if not isinstance(choices, Mapping):
    raise ChoiceTypeError(
      f"choices must be a dict of mutable name -> choice (a mutator's set_choices(group_choices)), got "
      f"{type(choices).__name__}."
    )
  frozen = []
  for name, value in choices.items():
    if not isinstance(name, str):
      raise ChoiceTypeError(
        f"choices are keyed by mutable names (str), got the key {name!r}; expand group choices with the "
        "mutator's set_choices first."
      )
    if any(is_traced(leaf) for leaf in jax.tree.leaves(value)):
      raise TracedChoiceError(
        f"The choice of mutable {name!r} is traced; a static subnet needs concrete choices (call export_subnet "
        "outside jit/vmap, e.g. on jax.device_get(choices))."
      )
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
      raise ChoiceTypeError(f"The choice of mutable {name!r} must be numbers, got {value!r}.")
    frozen.append((name, _to_tuple(array.tolist())))
  return tuple(sorted(frozen))


def _to_tuple(value: Any) -> Any:
  return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value


def thaw_choices(frozen: FrozenChoices) -> FixedChoices:
  """The :class:`FixedChoices` of frozen pairs: int32 for integers, float32 for floats, as arrays for tuples."""
  thawed = FixedChoices()
  for name, value in frozen:
    leaves = np.asarray(value).ravel().tolist() if isinstance(value, tuple) else [value]
    dtype = np.float32 if any(isinstance(v, float) for v in leaves) else np.int32
    thawed[name] = np.asarray(value, dtype)
  return thawed


def _with_choices(args: Sequence[Any], kwargs: Mapping[str, Any], choices: Any, argnum: int | str) -> tuple:
  if isinstance(argnum, str):
    return tuple(args), {**kwargs, argnum: choices}
  return (*args[:argnum], choices, *args[argnum:]), dict(kwargs)


@MODELS.register_module()
class FixedSubnet(nn.Module):
  """A supernet with its choices fixed: the static network :func:`export_subnet` returns.

  ``subnet(*args, **kwargs)`` calls ``supernet(*args, choices, **kwargs)``
  (the choices inserted at ``choices_argnum``) inside
  :func:`jaxmutate.dynamic.static_mode` with :class:`FixedChoices`: dynamic
  layers are the static layers of their kept widths and mutables are their
  chosen candidates, so the network has exactly the subnet's variables, at
  the supernet's paths (the supernet shares this module's scope). Dynamic
  layers' outputs hold only the kept channels.

  Attributes:
    supernet: the supernet module.
    choices: the fixed choices, ``(mutable name, value)`` pairs of plain
      Python (a dict is frozen on construction).
    choices_argnum: where the supernet's call takes the choices: a
      positional index (default 1: ``supernet(x, choices, ...)``) or a
      keyword name.
    method: the supernet's method to call, by name (``None``: ``__call__``).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.export import FixedSubnet
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     return jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2, use_bias=False)}, name="op")(x, choices)
    >>> subnet = FixedSubnet(Net(), {"op": 1})
    >>> subnet.choices
    (('op', 1),)
    >>> jax.tree.map(jnp.shape, subnet.init(jax.random.key(0), jnp.ones((1, 3))))
    {'params': {'op': {'b': {'kernel': (3, 2)}}}}
  """

  supernet: nn.Module
  choices: Any = ()
  choices_argnum: int | str = 1
  method: str | None = None

  def __post_init__(self) -> None:
    if isinstance(self.choices, Mapping):
      object.__setattr__(self, "choices", freeze_choices(self.choices))
    else:
      object.__setattr__(self, "choices", tuple((str(k), _to_tuple(v)) for k, v in self.choices))
    if isinstance(self.choices_argnum, bool) or not isinstance(self.choices_argnum, (int, str)):
      raise ConfigTypeError(f"FixedSubnet: choices_argnum must be an int or a str, got {self.choices_argnum!r}.")
    super().__post_init__()

  def setup(self) -> None:
    # The supernet's variables and mutable names stay at its own paths.
    nn.share_scope(self, self.supernet)

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    """Runs the subnet: the supernet's call without its choices argument."""
    args, kwargs = _with_choices(args, kwargs, thaw_choices(self.choices), self.choices_argnum)
    call = self.supernet if self.method is None else getattr(self.supernet, self.method)
    with static_mode():
      return call(*args, **kwargs)


def export_subnet(
  model: nn.Module,
  variables: Mapping[str, Any],
  choices: Mapping[str, Any],
  *args: Any,
  choices_argnum: int | str = 1,
  method: str | None = None,
  rngs: Mapping[str, jax.Array] | None = None,
  **kwargs: Any,
) -> tuple[FixedSubnet, dict[str, Any]]:
  """The subnet ``choices`` of ``model`` as a static network with real (sliced) weights.

  Args:
    model: the supernet (a Flax module with dynamic layers and/or mutables).
    variables: its variables (``params``, and ``batch_stats`` if it has
      BatchNorms; the ``mutables`` collection is not needed).
    choices: concrete choices, ``{mutable name: choice}`` (a mutator's
      ``set_choices(group_choices)``), for every mutable the call reaches.
    *args: an example of the static network's positional arguments (the
      supernet's, without the choices), e.g. an input batch: the network is
      traced on them (nothing is trained).
    choices_argnum: where the supernet's call takes ``choices`` (see
      :class:`FixedSubnet`).
    method: the supernet's method, by name.
    rngs: PRNG streams the call needs besides ``params`` (e.g. ``dropout``).
    **kwargs: an example of the keyword arguments (e.g. ``train=False``).

  Returns:
    ``(static_model, static_variables)``: a :class:`FixedSubnet` and its
    variables (the supernet's collections, e.g. ``params`` and
    ``batch_stats``, sliced). ``static_model.apply(static_variables, *args,
    **kwargs)`` equals ``model.apply(variables, <args with choices>,
    **kwargs)`` (up to the zero channels a dynamic layer's output pads).

  Raises:
    TracedChoiceError: a traced choice (naming the mutable).
    MissingChoiceError: a mutable without a choice.
    SearchSpaceError: the static network's variables do not fit the
      supernet's: a layer that is not a dynamic layer consumes pruned
      channels (its parameters changed shape; give it to a
      :mod:`jaxmutate.dynamic` layer with the width), or a dynamic layer is
      called with different widths.
    ConfigTypeError: ``model`` is not a Flax module.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.export import export_subnet
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     x = jm.OneShotMutableOP({"k1": nn.Conv(4, (1, 1)), "k3": nn.Conv(4, (3, 3))}, name="op")(x, choices)
    ...     w = dynamic.Width(2, 4)  # keep 2 of the BatchNorm's 4 channels
    ...     return dynamic.DynamicBatchNorm(use_running_average=not train, name="bn")(x, w)
    >>> net, x = Net(), jnp.ones((1, 4, 4, 2))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> static, static_variables = export_subnet(net, variables, {"op": 1}, x)
    >>> jax.tree.map(jnp.shape, static_variables)
    {'batch_stats': {'bn': {'mean': (2,), 'var': (2,)}}, 'params': {'bn': {'bias': (2,), 'scale': (2,)}, 'op': {'k3': {'bias': (4,), 'kernel': (3, 3, 2, 4)}}}}
    >>> static.apply(static_variables, x).shape
    (1, 4, 4, 2)
  """
  if not isinstance(model, nn.Module):
    raise ConfigTypeError(f"export_subnet: model must be a Flax module, got {type(model).__name__}.")
  if not isinstance(variables, Mapping) or "params" not in variables:
    raise ConfigTypeError("export_subnet: variables must be the supernet's variables, with a 'params' collection.")
  frozen = freeze_choices(choices)
  static_model = FixedSubnet(model.clone(parent=None), frozen, choices_argnum, method)
  rngs = dict(rngs or {})
  # 1. The supernet run once with the choices: every dynamic layer records its kept variables.
  own = (MUTABLES_COLLECTION, COSTS_COLLECTION, SLICES_COLLECTION)
  supernet_variables = {c: tree for c, tree in variables.items() if c not in own}
  collections = [SLICES_COLLECTION] + [c for c in supernet_variables if c != "params"]
  call_args, call_kwargs = _with_choices(args, kwargs, dict(thaw_choices(frozen)), choices_argnum)
  try:
    _, state = model.apply(
      supernet_variables, *call_args, method=method, mutable=collections, rngs=rngs or None, **call_kwargs
    )
  except TypeError as error:
    if args or kwargs or "argument" not in str(error):
      raise
    raise ConfigTypeError(
      "export_subnet traces the network on an example of its inputs: pass them after the choices, "
      f"export_subnet(model, variables, choices, x, ...); calling the supernet with the choices alone failed: {error}"
    ) from error
  sliced = _collect_slices(state.get(SLICES_COLLECTION, {}))
  # 2. The static network's variable shapes, traced (no computation).
  init_rngs = {**rngs, "params": jax.random.key(0)}
  target = jax.eval_shape(lambda: static_model.init(init_rngs, *args, **kwargs))
  # 3. Each leaf: a dynamic layer's slice, or the supernet's own variable.
  static_variables = {}
  for collection, tree in target.items():
    if collection in own or not jax.tree.leaves(tree):
      continue
    source = traverse_util.flatten_dict(dict(supernet_variables.get(collection, {})))
    leaves = {}
    for path, shape in traverse_util.flatten_dict(dict(tree)).items():
      if (collection, *path) in sliced:
        value, origin = sliced[(collection, *path)], "its dynamic layer's slice"
      elif path in source:
        value, origin = source[path], "the supernet's variable"
      else:
        raise SearchSpaceError(
          f"export_subnet: the static network has {collection} {'/'.join(path)!r}, which the supernet does not "
          "have: is the call the same as the supernet's?"
        )
      if tuple(np.shape(value)) != tuple(shape.shape):
        raise SearchSpaceError(
          f"export_subnet: {collection} {'/'.join(path)!r} has shape {tuple(shape.shape)} in the static network "
          f"but {origin} has {tuple(np.shape(value))}: a layer that is not a jaxmutate.dynamic layer consumes "
          "pruned channels (make it a dynamic layer and pass it the width), or a dynamic layer gets an input "
          "of other widths."
        )
      leaves[path] = jnp.asarray(value, shape.dtype)
    static_variables[collection] = traverse_util.unflatten_dict(leaves)
  return static_model, static_variables


def _collect_slices(tree: Any) -> dict[tuple[str, ...], jax.Array]:
  """``{(collection, *module path, name): array}`` from the recorded :class:`LayerSlices`."""
  found: dict[tuple[str, ...], jax.Array] = {}

  def walk(node: Any, path: tuple[str, ...]) -> None:
    if isinstance(node, LayerSlices):
      module_path = path[:-1]  # the record's own key
      for collection, entries in node.variables.items():
        for name, value in entries.items():
          found[(collection, *module_path, name)] = value
    elif isinstance(node, Mapping):
      for key, value in node.items():
        walk(value, (*path, str(key)))

  walk(tree, ())
  return found


# Module configs -----------------------------------------------------------


def module_config(module: nn.Module) -> dict[str, Any]:
  """A registered module's registry config: ``type``, its non-default constructor fields and imports.

  Fields that hold modules are configs themselves; tuples, lists, dicts,
  numbers, strings, dtypes and small arrays are kept as they are. A user
  module (not in ``jaxmutate``) also gets ``custom_imports`` of its Python
  module, so that a fresh process finds its registration.

  Args:
    module: a Flax module whose class is registered in :data:`jaxmutate.MODELS`.

  Returns:
    ``dict(type=..., **fields)``; :func:`build_module` inverts it.

  Raises:
    ConfigError: the class (or a nested module's) is not registered, or a
      field holds something a file cannot store (e.g. a custom initializer
      function).

  Example:
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.export import module_config
    >>> module_config(dynamic.DynamicConv(16, (3, 3), use_bias=False))
    {'type': 'DynamicConv', 'features': 16, 'kernel_size': (3, 3), 'use_bias': False}
  """
  cls = type(module)
  name = cls.__name__
  registered = MODELS.get(name) if name in MODELS else None
  if registered is not cls:
    where = f"{cls.__module__}.{cls.__qualname__}"
    raise ConfigError(
      f"{where} is not registered in jaxmutate.MODELS, so a subnet file cannot rebuild it; register it with "
      "@jm.MODELS.register_module() (and import its module before load_subnet)."
    )
  config: dict[str, Any] = {"type": name}
  if not cls.__module__.startswith("jaxmutate.") and cls.__module__ != "__main__":
    config["custom_imports"] = {"imports": [cls.__module__], "allow_failed_imports": False}
  for field in dataclasses.fields(module):
    if not field.init or field.name == "parent":
      continue
    value = getattr(module, field.name)
    if field.name == "name" and value is None:
      continue
    if _is_default(field, value):
      continue
    config[field.name] = value
  return config


def _is_default(field: dataclasses.Field, value: Any) -> bool:
  if field.default is not dataclasses.MISSING:
    default = field.default
  elif field.default_factory is not dataclasses.MISSING:
    default = field.default_factory()
  else:
    return False
  if value is default:
    return True
  try:
    return bool(type(value) is type(default) and value == default)
  except Exception:  # e.g. arrays: an elementwise comparison
    return False


def _encode(value: Any, where: str) -> Any:
  """A JSON-able, tagged form of a config value (tuples and modules keep their kind)."""
  if isinstance(value, nn.Module):
    config = module_config(value)
    return {"__module__": {k: _encode(v, f"{where}.{k}") for k, v in config.items()}}
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, tuple):
    return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
  if isinstance(value, list):
    return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
  if isinstance(value, Mapping):
    if not all(isinstance(k, str) for k in value):
      raise ConfigError(f"{where}: a subnet file stores dicts with str keys only, got {list(value)!r}.")
    return {"__dict__": {k: _encode(v, f"{where}.{k}") for k, v in value.items()}}
  if isinstance(value, (np.ndarray, jax.Array)):
    return {"__array__": np.asarray(value).tolist(), "dtype": str(np.asarray(value).dtype)}
  try:
    return {"__dtype__": np.dtype(value).name}
  except TypeError:
    pass
  raise ConfigError(
    f"{where} holds {value!r} ({type(value).__name__}), which a subnet file cannot store; keep the field's "
    "default or pass a registered module, a number, a string or a tuple instead."
  )


def _decode(value: Any) -> Any:
  if isinstance(value, list):
    return [_decode(v) for v in value]
  if not isinstance(value, dict):
    return value
  if "__module__" in value:
    return build_module({k: _decode(v) for k, v in value["__module__"].items()})
  if "__tuple__" in value:
    return tuple(_decode(v) for v in value["__tuple__"])
  if "__dict__" in value:
    return {k: _decode(v) for k, v in value["__dict__"].items()}
  if "__array__" in value:
    return np.asarray(value["__array__"], value["dtype"])
  if "__dtype__" in value:
    return jnp.dtype(value["__dtype__"])
  raise SubnetFileError(f"Unknown entry in a subnet file's model config: {value!r}.")


def build_module(config: Mapping[str, Any]) -> nn.Module:
  """Builds a module from :func:`module_config`'s output (after its ``custom_imports``).

  Raises:
    UnknownTypeError: the type is not registered (import its module first).

  Example:
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.export import build_module, module_config
    >>> build_module(module_config(dynamic.DynamicDense(4))) == dynamic.DynamicDense(4)
    True
  """
  config = dict(config)
  imports = config.pop("custom_imports", None)
  if imports is not None:
    apply_custom_imports(imports)
  return MODELS.get(config.pop("type"))(**config)


# Files --------------------------------------------------------------------


def save_subnet(path: str | Path, static_model: nn.Module, static_variables: Mapping[str, Any]) -> Path:
  """Writes a static subnet (its model config, fixed choices and variables) to one msgpack file.

  The file holds no supernet weights; :func:`load_subnet` rebuilds the
  network from the registry (the model and every module in its fields must be
  registered in :data:`jaxmutate.MODELS`).

  Args:
    path: the file to write; parent folders are created.
    static_model: what :func:`export_subnet` returned (or any registered module).
    static_variables: its variables.

  Returns:
    The path written.

  Raises:
    ConfigError: a module class that is not registered (register it with
      ``@jm.MODELS.register_module()``), or a field a file cannot store.

  Example:
    >>> import os, tempfile
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.export import load_subnet, save_subnet
    >>> dense = dynamic.DynamicDense(3)
    >>> variables = dense.init(jax.random.key(0), jnp.ones((1, 2)))
    >>> path = save_subnet(os.path.join(tempfile.mkdtemp(), "dense.msgpack"), dense, variables)
    >>> model, loaded = load_subnet(path)
    >>> model == dense, bool(jnp.array_equal(loaded["params"]["kernel"], variables["params"]["kernel"]))
    (True, True)
  """
  config = _encode(static_model, type(static_model).__name__)
  state = flax.serialization.to_state_dict(
    {c: jax.device_get(tree) for c, tree in static_variables.items() if c != MUTABLES_COLLECTION}
  )
  data = {"format": SUBNET_FORMAT, "model": json.dumps(config), "variables": state}
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(flax.serialization.msgpack_serialize(data))
  return path


def load_subnet(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
  """Reads a file of :func:`save_subnet`: ``(static_model, static_variables)``, no supernet needed.

  User modules are imported through the ``custom_imports`` the file records
  (their Python modules must be importable): load only files you trust, as a
  file names the Python modules it imports.

  Raises:
    FileNotFoundError: no such file.
    SubnetFileError: not a subnet file of this format.
    UnknownTypeError: a model type that is not registered.

  Example:
    >>> import os, tempfile
    >>> from jaxmutate.export import load_subnet
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.msgpack")
    >>> _ = open(path, "wb").write(b"not msgpack")
    >>> load_subnet(path)
    Traceback (most recent call last):
    ...
    jaxmutate.errors.SubnetFileError: ... is not a jaxmutate subnet file (format jaxmutate.subnet/1).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Subnet file {str(path)!r} does not exist.")
  try:
    data = flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as error:  # msgpack raises several kinds on foreign bytes
    raise SubnetFileError(f"{str(path)!r} is not a jaxmutate subnet file (format {SUBNET_FORMAT}).") from error
  if not isinstance(data, Mapping) or data.get("format") != SUBNET_FORMAT:
    raise SubnetFileError(f"{str(path)!r} is not a jaxmutate subnet file (format {SUBNET_FORMAT}).")
  model = _decode(json.loads(data["model"]))
  variables = jax.tree.map(jnp.asarray, dict(data["variables"]))
  return model, variables
