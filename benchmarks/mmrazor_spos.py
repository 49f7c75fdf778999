"""MMRazor's side of ``benchmarks/vs_mmrazor.py``: SPOS, evaluation and DARTS on its ShuffleNet space, torch CPU.

Runs sections (a) sample + set, (b) SPOS train step, (c) evaluation of 64
subnets and (e) DARTS step of the MMRazor 1.0.0 anchor benchmark
(``shared/anchors/mmrazor_bench/bench_spos.py``: MMRazor's own
``OneShotMutableOP``/``DiffMutableOP`` over its ``ShuffleBlock`` k=3/5/7 and
``ShuffleXception``, 8 layers, 32 channels, 32x32 input, ``NasMutator``, 2 torch
threads), after that script's heap warm-up (two SPOS steps at batch 256, as in
its ``main()``). Importing ``bench_spos`` imports the anchor's ``common``, which
applies its torch 2.x compatibility shim before MMRazor.

Torch and MMRazor are not dependencies of jaxmutate: this runs in MMRazor's own
virtual environment (``shared/anchors/mmrazor_bench/SETUP.md``)::

  /work/mmrazor_venv/bin/python benchmarks/mmrazor_spos.py   # ~2 minutes on 2 cores

``benchmarks/vs_mmrazor.py`` runs it right after jaxmutate's side. Writes
``benchmarks/results/mmrazor_spos.json`` (``--out`` to change) with the machine,
the load average and each section's resource usage.
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


def _timed_section(fn: Any, *args: Any) -> dict[str, Any]:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  start = time.perf_counter()
  result = fn(*args)
  after = resource.getrusage(resource.RUSAGE_SELF)
  result["_section_rusage"] = {
    "wall_s": round(time.perf_counter() - start, 2),
    "user_s": round(after.ru_utime - usage.ru_utime, 2),
    "sys_s": round(after.ru_stime - usage.ru_stime, 2),
    "minor_faults": after.ru_minflt - usage.ru_minflt,
  }
  return result


def run(anchor: Path) -> dict[str, Any]:
  """The anchor's SPOS, evaluation and DARTS sections after its heap warm-up."""
  sys.path.insert(0, str(anchor))
  import bench_spos  # sets 2 torch threads; its common module applies the torch 2.x shim first

  load_start = os.getloadavg()
  net, mutator = bench_spos.build_spos()
  bench_spos.heap_warmup(net, mutator)
  results = {
    "sample_set": _timed_section(bench_spos.bench_sample_set, net, mutator),
    "spos_train_step": _timed_section(bench_spos.bench_spos_train, net, mutator),
    "eval_64_subnets": _timed_section(bench_spos.bench_eval_subnets, net, mutator),
    "darts_step": _timed_section(bench_spos.bench_darts),
  }
  results["machine"] = bench_spos.machine_info()
  results["load_average"] = {"start": load_start, "end": os.getloadavg()}
  return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--anchor", type=Path, default=ANCHOR, help="the MMRazor anchor benchmark folder")
  parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mmrazor_spos.json")
  args = parser.parse_args(argv)
  results = run(args.anchor)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
  print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, default=str))
  return results


if __name__ == "__main__":
  main()
