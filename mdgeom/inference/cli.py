"""`mdgeom infer` and `mdgeom design`: thin command lines over `infer_geometry` and
`identification_power`.

    mdgeom infer before.csv after.csv --column volume --noise 0.1 --json out.json
    mdgeom infer W0.npy W.npy                         # a 2-D matrix: per-unit scales by default
    mdgeom infer syn.csv syn.csv --before-column v0 --after-column v1 --units pre_id,post_id
    mdgeom design --n 300,1000,3000,10000 --noise 0,0.05,0.1 --figure power.png

Every expected failure (missing or unreadable file, bad value, unknown potential) is one line on
stderr naming the file or value and what to do, with exit status 2; --verbose shows the traceback.
Output paths are checked before the analysis runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence

from mdgeom import results as results_lib
from mdgeom.inference.io import InferenceError


def _floats(text: str, what: str) -> list[float]:
  out = []
  for part in text.split(","):
    part = part.strip()
    if not part:
      continue
    try:
      out.append(float(part))
    except ValueError:
      raise InferenceError(f"{what}: {part!r} is not a number (give comma-separated numbers, "
                           "e.g. 0.01,0.1).") from None
  if not out:
    raise InferenceError(f"{what}: no numbers given.")
  return out


def _ints(text: str, what: str) -> list[int]:
  vals = _floats(text, what)
  if any(v != int(v) or v < 1 for v in vals):
    raise InferenceError(f"{what}: give positive whole numbers, got {text!r}.")
  return [int(v) for v in vals]


def _check_output(path: str | None, what: str) -> None:
  """Fails before the analysis when an output cannot be written."""
  if not path:
    return
  if os.path.isdir(path):
    raise InferenceError(f"{what} {path} is a directory: give a file name.")
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise InferenceError(f"{what} {path}: {folder} is a file, not a folder.")
  if os.path.isdir(folder) and not os.access(folder, os.W_OK):
    raise InferenceError(f"{what} {path}: cannot write to {folder}.")


INFER_EPILOG = """\
the table (method model, the default), ranked by log-likelihood:
  log-lik   maximised log-likelihood of AFTER given BEFORE, every nuisance fitted
  vs best   difference from the best row
  LR        likelihood ratio against the best fit of the family, divided by kappa (the
            sandwich factor: how much more the data vary than the model says)
  p-value   chance of an LR at least this large were this geometry the truth
  status    best / indistinguishable (in the confidence set) / worse / ruled out (sign flips or
            zeros under negative entropy) / estimate (the family's best point)
then: p and its interval (p = 1 is negative entropy), the nuisances (gain with a test of g = 1,
noise, silent fraction, drift), the best model's goodness of fit against its own simulations,
the verdict and notes. docs/inference.md has the model and every field.
method delta_cdf: the Delta-CDF of each candidate's dual change, the paper's statistic
(Delta-CDF, bootstrap interval, score, p(no worse), fit p; docs/inference.md).
"""


def infer_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog="mdgeom infer", formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=INFER_EPILOG,
      description="Which geometry of plasticity explains weights measured BEFORE and AFTER "
                  "learning? Fits each candidate's measurement model (a Gaussian change in its "
                  "dual space, with drift, per-unit scales, a gain between the sessions, "
                  "measurement noise and silent synapses) and says what the data support.")
  ap.add_argument("before", metavar="BEFORE", help="weights before learning (.csv, .npy, .npz; "
                  "a 2-D NPY/NPZ array is a weight matrix [post, pre])")
  ap.add_argument("after", metavar="AFTER", help="weights after learning (the same synapses, in "
                  "the same order; may be the same file as BEFORE with --before-column and "
                  "--after-column)")
  ap.add_argument("--column", help="CSV column (name or 0-based index) or NPZ array, for both "
                  "files (two different files)")
  ap.add_argument("--before-column", help="column/array of BEFORE (overrides --column)")
  ap.add_argument("--after-column", help="column/array of AFTER (overrides --column)")
  ap.add_argument("--id-column", help="a synapse id column in both CSVs: pairs are matched by "
                  "id instead of by row")
  ap.add_argument("--repeat", metavar="REPEAT", help="a second BEFORE measurement of the same "
                  "synapses (file; with --repeat-column for a column of BEFORE's file): measures "
                  "the noise directly")
  ap.add_argument("--repeat-column", help="column/array of the repeated BEFORE measurement")
  ap.add_argument("--units", metavar="PRE,POST",
                  help="two CSV columns of BEFORE with each synapse's presynaptic and "
                  "postsynaptic unit (neuron ids): enables per-unit scales for a synapse table")
  ap.add_argument("--candidates", help="comma-separated potentials: '2-norm', 'negative_entropy', "
                  "'hypentropy:0.1', 'mypackage.module:function' (default: the p-norms as one "
                  "family, p = 1 being negative entropy, hypentropy, registered potentials)")
  ap.add_argument("--method", default="model", choices=["model", "delta_cdf"],
                  help="model: the measurement model; delta_cdf: the paper's statistic "
                  "(default: %(default)s)")
  ap.add_argument("--noise", default="auto", help="relative SD of multiplicative measurement "
                  "noise on both measurements, e.g. 0.1 for 10%%, or 'auto' to estimate it "
                  "(default: %(default)s; 0 for exact weights such as a trained network's)")
  ap.add_argument("--gain", default="auto", help="gain between the sessions (AFTER / BEFORE for "
                  "an unchanged synapse), or 'auto' to estimate and test it (default: "
                  "%(default)s)")
  ap.add_argument("--no-silent", action="store_true", help="no fraction of silent synapses in "
                  "the noise model")
  ap.add_argument("--resolution", default="0.05", help="the p interval is widened by this on "
                  "each side: the estimate's bias on trained networks (default: %(default)s)")
  ap.add_argument("--max-synapses", default="20000", help="the likelihood uses at most this many "
                  "synapses, drawn at random; 'all' for every one (default: %(default)s)")
  ap.add_argument("--p-min", default="1.1", help="delta_cdf: smallest p of the scan "
                  "(default: %(default)s)")
  ap.add_argument("--p-max", default="4", help="largest p of the scan; grows to 8 when the best "
                  "p sits at the end (default: %(default)s)")
  ap.add_argument("--p-step", default="0.05", help="delta_cdf: step of the p scan "
                  "(default: %(default)s)")
  ap.add_argument("--no-grow-p", action="store_true", help="delta_cdf: keep the p scan where "
                  "it is")
  ap.add_argument("--betas", help="delta_cdf: comma-separated hypentropy betas (default: median "
                  "|w0| x 10^-2 .. 10^1)")
  ap.add_argument("--no-center", action="store_true", help="delta_cdf: do not centre the change "
                  "(the paper's statistic; a net drift then counts as non-Gaussianity)")
  ap.add_argument("--keep-unchanged", action="store_true", help="delta_cdf: keep weights with "
                  "AFTER == BEFORE as zero changes (default: count them and leave them out)")
  ap.add_argument("--scales", default="auto", choices=["auto", "units", "pooled"],
                  help="per-unit scales (auto: on for 2-D weights and --units; pooled: one "
                  "scale) (default: %(default)s)")
  ap.add_argument("--level", default="0.05", help="1 - coverage of the intervals and confidence "
                  "sets (default: %(default)s)")
  ap.add_argument("--ci-level", default="0.95", help="delta_cdf: coverage of the bootstrap "
                  "intervals (default: %(default)s)")
  ap.add_argument("--n-boot", default="200", help="delta_cdf: paired bootstrap resamples "
                  "(default: %(default)s)")
  ap.add_argument("--n-null", default="1000", help="delta_cdf: Gaussian-null draws "
                  "(default: %(default)s)")
  ap.add_argument("--n-sim", default="200", help="delta_cdf: simulations per candidate "
                  "(default: %(default)s)")
  ap.add_argument("--seed", default="0", help="seed of every random draw (default: %(default)s)")
  ap.add_argument("--json", metavar="PATH", help="write the result as JSON")
  ap.add_argument("--figure", metavar="PATH", default="mdgeom_infer.png",
                  help="figure (default: %(default)s)")
  ap.add_argument("--no-figure", action="store_true")
  ap.add_argument("--all", action="store_true", help="print every candidate (default: top 15)")
  ap.add_argument("--verbose", action="store_true", help="show tracebacks of errors")
  return ap


def _number(text, what, kind=float, lo=None, hi=None):
  try:
    v = kind(text)
  except (TypeError, ValueError):
    raise InferenceError(f"{what}: {text!r} is not {'an integer' if kind is int else 'a number'}."
                         ) from None
  if kind is float and not (v == v and abs(v) != float("inf")):
    raise InferenceError(f"{what}: {text!r} is not a finite number.")
  if lo is not None and v < lo or hi is not None and v > hi:
    raise InferenceError(f"{what} = {text}: must be between {lo} and {hi}.")
  return v


def infer_main(argv: Sequence[str] | None = None) -> int:
  """`mdgeom infer BEFORE AFTER ...`; returns the exit status (0 ok, 2 bad input)."""
  args = infer_parser().parse_args(argv)
  start = time.time()
  try:
    from mdgeom.inference import candidates as cands
    from mdgeom.inference import figures, geometry, io

    p_min = _number(args.p_min, "--p-min")
    p_max = _number(args.p_max, "--p-max")
    p_step = _number(args.p_step, "--p-step")
    if args.method == "delta_cdf":
      cands.pnorm_grid(p_min, p_max, p_step)  # validates the scan before any work
    noise = "auto" if args.noise.strip().lower() == "auto" else _number(args.noise, "--noise",
                                                                         lo=0, hi=1.99)
    gain = "auto" if args.gain.strip().lower() == "auto" else _number(args.gain, "--gain",
                                                                      lo=1e-6, hi=1e6)
    resolution = _number(args.resolution, "--resolution", lo=0, hi=0.99)
    max_syn = None if args.max_synapses.strip().lower() == "all" else _number(
        args.max_synapses, "--max-synapses", int, lo=100, hi=10 ** 9)
    level = _number(args.level, "--level", lo=1e-6, hi=0.5)
    ci_level = _number(args.ci_level, "--ci-level", lo=0.5, hi=0.999999)
    n_boot = _number(args.n_boot, "--n-boot", int, lo=20, hi=100000)
    n_null = _number(args.n_null, "--n-null", int, lo=20, hi=10 ** 7)
    n_sim = _number(args.n_sim, "--n-sim", int, lo=20, hi=100000)
    seed = _number(args.seed, "--seed", int, lo=0, hi=2 ** 32 - 1)
    betas = _floats(args.betas, "--betas") if args.betas else None
    if betas and any(not b > 0 for b in betas):
      raise InferenceError(f"--betas: every beta must be > 0, got {args.betas!r}.")
    if args.method == "delta_cdf" and noise == "auto":
      noise = 0.0  # the Delta-CDF method takes a known noise level (0 unless given)
    _check_output(args.json, "--json")
    if not args.no_figure:
      _check_output(args.figure, "--figure")
    units = None
    if args.units:
      units = tuple(c.strip() for c in args.units.split(","))
      if len(units) != 2 or not all(units):
        raise InferenceError(f"--units {args.units!r}: give two column names, PRE,POST.")
    if args.repeat_column and not args.repeat:
      args.repeat = args.before  # a column of BEFORE's own file
    pair = io.read_pair(args.before, args.after, args.before_column or args.column,
                        args.after_column or args.column, id_column=args.id_column,
                        repeat=args.repeat, repeat_column=args.repeat_column, units=units)
    io.check_pair(pair.w0, pair.w)
    candidates = None
    if args.candidates:
      candidates = cands.resolve([c.strip() for c in args.candidates.split(",") if c.strip()])
    kw = dict(method=args.method, noise=noise, scales=args.scales, units=pair.units, level=level,
              seed=seed, p_max=p_max)
    if args.method == "model":
      kw.update(gain=gain, repeat=pair.repeat, silent=not args.no_silent,
                resolution=resolution, max_synapses=max_syn)
    else:
      kw.update(center=not args.no_center,
                unchanged="keep" if args.keep_unchanged else "exclude", ci_level=ci_level,
                n_boot=n_boot, n_null=n_null, n_sim=n_sim, p_min=p_min, p_step=p_step,
                betas=betas, grow_p=not args.no_grow_p)
    res = geometry.infer_geometry(pair.w0, pair.w, candidates, **kw)
  except InferenceError as e:
    if args.verbose:
      traceback.print_exc()
    print(f"mdgeom infer: error: {e}", file=sys.stderr)
    return 2
  if pair.n_missing or pair.n_unmatched:
    print(f"{pair.n_missing} synapses with a missing value and {pair.n_unmatched} found in only "
          "one file were left out of every file.")
  print(res.table(None if args.all else 15))
  if args.json:
    results_lib.write_json_atomic(args.json, {"command": ["mdgeom", "infer", *(
        argv if argv is not None else sys.argv[2:])], **res.to_dict()})
    print(f"wrote {args.json}")
  if not args.no_figure:
    print(f"wrote {figures.plot_inference(res, args.figure)}")
  print(f"({time.time() - start:.1f} s)")
  return 0


def design_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog="mdgeom design",
      description="How many synapses must an experiment measure to identify the geometry of "
                  "plasticity? Simulates the experiment and prints the probability of "
                  "identifying each true geometry (and the confusion matrix) against the number "
                  "of synapses and the measurement noise.")
  ap.add_argument("--true", default="negative_entropy,2-norm,3-norm",
                  help="geometries to tell apart (default: %(default)s)")
  ap.add_argument("--candidates", default="negative_entropy,1.5-norm,2-norm,2.5-norm,3-norm",
                  help="hypotheses the analysis ranks (default: %(default)s)")
  ap.add_argument("--n", default="300,1000,3000,10000",
                  help="numbers of synapses (default: %(default)s)")
  ap.add_argument("--noise", default="0,0.05,0.1",
                  help="relative SDs of the measurement noise (default: %(default)s)")
  ap.add_argument("--change", default="0.1", help="change size in the units of the paper's "
                  "robustness protocol: SD of the dual change = change x |f'(w0-scale)| "
                  "(default: %(default)s)")
  ap.add_argument("--init", default="gaussian", choices=["gaussian", "lognormal"],
                  help="initial weights (default: %(default)s)")
  ap.add_argument("--w0-scale", default="0.1",
                  help="scale of the initial weights (default: %(default)s)")
  ap.add_argument("--drift", default="0",
                  help="net drift of the change, in its SDs (default: %(default)s)")
  ap.add_argument("--silent", default="0",
                  help="fraction of synapses that do not change (default: %(default)s)")
  ap.add_argument("--pilot", nargs="+", metavar="FILE",
                  help="a pilot pair, BEFORE AFTER (two files), or one CSV/NPZ with "
                       "--before-column and --after-column: initial weights and change size "
                       "are taken from it")
  ap.add_argument("--column", help="CSV column or NPZ array of the two pilot files")
  ap.add_argument("--before-column", help="pilot column/array of BEFORE (overrides --column)")
  ap.add_argument("--after-column", help="pilot column/array of AFTER (overrides --column)")
  ap.add_argument("--reps", default="50", help="simulated experiments per cell; each power is "
                  "printed with its 95%% Monte-Carlo interval (default: %(default)s)")
  ap.add_argument("--n-sim", default="100",
                  help="simulations per candidate calibration (default: %(default)s)")
  ap.add_argument("--target", default="0.8", help="power asked for (default: %(default)s)")
  ap.add_argument("--seed", default="0", help="seed of every random draw (default: %(default)s)")
  ap.add_argument("--json", metavar="PATH")
  ap.add_argument("--figure", metavar="PATH", default="mdgeom_design.png")
  ap.add_argument("--no-figure", action="store_true")
  ap.add_argument("--verbose", action="store_true")
  return ap


def design_main(argv: Sequence[str] | None = None) -> int:
  args = design_parser().parse_args(argv)
  start = time.time()
  try:
    from mdgeom.inference import design, figures, io

    ns = _ints(args.n, "--n")
    noise = _floats(args.noise, "--noise")
    kwargs = dict(
        n_synapses=ns, noise=noise, change=_number(args.change, "--change", lo=1e-9, hi=1e3),
        init=args.init, w0_scale=_number(args.w0_scale, "--w0-scale", lo=1e-12, hi=1e12),
        drift=_number(args.drift, "--drift", lo=-100, hi=100),
        silent=_number(args.silent, "--silent", lo=0, hi=0.99),
        n_rep=_number(args.reps, "--reps", int, lo=2, hi=100000),
        n_sim=_number(args.n_sim, "--n-sim", int, lo=20, hi=100000),
        target=_number(args.target, "--target", lo=0.01, hi=0.99),
        seed=_number(args.seed, "--seed", int, lo=0, hi=2 ** 32 - 1), progress=True)
    _check_output(args.json, "--json")
    if not args.no_figure:
      _check_output(args.figure, "--figure")
    if args.pilot:
      if len(args.pilot) > 2:
        raise InferenceError(f"--pilot takes BEFORE AFTER (two files) or one file with "
                             f"--before-column/--after-column, not {len(args.pilot)} files.")
      files = args.pilot if len(args.pilot) == 2 else args.pilot * 2
      if len(args.pilot) == 1 and not (args.before_column and args.after_column):
        raise InferenceError("--pilot with one file needs --before-column and --after-column "
                             "(the two columns of that file).")
      pair = io.read_pair(files[0], files[1], args.before_column or args.column,
                          args.after_column or args.column)
      kwargs["pilot"] = (pair.w0, pair.w)
    trues = [c.strip() for c in args.true.split(",") if c.strip()]
    cands = [c.strip() for c in args.candidates.split(",") if c.strip()]
    for flag, value, got in (("--true", args.true, trues), ("--candidates", args.candidates,
                                                             cands)):
      if not got:
        raise InferenceError(f"{flag} {value!r} names no potential: give a comma-separated "
                             "list, e.g. negative_entropy,2-norm,3-norm.")
    res = design.identification_power(trues, cands, **kwargs)
  except InferenceError as e:
    if args.verbose:
      traceback.print_exc()
    print(f"mdgeom design: error: {e}", file=sys.stderr)
    return 2
  print(res.table())
  if args.json:
    results_lib.write_json_atomic(args.json, res.to_dict())
    print(f"wrote {args.json}")
  if not args.no_figure:
    print(f"wrote {figures.plot_design(res, args.figure)}")
  print(f"({time.time() - start:.1f} s)")
  return 0
