"""The small report tools under benchmarks/: seed intervals and phase tables of finished runs."""

import json

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import finetune_phases, seed_intervals
from mdgeom import results


@given(st.lists(st.floats(-10, 10), min_size=2, max_size=30))
def test_t_interval_is_scipys(values):
  mean, lo, hi = seed_intervals.t_interval(values)
  x = np.asarray(values)
  sem = scipy.stats.sem(x)
  if sem == 0:
    assert lo == hi == pytest.approx(mean)
    return
  ref = scipy.stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sem)
  assert mean == pytest.approx(x.mean(), abs=1e-12)
  assert (lo, hi) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_t_interval_skips_missing_values_and_needs_two():
  assert seed_intervals.t_interval([1.0, None, float("nan"), 3.0])[0] == 2.0
  mean, lo, hi = seed_intervals.t_interval([0.5])
  assert mean == 0.5 and np.isnan(lo) and np.isnan(hi)


def _res(own, rival):
  return {"delta_cdf": {"net": {"3-norm": {"2.5-norm": rival, "3-norm": own}}}}


def test_report_says_which_fits_better_and_counts_seeds():
  rng = np.random.default_rng(0)
  own = list(0.20 + 0.01 * rng.standard_normal(10))
  better = seed_intervals.report(_res(own, [v + 0.05 for v in own]), "pooled")
  assert "trained potential fits better" in better[-1] and "best in 10 of 10" in better[-1]
  worse = seed_intervals.report(_res(own, [v - 0.05 for v in own]), "pooled")
  assert "2.5-norm fits better" in worse[-1] and "best in 0 of 10" in worse[-1]
  noise = list(0.20 + 0.01 * rng.standard_normal(10))
  assert "not resolved" in seed_intervals.report(_res(own, noise), "pooled")[-1]
  assert "not in this results.json" in seed_intervals.report(_res(own, noise), "units")[0]


def test_phase_table_rows(tmp_path):
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"config": {"seeds": [0, 1, 2, 3, 4]}, "wall_time_s": 500.0,
                              "phase_seconds": {"resnet_small": {"pretrain": 97.0, "search": 155.0,
                                                                 "finetune": 220.0,
                                                                 "analysis": 20.0}}}))
  first, wall = finetune_phases.rows(str(path))
  assert first.split()[1:] == ["resnet_small", "5", "97", "155", "220", "20", "492"]
  assert wall.split()[-1] == "500"


def test_missing_or_damaged_results_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no_run: no such results file"):
    finetune_phases.rows(str(tmp_path / "no_run"))
  (tmp_path / "results.json").write_text('{"cells": [')
  with pytest.raises(results.ResultFileError, match="results.json is not a valid JSON"):
    seed_intervals.main([str(tmp_path)])


def test_report_without_a_rival_hypothesis_lists_only_the_values():
  lines = seed_intervals.report({"delta_cdf": {"net": {"3-norm": {"3-norm": [0.1, 0.2]}}}},
                                "pooled")
  assert len(lines) == 2 and "3-norm" in lines[1] and "fits better" not in " ".join(lines)
