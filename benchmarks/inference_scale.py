"""Time and peak memory of mdgeom.infer_geometry with its default settings against the number of
synapses (each size in a fresh process, so the peak resident memory is that run's own).

    python benchmarks/inference_scale.py [--n 10000,100000,1000000] [--noise-n 20000]

Default candidates (negative entropy, the p-norms 1.1-4 in steps of 0.05, seven hypentropies:
67 in all), 200 paired bootstrap resamples, the Gaussian null; then one run at --noise-n synapses
with the measurement-noise model (5%, 200 simulations per candidate). Goals from the issue on a
2-core CPU: 1,000,000 synapses under 60 s within 2 GB; 20,000 with the noise model under 30 s.
The time includes compilation (a first call in a fresh process), as a user's run does.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax, numpy as np
from mdgeom import potentials, synthetic
from mdgeom.inference import infer_geometry
n, noise = int(sys.argv[1]), float(sys.argv[2])
w0, w = synthetic.weight_pair(jax.random.PRNGKey(0), potentials.get("3-norm"), (n,), noise=noise)
w0, w = np.asarray(w0, np.float64), np.asarray(w, np.float64)
t0 = time.perf_counter()
res = infer_geometry(w0, w, noise=noise)
sec = time.perf_counter() - t0
print(json.dumps({"n": n, "noise": noise, "seconds": sec, "best": res.best,
                  "p_interval": res.p_interval, "bootstrap": res.settings["bootstrap"],
                  "candidates": len(res.ranking)}))
"""


def run(n: int, noise: float) -> dict:
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(noise)], capture_output=True,
                        text=True, check=True)
  peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # ru_maxrss of children is the largest child so far: sizes run in increasing order
  out["peak_mb"] = max(peak_kb, before) / 1024
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--n", default="10000,100000,1000000")
  ap.add_argument("--noise-n", type=int, default=20000)
  args = ap.parse_args()
  sizes = sorted(int(x) for x in args.n.split(","))
  print(f"{'synapses':>10} {'noise':>6} {'seconds':>8} {'peak MB':>8}  bootstrap  best (p set)")
  rows = []
  for n in sizes:
    r = run(n, 0.0)
    rows.append(r)
    print(f"{n:>10} {0:>6} {r['seconds']:>8.1f} {r['peak_mb']:>8.0f}  {r['bootstrap']:<9}  "
          f"{r['best']} {r['p_interval']}", flush=True)
  r = run(args.noise_n, 0.05)
  print(f"{args.noise_n:>10} {'5%':>6} {r['seconds']:>8.1f} {'':>8}  {r['bootstrap']:<9}  "
        f"{r['best']} {r['p_interval']}")
  big = [x for x in rows if x["n"] == 1_000_000]
  if big:
    print(f"1,000,000 synapses: {big[0]['seconds']:.1f} s (goal 60 s: {big[0]['seconds'] / 60:.2f}"
          f" of it), {big[0]['peak_mb']:.0f} MB (goal 2048 MB: {big[0]['peak_mb'] / 2048:.2f})")
  print(f"{args.noise_n} synapses with the noise model: {r['seconds']:.1f} s (goal 30 s: "
        f"{r['seconds'] / 30:.2f} of it)")


if __name__ == "__main__":
  main()
