"""Process-wide settings that make jitted search fast on CPU: the allocator and the compilation cache.

Neither is switched on by importing jaxmutate, since both change the whole
process. The ``jaxmutate`` command and the scripts in ``benchmarks/`` call
:func:`configure_allocator` and :func:`enable_compilation_cache` for you. In a
notebook or your own script, call them once, right after the imports and
before the first JAX computation::

  import jaxmutate as jm
  jm.runtime.configure_allocator()       # glibc: large buffers from a reused heap
  jm.runtime.enable_compilation_cache()  # ~/.cache/jaxmutate/xla, reused by later runs

Why the allocator matters. XLA:CPU allocates each step's temporary buffer
(tens to hundreds of MB) on a worker thread. glibc serves allocations that
large from a fresh ``mmap`` (a worker thread's arena cannot hold them), so
every page of the buffer is faulted in again on every step and given back
afterwards. On a 2-core machine that was about half of a SPOS train step
(``benchmarks/README.md``). :func:`configure_allocator` tells glibc, through
``mallopt``, to keep one arena, never to serve allocations by ``mmap`` and to
keep freed memory, so the buffer is faulted in once and then reused. It is the
same as starting Python with
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``.
The cost is that the process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import platform
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxmutate.errors import ConfigError, ConfigTypeError

# mallopt parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# mallopt takes a C int: the largest trim threshold it accepts, 2 GiB.
_NEVER_TRIM = 2**31 - 1
_TOP_PAD = 256 * 2**20

ALLOCATOR_ENV = "JAXMUTATE_ALLOCATOR"
"""``default`` keeps glibc's own settings where jaxmutate would tune them (the CLI, benchmarks); ``tuned`` or unset tunes them."""

CACHE_ENV = "JAXMUTATE_COMPILATION_CACHE"
"""A directory for the compilation cache, or ``off`` to disable it, where jaxmutate would enable it."""

_applied: list[bool] = []
_cache_events = {"hits": 0, "misses": 0}
_listening: list[bool] = []


def _count_cache_event(event: str, **kwargs: object) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    _cache_events["hits"] += 1
  elif event == "/jax/compilation_cache/cache_misses":
    _cache_events["misses"] += 1


def default_cache_dir() -> Path:
  """Where :func:`enable_compilation_cache` keeps compiled programs by default.

  ``$JAXMUTATE_COMPILATION_CACHE`` if set (and not ``off``), else
  ``$XDG_CACHE_HOME/jaxmutate/xla``, else ``~/.cache/jaxmutate/xla``.

  Example:
    >>> import jaxmutate as jm
    >>> jm.runtime.default_cache_dir().is_absolute()
    True
  """
  configured = os.environ.get(CACHE_ENV, "")
  if configured and configured.lower() != "off":
    return Path(configured).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base).expanduser() / "jaxmutate" / "xla"


def configure_allocator() -> bool:
  """Keeps XLA's large per-step buffers on a reused heap (glibc only; see the module docstring).

  Call it before the first JAX computation: worker threads started earlier
  keep their own malloc arenas. It is a no-op elsewhere than glibc (macOS,
  musl, Windows), when ``$JAXMUTATE_ALLOCATOR`` is ``default``, and when
  ``GLIBC_TUNABLES`` already sets malloc options (yours win).

  Returns:
    Whether glibc's settings were changed by this call or an earlier one.

  Raises:
    ConfigError: ``$JAXMUTATE_ALLOCATOR`` is set to something other than
      ``tuned`` or ``default``.

  Example:
    >>> import jaxmutate as jm
    >>> isinstance(jm.runtime.configure_allocator(), bool)
    True
  """
  mode = os.environ.get(ALLOCATOR_ENV, "").lower()
  if mode not in ("", "tuned", "default"):
    raise ConfigError(f"${ALLOCATOR_ENV} must be 'tuned' or 'default' (or unset), got {mode!r}.")
  if _applied:
    return _applied[0]
  applied = False
  if (
    platform.system() == "Linux"
    and platform.libc_ver()[0] == "glibc"
    and mode != "default"
    and "glibc.malloc" not in os.environ.get("GLIBC_TUNABLES", "")
  ):
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_TOP_PAD, _TOP_PAD))
    # mallopt returns 1 on success; all four are accepted by every glibc since 2.10.
    applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
  _applied.append(applied)
  return applied


def enable_compilation_cache(
  path: str | os.PathLike[str] | None = None, *, max_size_bytes: int | None = None
) -> Path | None:
  """Turns on JAX's persistent compilation cache, so that later runs compile nothing twice.

  Every program compiled from then on is written to ``path`` (and read back
  by any later process that compiles the same program with the same JAX and
  flags), however short its compile. Tracing still runs in every process;
  XLA's compile, the larger part of a first step, is skipped.

  Args:
    path: the cache directory; default :func:`default_cache_dir`. With
      ``$JAXMUTATE_COMPILATION_CACHE=off`` and no ``path``, nothing is enabled.
    max_size_bytes: a size cap; JAX then evicts the least recently used
      programs beyond it (this needs the ``filelock`` package). Default: no
      cap; the demo's programs take a few MB, and deleting the directory
      clears the cache.

  Returns:
    The directory in use, or ``None`` if the environment turned the cache off.

  Raises:
    ConfigTypeError: (a ``TypeError``) ``max_size_bytes`` is not an int or
      ``None``, or a cap is asked for without ``filelock`` installed.

  Example:
    >>> import tempfile
    >>> import jaxmutate as jm
    >>> folder = tempfile.mkdtemp()
    >>> str(jm.runtime.enable_compilation_cache(folder)) == folder
    True
    >>> jm.runtime.disable_compilation_cache()
  """
  if max_size_bytes is not None:
    if isinstance(max_size_bytes, bool) or not isinstance(max_size_bytes, int):
      raise ConfigTypeError(f"max_size_bytes must be an int (bytes) or None (no cap), got {max_size_bytes!r}.")
    if importlib.util.find_spec("filelock") is None:
      raise ConfigTypeError(
        f"max_size_bytes={max_size_bytes} needs the 'filelock' package (JAX locks the cache to evict from it); "
        "pip install filelock, or pass max_size_bytes=None."
      )
  if path is None:
    if os.environ.get(CACHE_ENV, "").lower() == "off":
      return None
    path = default_cache_dir()
  directory = Path(path).expanduser()
  # reset_cache drops a cache JAX already opened, so a second call moves it to the new directory.
  compilation_cache.reset_cache()
  compilation_cache.set_cache_dir(str(directory))
  if not _listening:
    jax.monitoring.register_event_listener(_count_cache_event)
    _listening.append(True)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_compilation_cache_max_size", -1 if max_size_bytes is None else max_size_bytes)
  return directory


def disable_compilation_cache() -> None:
  """Turns the persistent compilation cache off again (JAX's default).

  Example:
    >>> import jaxmutate as jm
    >>> jm.runtime.disable_compilation_cache()
  """
  compilation_cache.reset_cache()
  compilation_cache.set_cache_dir(None)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def compilation_cache_stats() -> dict[str, int]:
  """Programs read from (``hits``) and compiled into (``misses``) the persistent cache so far in this process.

  Counted from the moment :func:`enable_compilation_cache` is first called; a
  second run of the same config reports ``misses == 0``.

  Example:
    >>> import jaxmutate as jm
    >>> sorted(jm.runtime.compilation_cache_stats())
    ['hits', 'misses']
  """
  return dict(_cache_events)
