"""`mdgeom design`: Monte-Carlo intervals on every power, the few-repetitions warning, defaults in
--help, a pilot given as two columns of one file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from mdgeom import cli
from mdgeom.inference import design


@given(st.integers(1, 500), st.data())
def test_wilson_interval_matches_scipy(n, data):
  k = data.draw(st.integers(0, n))
  lo, hi = design.wilson_interval(k, n)
  ref = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
  assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
  assert lo <= k / n <= hi


def test_power_has_intervals_and_few_reps_warn():
  res = design.identification_power(["2-norm"], ["1.5-norm", "2-norm", "3-norm"],
                                    n_synapses=(300,), noise=(0.0,), n_rep=5)
  (lo, hi), = res.power_interval[0][0]
  p = res.power[0][0][0]
  assert lo <= p <= hi and hi - lo > 0.2  # 5 repetitions cannot pin a power down
  assert res.warnings and "only 5 simulated experiments" in res.warnings[0]
  assert "warning: only 5" in res.table()
  many = design.identification_power(["2-norm"], ["1.5-norm", "2-norm", "3-norm"],
                                     n_synapses=(300,), noise=(0.0,), n_rep=40)
  assert not many.warnings


def test_help_shows_defaults(capsys):
  with pytest.raises(SystemExit):
    cli.main(["design", "--help"])
  out = capsys.readouterr().out
  for flag, default in (("--reps", "50"), ("--noise", "0,0.05,0.1"), ("--target", "0.8"),
                        ("--n", "300,1000,3000,10000"), ("--seed", "0")):
    assert flag in out
    assert f"default: {default}" in " ".join(out.split()), flag


def test_pilot_from_two_columns_of_one_file(tmp_path, capsys):
  rng = np.random.default_rng(0)
  w0 = 0.1 * np.exp(rng.normal(0, 0.5, 400))
  w = w0 * np.exp(rng.normal(0.0, 0.1, 400))
  path = tmp_path / "pilot.csv"
  with open(path, "w", newline="") as f:
    wr = csv.writer(f)
    wr.writerow(["before", "after"])
    wr.writerows(zip(w0, w))
  args = ["design", "--true", "negative_entropy", "--candidates", "negative_entropy,2-norm",
          "--n", "200", "--noise", "0", "--reps", "4", "--no-figure"]
  assert cli.main(args + ["--pilot", str(path), "--before-column", "before", "--after-column",
                          "after"]) == 0
  assert "fitted to the pilot pair" in capsys.readouterr().out
  assert cli.main(args + ["--pilot", str(path)]) == 2
  assert "--before-column and --after-column" in capsys.readouterr().err


def test_empty_true_list_and_a_pilot_that_rules_out_negative_entropy(tmp_path, capsys):
  assert cli.main(["design", "--true", "", "--no-figure"]) == 2
  assert "--true '' names no potential" in capsys.readouterr().err
  rng = np.random.default_rng(1)
  w0 = 0.1 * np.exp(rng.normal(0, 0.5, 300))
  with pytest.raises(design.InferenceError, match="rules out negative_entropy: 300 of its 300"):
    design.identification_power(["negative_entropy", "2-norm"], ["negative_entropy", "2-norm"],
                                n_synapses=(100,), noise=(0.0,), n_rep=4, pilot=(w0, -w0))
  w = w0 * np.exp(rng.normal(0, 0.1, 300))
  w[:10] *= -1  # a few flips: a warning, not silence
  res = design.identification_power(["negative_entropy", "2-norm"], ["negative_entropy", "2-norm"],
                                    n_synapses=(100,), noise=(0.0,), n_rep=4, pilot=(w0, w))
  assert any("contradicts negative_entropy: 10 synapses" in x for x in res.warnings)


def test_command_line_keeps_compiled_programs_where_asked(tmp_path, monkeypatch):
  import jax

  from mdgeom import cli as top

  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("MDGEOM_CACHE_DIR", "none")
    top._compilation_cache()
    assert not jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("MDGEOM_CACHE_DIR", str(tmp_path / "cache"))
    top._compilation_cache()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
