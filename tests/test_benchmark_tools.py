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


def test_jaxpr_flops_counts_products_convolutions_and_scan_lengths():
  import jax
  import jax.numpy as jnp
  from benchmarks import protocol_cost
  a, b = jnp.ones((8, 5)), jnp.ones((5, 3))
  assert protocol_cost.jaxpr_flops(jax.make_jaxpr(jnp.matmul)(a, b)) == 2 * 8 * 5 * 3

  def rnn(h, w):  # 7 steps of a (4, 6) x (6, 6) product, plus one outside the loop
    h, _ = jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), h, None, length=7)
    return h @ w
  h, w = jnp.ones((4, 6)), jnp.ones((6, 6))
  assert protocol_cost.jaxpr_flops(jax.make_jaxpr(rnn)(h, w)) == 8 * 2 * 4 * 6 * 6
  # A 3x3 convolution, 2 -> 5 channels, 'SAME' on 10x10, batch 3: 2 * outputs * (2 * 3 * 3).
  x, k = jnp.ones((3, 10, 10, 2)), jnp.ones((3, 3, 2, 5))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert protocol_cost.jaxpr_flops(jax.make_jaxpr(conv)(x, k)) == 2 * 3 * 10 * 10 * 5 * 18
  # Its gradients (input and kernel) cost what the forward does, each.
  g = jax.make_jaxpr(jax.grad(lambda x, k: conv(x, k).sum(), argnums=(0, 1)))(x, k)
  assert protocol_cost.jaxpr_flops(g) == 3 * 2 * 3 * 10 * 10 * 5 * 18


def test_epoch_flops_of_the_mlp_by_hand():
  # 784-256-256-10: forward 2 x weights per image; backward the same for the weight gradients
  # and again for the input gradients of every layer but the first (pixels need none).
  from benchmarks import protocol_cost
  _, variables, data, task = protocol_cost._setup("mlp")
  weights = 784 * 256 + 256 * 256 + 256 * 10
  per_image = 2 * weights * 3 - 2 * 784 * 256
  assert protocol_cost.epoch_flops(task, variables, data) == len(data["label"]) * per_image


def test_protocol_cost_runs(capsys):
  from benchmarks import protocol_cost
  protocol_cost.main(["--archs", "rnn100", "--epochs", "1", "--rounds", "1"])
  out = capsys.readouterr().out
  assert "GFLOP/s" in out and "rnn100" in out and "10000" in out
  with pytest.raises(SystemExit, match="positive"):
    protocol_cost.main(["--rounds", "0"])
