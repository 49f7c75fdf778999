"""Does the demo's search beat random subnets under the same constraint, seed after seed?

Runs ``jaxmutate demo`` (``jaxmutate/configs/spos_digits.py``) for each seed
and collects, from each run's ``summary.json``, the searched subnet's test
accuracy against the test accuracies of random subnets that meet the same
FLOPs constraint (``search_vs_random``): their median and quartiles, the
searched subnet's rank and percentile among them. The claim checked is the
demo's: the searched subnet beats the median constrained random subnet in
every seed.

Usage::

  PYTHONPATH=. python benchmarks/demo_seeds.py                 # seeds 0 1 2 (about 3 x the demo's time)
  PYTHONPATH=. python benchmarks/demo_seeds.py --seeds 0 --cfg-options train_cfg.epochs=2   # a smoke run

Writes ``benchmarks/results/demo_seeds.json`` (``--out`` to change) and
exits with 1 when a seed's searched subnet does not beat the median.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machine import machine_info

from jaxmutate import cli


def run_seeds(seeds: Sequence[int], cfg_options: Sequence[str] = ()) -> dict[str, Any]:
  """Runs the demo config once per seed; returns the per-seed comparison and whether every seed beat the median."""
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    for seed in seeds:
      summary = cli.run_search(
        cli.resolve_config(f"configs/{cli.DEMO_CONFIG}"), Path(folder) / str(seed), seed, cfg_options, False
      )
      versus = summary["search_vs_random"]
      spread = versus["random_test_accuracy"] or {}
      rows.append(
        {
          "seed": seed,
          "searched_val_accuracy": summary["best_val_accuracy"],
          "searched_test_accuracy": summary["best_test_accuracy"],
          "searched_mflops": summary["best_flops_M_per_image"],
          "random_found": versus["found"],
          "random_requested": versus["requested"],
          "random_attempts": versus["attempts"],
          "random_median": spread.get("median"),
          "random_q1": spread.get("q1"),
          "random_q3": spread.get("q3"),
          "random_min": spread.get("min"),
          "random_max": spread.get("max"),
          "rank": versus["rank"],
          "rank_out_of": versus["rank_out_of"],
          "percentile": versus["percentile"],
          "beats_median": bool(versus["beats_median"]),
          "warning": versus["warning"],
          "wall_time_s": summary["wall_time_s"],
        }
      )
  return {
    "config": cli.DEMO_CONFIG,
    "cfg_options": list(cfg_options),
    "seeds": rows,
    "beats_median_in_every_seed": all(row["beats_median"] for row in rows),
    "machine": machine_info(),
  }


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
  parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "demo_seeds.json"))
  args = parser.parse_args(argv)
  report = run_seeds(args.seeds, args.cfg_options)
  for row in report["seeds"]:
    print(
      f"seed {row['seed']}: searched {row['searched_test_accuracy']:.3f} ({row['searched_mflops']:.3f} MFLOPs) vs "
      f"random median {row['random_median']} (q1 {row['random_q1']}, q3 {row['random_q3']}, "
      f"n={row['random_found']}/{row['random_requested']}): rank {row['rank']}/{row['rank_out_of']}, "
      f"percentile {row['percentile']}, {row['wall_time_s']:.0f} s"
    )
  print("beats the median in every seed:", report["beats_median_in_every_seed"])
  Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
  print(f"wrote {args.out}")
  return 0 if report["beats_median_in_every_seed"] else 1


if __name__ == "__main__":
  sys.exit(main())
