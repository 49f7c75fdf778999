"""MMRazor's side of ``benchmarks/channels.py``: its channel section (f) on TinyResNet, torch CPU.

Runs only ``bench_channel()`` of the MMRazor 1.0.0 anchor benchmark
(``shared/anchors/mmrazor_bench/bench_spos.py``: ``OneShotChannelMutator`` and
``SlimmableChannelMutator`` on TinyResNet, forward at batch 256, 32x32x3,
2 torch threads), after that script's own heap warm-up (``heap_warmup``: two
SPOS fwd+bwd steps at batch 256, so that the timed forwards run on an already
faulted heap, as in its ``main()``). Importing ``bench_spos`` imports the
anchor's ``common``, which applies its torch 2.x compatibility shim
(``torch2_compat.py``) before MMRazor.

Torch and MMRazor are not dependencies of jaxmutate: this script runs in
MMRazor's own virtual environment (``shared/anchors/mmrazor_bench/SETUP.md``),
and nothing else in the repository imports them::

  /work/mmrazor_venv/bin/python benchmarks/mmrazor_channels.py   # ~1 minute on 2 cores

Writes ``benchmarks/results/mmrazor_channels.json`` (``--out`` to change),
with the machine, the load average before and after, and the section's
resource usage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ANCHOR = REPO.parent / "shared" / "anchors" / "mmrazor_bench"


def _rusage() -> tuple[float, float, int]:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def run(anchor: Path) -> dict[str, Any]:
  """The anchor's channel section after its heap warm-up, with the machine and the load."""
  sys.path.insert(0, str(anchor))
  # bench_spos imports common, which imports torch2_compat before any MMRazor module; it also sets 2 threads.
  import bench_spos

  load_start = os.getloadavg()
  net, mutator = bench_spos.build_spos()
  t0 = time.perf_counter()
  bench_spos.heap_warmup(net, mutator)
  warmup_s = time.perf_counter() - t0
  # net and mutator stay alive while the section runs, as in bench_spos.main(): the heap stays grown.
  t0 = time.perf_counter()
  u0, s0, f0 = _rusage()
  channels = bench_spos.bench_channel()
  u1, s1, f1 = _rusage()
  channels["_section_rusage"] = {
    "wall_s": round(time.perf_counter() - t0, 2),
    "user_s": round(u1 - u0, 2),
    "sys_s": round(s1 - s0, 2),
    "minor_faults": f1 - f0,
  }
  machine = bench_spos.machine_info()
  machine["LD_PRELOAD"] = os.environ.get("LD_PRELOAD", "")
  machine["GLIBC_TUNABLES"] = os.environ.get("GLIBC_TUNABLES", "")
  return {
    "what": "MMRazor 1.0.0 bench_spos.py section f (bench_channel) only, after its heap_warmup",
    "anchor": str(anchor),
    "heap_warmup_s": round(warmup_s, 2),
    "f_channel_mutators": channels,
    "load_average": {"start": load_start, "end": os.getloadavg()},
    "machine": machine,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--anchor", default=str(ANCHOR), help="the mmrazor_bench anchor folder")
  parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mmrazor_channels.json"))
  args = parser.parse_args()
  result = run(Path(args.anchor))
  oneshot = result["f_channel_mutators"].get("oneshot_channel_mutator", {})
  plain = result["f_channel_mutators"].get("plain_model_forward_ms_b256")
  print(f"plain model forward b256: {plain} ms")
  for kind in ("max", "sampled", "min"):
    print(f"OneShotChannelMutator {kind} width: {oneshot.get(f'forward_ms_b256_{kind}_width')} ms")
  print(f"units: {list(oneshot.get('units', {}))}")
  print(f"load: {result['load_average']}")
  Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
