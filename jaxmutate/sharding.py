"""Device meshes for search: a ``population`` axis (subnets rated side by side) and a ``data`` axis (batch split).

The helpers place arrays on a :class:`jax.sharding.Mesh`; jitted steps then run
SPMD on every device of the mesh without any change to their code (XLA's
partitioner inserts the cross-device reductions, e.g. the batch mean of a
loss or of BatchNorm statistics). The same program runs on one CPU (a 1×1
mesh), on 8 forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and on many hosts.

* Data-parallel training: :func:`replicate` the train state, :func:`shard_batch`
  each batch along ``data``.
* Population-sharded scoring: :func:`pad_population` to a multiple of the
  ``population`` axis, :func:`shard_population`, then a jitted ``vmap`` over
  subnets; each device rates its own slice of the population.

Multi-host (one process per host, each seeing its local devices):

1. Call ``jax.distributed.initialize(coordinator_address="host0:1234",
   num_processes=N, process_id=i)`` in every process before any other JAX
   call (on Cloud TPU and SLURM the arguments are found automatically:
   ``jax.distributed.initialize()``).
2. Build the same mesh in every process: :func:`make_mesh` spans
   ``jax.devices()``, the devices of all processes.
3. Each process passes its own slice of every batch to :func:`shard_batch`
   (``jax.make_array_from_process_local_data``): the global batch is the
   concatenation of the processes' slices, so every process reads a
   different part of the data, with the same batch size per process.
4. Replicated values (the train state, the population) must be equal in
   every process: derive them from the same seed.

See ``docs/sharding.md`` for a worked example.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxmutate.sharding import make_mesh, shard_batch
  >>> mesh = make_mesh(population=1, data=1)
  >>> dict(mesh.shape)
  {'population': 1, 'data': 1}
  >>> shard_batch(mesh, jnp.ones((4, 3))).shape
  (4, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmutate.errors import ShardingError

POPULATION_AXIS = "population"
"""Name of the mesh axis that splits a population of subnets."""
DATA_AXIS = "data"
"""Name of the mesh axis that splits a batch of images."""


def make_mesh(population: int = 1, data: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
  """A ``(population, data)`` mesh over ``devices`` (default: every device of every process).

  Args:
    population: devices along the population axis (>= 1).
    data: devices along the data axis (default: the devices left,
      ``len(devices) // population``).
    devices: the devices to use (default ``jax.devices()``); the first
      ``population * data`` of them form the mesh.

  Returns:
    A :class:`jax.sharding.Mesh` with axes ``("population", "data")``.

  Raises:
    ShardingError: (a ``ValueError``) an axis size below 1, or more devices
      asked for than there are, or ``data`` omitted and ``population`` not
      dividing the device count.

  Example:
    >>> from jaxmutate.sharding import make_mesh
    >>> mesh = make_mesh()  # every device on the data axis
    >>> mesh.axis_names, mesh.devices.size == len(__import__("jax").devices())
    (('population', 'data'), True)
  """
  devices = list(jax.devices() if devices is None else devices)
  if not isinstance(population, int) or population < 1:
    raise ShardingError(f"make_mesh: population must be an int >= 1, got {population!r}.")
  if data is None:
    if len(devices) % population:
      raise ShardingError(
        f"make_mesh: population={population} does not divide the {len(devices)} devices; pass data= explicitly."
      )
    data = len(devices) // population
  if not isinstance(data, int) or data < 1:
    raise ShardingError(f"make_mesh: data must be an int >= 1, got {data!r}.")
  if population * data > len(devices):
    raise ShardingError(
      f"make_mesh: population={population} x data={data} = {population * data} devices asked for, "
      f"but only {len(devices)} are available ({jax.default_backend()}); on CPU, "
      "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N host devices."
    )
  grid = np.asarray(devices[: population * data], dtype=object).reshape(population, data)
  return Mesh(grid, (POPULATION_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding that keeps a full copy on every device of ``mesh``.

  Example:
    >>> from jaxmutate.sharding import make_mesh, replicated
    >>> replicated(make_mesh()).is_fully_replicated
    True
  """
  return NamedSharding(mesh, PartitionSpec())


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Every array of ``tree`` copied to every device of ``mesh`` (e.g. a train state for data parallelism).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.sharding import make_mesh, replicate
    >>> replicate(make_mesh(), {"w": jnp.ones(3)})["w"].sharding.is_fully_replicated
    True
  """
  return jax.device_put(tree, replicated(mesh))


def _leading_size(tree: Any, what: str) -> int:
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
  if None in sizes or len(sizes) != 1:
    raise ShardingError(
      f"{what}: every array needs the same leading axis, got leading sizes {sorted(map(str, sizes))}."
    )
  return sizes.pop()


def _shard_leading(mesh: Mesh, tree: Any, axis: str, what: str, unit: str) -> Any:
  size = _leading_size(tree, what)
  ways = mesh.shape[axis]
  global_size = size * (jax.process_count() if axis == DATA_AXIS else 1)
  if global_size % ways:
    raise ShardingError(
      f"{what}: the mesh's {axis!r} axis ({ways} devices) does not divide the {unit} of {global_size}; "
      f"use a {unit} that is a multiple of {ways}, or another mesh."
    )

  def place(leaf: Any) -> jax.Array:
    sharding = NamedSharding(mesh, PartitionSpec(axis, *([None] * (np.ndim(leaf) - 1))))
    if axis == DATA_AXIS and jax.process_count() > 1:
      return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
    return jax.device_put(leaf, sharding)

  return jax.tree.map(place, tree)


def shard_batch(mesh: Mesh, batch: Any) -> Any:
  """Every array of ``batch`` split along its leading (batch) axis over the mesh's ``data`` axis.

  With several processes each passes its own slice of the batch; the
  result is the global batch (the slices concatenated in process order).

  Raises:
    ShardingError: (a ``ValueError``) the ``data`` axis does not divide the
      batch size, or the arrays disagree on it.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.sharding import make_mesh, shard_batch
    >>> images, labels = shard_batch(make_mesh(), (jnp.ones((8, 3)), jnp.zeros(8, jnp.int32)))
    >>> images.shape, labels.shape
    ((8, 3), (8,))
  """
  return _shard_leading(mesh, batch, DATA_AXIS, "shard_batch", "batch size")


def shard_population(mesh: Mesh, population: Any) -> Any:
  """A stacked population ``{group: [P, ...]}`` split along ``P`` over the mesh's ``population`` axis.

  Raises:
    ShardingError: (a ``ValueError``) the ``population`` axis does not divide
      ``P`` (see :func:`pad_population`), or the groups disagree on ``P``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.sharding import make_mesh, shard_population
    >>> shard_population(make_mesh(population=1), {0: jnp.arange(4)})[0].shape
    (4,)
  """
  return _shard_leading(mesh, population, POPULATION_AXIS, "shard_population", "population size")


def pad_population(population: Any, multiple: int) -> tuple[Any, int]:
  """Pads a stacked population with copies of its last member to a multiple of ``multiple``.

  Returns:
    ``(padded, size)``: ``size`` is the original population size; rate the
    padded population and keep the first ``size`` scores.

  Raises:
    ShardingError: ``multiple`` below 1, or an empty population.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.sharding import pad_population
    >>> padded, size = pad_population({0: jnp.array([3, 1, 2])}, 4)
    >>> padded[0].tolist(), size
    ([3, 1, 2, 2], 3)
  """
  if not isinstance(multiple, int) or multiple < 1:
    raise ShardingError(f"pad_population: multiple must be an int >= 1, got {multiple!r}.")
  size = _leading_size(population, "pad_population")
  if size == 0:
    raise ShardingError("pad_population: the population is empty; there is nothing to rate.")
  padded = -(-size // multiple) * multiple
  index = np.minimum(np.arange(padded), size - 1)
  return jax.tree.map(lambda leaf: jnp.asarray(leaf)[index], population), size


__all__ = [
  "DATA_AXIS",
  "POPULATION_AXIS",
  "make_mesh",
  "pad_population",
  "replicate",
  "replicated",
  "shard_batch",
  "shard_population",
]
