"""Where a finetuning run's time goes: the phase table (pretraining, learning-rate search,
finetuning of the seeds, analysis) of one or more finished runs, side by side.

    python -m benchmarks.finetune_phases runs/finetune runs/rnn runs/simsiam

The seconds are those each run recorded in results.json (`phase_seconds`: the pretraining cell,
the search cells, the seeds' training and their analysis; a cell reused from an earlier run
counts with the time it took then) and its wall time. Runs of one config before and after a
change, made on the same machine, give the change's effect per phase; the load average at the
time is not recorded, so compare runs made alike.
"""

from __future__ import annotations

import argparse

from mdgeom import results

PHASES = ("pretrain", "search", "finetune", "analysis")


def rows(path: str) -> list[str]:
  res = results.read_results(path)
  out = []
  seeds = len(res.get("config", {}).get("seeds", ()))
  for arch, phases in res.get("phase_seconds", {}).items():
    total = sum(phases.get(p, 0.0) for p in PHASES)
    cells = " ".join(f"{phases.get(p, float('nan')):>9.0f}" for p in PHASES)
    out.append(f"{path:<28} {arch:<15} {seeds:>5} {cells} {total:>9.0f}")
  if not out:
    out.append(f"{path}: no phase_seconds (a run from before they were recorded)")
  wall = res.get("wall_time_s")
  if wall is not None:
    out.append(f"{'':<28} {'(wall time)':<15} {'':>5} {'':>39} {wall:>9.0f}")
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="workdirs or results.json files")
  args = parser.parse_args(argv)
  print(f"{'run':<28} {'architecture':<15} {'seeds':>5} " +
        " ".join(f"{p:>9}" for p in PHASES) + f" {'total':>9}   (seconds)")
  for run in args.runs:
    print("\n".join(rows(run)))


if __name__ == "__main__":
  try:
    main()
  except (FileNotFoundError, results.ResultFileError) as e:
    raise SystemExit(f"error: {e}") from None
