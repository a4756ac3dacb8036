"""Time and peak memory of mdgeom.infer_geometry (the measurement model, its defaults) against
the number of synapses, each size in a fresh process (so the peak resident memory is that run's
own, and the time includes compilation, as a user's first run does).

    python benchmarks/inference_scale.py [--n 10000,1000000] [--noise 0.05]

Data: 3-norm pairs of the paper's robustness protocol (log-normal w0) with --noise multiplicative
measurement noise, analysed with noise="auto", the gain estimated, the default candidates (the
p-norm family with p = 1 as negative entropy, hypentropy). Above `max_synapses` (20,000) the
likelihood uses a random subset of that size. Goals from the issue on a 2-core CPU: 10,000
synapses with noise="auto" within 30 s; 1,000,000 with the defaults within 60 s and 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

CHILD = r"""
import json, sys, time
import jax, numpy as np
from mdgeom import potentials, synthetic
from mdgeom.inference import infer_geometry
n, noise = int(sys.argv[1]), float(sys.argv[2])
k0, k1, k2 = jax.random.split(jax.random.PRNGKey(0), 3)
w0, w = synthetic.weight_pair(k0, potentials.get("3-norm"), (n,), init="lognormal")
w0 = np.asarray(synthetic.measurement_noise(k1, w0, noise), np.float64)
w = np.asarray(synthetic.measurement_noise(k2, w, noise), np.float64)
t0 = time.perf_counter()
res = infer_geometry(w0, w)
sec = time.perf_counter() - t0
print(json.dumps({"n": n, "noise": noise, "seconds": sec, "best": res.best,
                  "p_interval": res.p_interval, "noise_estimate": res.nuisances.get("noise")}))
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
  ap.add_argument("--n", default="10000,1000000")
  ap.add_argument("--noise", type=float, default=0.05)
  args = ap.parse_args()
  sizes = sorted(int(x) for x in args.n.split(","))
  print(f"{'synapses':>10} {'seconds':>8} {'peak MB':>8}  best, p interval, noise estimate")
  for n in sizes:
    r = run(n, args.noise)
    print(f"{n:>10} {r['seconds']:>8.1f} {r['peak_mb']:>8.0f}  {r['best']}, "
          f"[{r['p_interval'][0]:.2f}, {r['p_interval'][1]:.2f}], "
          f"{100 * r['noise_estimate']:.1f}%", flush=True)
    goal = 30 if n <= 10_000 else 60
    print(f"{'':>10} goal {goal} s: {r['seconds'] / goal:.2f} of it"
          + (f"; 2048 MB: {r['peak_mb'] / 2048:.2f} of it" if n > 10_000 else ""), flush=True)


if __name__ == "__main__":
  main()
