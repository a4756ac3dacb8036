"""Which hypothesised potential fits a finetuning run's dual change best, with intervals over
seeds: the per-seed Delta-CDF of each trained potential's change under each hypothesis, and the
paired difference between the trained potential and its closest rival (the same seeds).

    python -m benchmarks.seed_intervals runs/simsiam runs/simsiam_long [--stat units]

For every run (a workdir of experiments.finetune, finetune_rnn or finetune_ssl), architecture and
trained potential it prints, for the paper's statistic (`delta_cdf`), the centred one and the
per-unit-scale one (`delta_cdf_units`):
  the mean Delta-CDF under each hypothesis with a 95% t-interval over seeds;
  the paired difference rival - trained (positive: the trained potential fits better) with its
  95% t-interval and the number of seeds in which the trained potential is best.
An interval that excludes 0 says that the ordering is not seed noise at this number of seeds.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.stats

from mdgeom import results

STATS = {"pooled": "delta_cdf", "centred": "delta_cdf_centered", "units": "delta_cdf_units"}


def t_interval(x, level: float = 0.95) -> tuple[float, float, float]:
  """Mean and the two-sided t-interval of the mean (NaN half-width for fewer than 2 values)."""
  x = np.asarray([v for v in x if v is not None and np.isfinite(v)], np.float64)
  if x.size == 0:
    return float("nan"), float("nan"), float("nan")
  mean = float(np.mean(x))
  if x.size < 2:
    return mean, float("nan"), float("nan")
  half = float(scipy.stats.t.ppf(0.5 + level / 2, x.size - 1) * np.std(x, ddof=1)
               / np.sqrt(x.size))
  return mean, mean - half, mean + half


def _as_array(values) -> np.ndarray:
  return np.asarray([np.nan if v is None else v for v in values], np.float64)


def report(res: dict, stat: str) -> list[str]:
  key = STATS[stat]
  if key not in res:
    return [f"  ({stat}: not in this results.json)"]
  lines = []
  for arch, by_trained in res[key].items():
    for trained, by_hyp in by_trained.items():
      table = {h: _as_array(v) for h, v in by_hyp.items()}
      if not table:
        continue
      seeds = len(next(iter(table.values())))
      lines.append(f"  {arch}, trained {trained}, {stat} statistic, {seeds} seeds:")
      for h, v in table.items():
        m, lo, hi = t_interval(v)
        lines.append(f"    {h:<17} {m:.4f}  [{lo:.4f}, {hi:.4f}]")
      if trained not in table or len(table) < 2:
        continue  # (no rival hypothesis to compare with)
      own = table[trained]
      rivals = {h: v for h, v in table.items() if h != trained}
      rival = min(rivals, key=lambda h: np.nanmean(rivals[h]))
      diff = rivals[rival] - own
      m, lo, hi = t_interval(diff)
      best = int(np.sum(np.all(np.stack([own <= v for v in rivals.values()]), axis=0)))
      verdict = ("trained potential fits better" if lo > 0 else
                 f"{rival} fits better" if hi < 0 else "not resolved at these seeds")
      lines.append(f"    {rival} - {trained}: {m:+.4f} [{lo:+.4f}, {hi:+.4f}] ({verdict}); "
                   f"{trained} best in {best} of {seeds} seeds")
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="workdirs (or results.json files)")
  parser.add_argument("--stat", choices=sorted(STATS), action="append",
                      help="statistics to report (default: all three)")
  args = parser.parse_args(argv)
  for run in args.runs:
    res = results.read_results(run)
    print(f"{run}: epochs {json.dumps(res.get('epochs'))}")
    for stat in args.stat or ("pooled", "centred", "units"):
      print("\n".join(report(res, stat)))


if __name__ == "__main__":
  try:
    main()
  except (FileNotFoundError, results.ResultFileError) as e:
    raise SystemExit(f"error: {e}") from None
