"""What the benchmark scripts record about the machine they ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import flax
import jax


def machine_info() -> dict[str, Any]:
  """CPU model, core count, accelerator and library versions."""
  cpu_model = platform.processor() or "unknown"
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return {
    "cpu_model": cpu_model,
    "cpu_cores": os.cpu_count(),
    "platform": platform.platform(),
    "jax_backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "gpu": "none available in this run" if jax.default_backend() == "cpu" else jax.default_backend(),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jax.lib.__version__ if hasattr(jax, "lib") else "unknown",
    "flax": flax.__version__,
  }
