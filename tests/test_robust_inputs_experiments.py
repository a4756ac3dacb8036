"""Property: every bad input to an experiment is refused before any work, naming the problem.

The experiments' run() functions (robustness, regimes, finetune, synaptic_data) get configs with
one bad value each: NaN and +-Inf, non-integral or non-numeric values for numbers, empty tuples,
values of the wrong kind, None for a required knob, unknown keys (typos of real ones, and random
names) and out-of-range values; and a file as the workdir. Each must raise the documented error
(`experiments._cli.ConfigError`, a ValueError, for the config; NotADirectoryError for the
workdir; FileNotFoundError for a missing data file) whose message names the key or the path,
and must leave the workdir uncreated. The `mdgeom.results` helpers get corrupt, truncated and
non-JSON cell files. The command line turns the same errors into one line, without a traceback
unless --verbose.
"""

import logging
import os
import re
import stat
import subprocess
import sys
import tomllib

import ml_collections
import pytest
from hypothesis import given
from hypothesis import strategies as st

from configs import finetune_default
from configs import linear_regression as lr_config
from configs import regimes as regimes_config
from configs import robustness as robustness_config
from configs import synaptic as synaptic_config
from experiments import _cli, finetune, linear_regression, regimes, robustness, synaptic_data
from mdgeom import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (getattr: the file also runs against older code, to count the cases that used to fail)
ConfigError = getattr(_cli, "ConfigError", ValueError)


def _finetune_config():
  c = finetune_default.get_config()
  c.seeds = (0,)
  c.progress = False
  return c


# name: (run, a valid config, paths whose empty tuple is allowed)
EXPERIMENTS = {
    "robustness": (robustness.run, lambda: robustness_config.get_config("small"), ()),
    "regimes": (regimes.run, lambda: regimes_config.get_config("small"), ()),
    "finetune": (finetune.run, _finetune_config, ()),
    "linear_regression": (linear_regression.run, lambda: lr_config.get_config("small"), ()),
    "synaptic_data": (synaptic_data.run, lambda: synaptic_config.get_config("quick"),
                      ("euclidean_constants",)),
}


def _leaves(tree, prefix=""):
  for k, v in tree.items():
    if isinstance(v, dict):
      if prefix + k != "model_kwargs":  # (free-form keyword arguments)
        yield from _leaves(v, f"{prefix}{k}.")
    else:
      yield prefix + k, v


def _bad_values(ref, path, allow_empty):
  """Values that can never be right for a knob whose default is `ref`."""
  if ref is None:  # optional: any value, but a number must be finite
    return [float("nan"), float("inf")]
  if isinstance(ref, bool):
    return ["yes", None]
  if isinstance(ref, int):
    return [float("nan"), float("inf"), 2.5, "3", None]
  if isinstance(ref, float):
    return [float("nan"), float("-inf"), "0.1", None]
  if isinstance(ref, str):
    return [3, None]
  if isinstance(ref, tuple):
    bad = ["not a tuple", None]
    if path not in allow_empty:
      bad.append(())
    if ref and all(isinstance(r, str) for r in ref):
      bad.append((1,))
    if ref and all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ref):
      bad += [(float("nan"),), ("a",)]
    return bad
  return []


def _cases():
  out = []
  for name, (_, make, allow_empty) in EXPERIMENTS.items():
    for path, ref in _leaves(make().to_dict()):
      for value in _bad_values(ref, path, allow_empty):
        out.append((name, path, value))
  return out


CASES = _cases()


def _with(name, path, value):
  """The experiment's valid config with `path` set to `value`, type checks off (a config built
  in Python or from a dict can hold anything)."""
  config = ml_collections.ConfigDict(EXPERIMENTS[name][1]().to_dict(), type_safe=False)
  node = config
  *parents, leaf = path.split(".")
  for p in parents:
    node = node[p]
  setattr(node, leaf, value)
  return config


def _refused(name, config, workdir, expected=ConfigError, names=()):
  run = EXPERIMENTS[name][0]
  with pytest.raises(expected) as e:
    run(config, str(workdir))
  message = str(e.value)
  for n in names:
    assert n in message, f"{n!r} not named in: {message}"
  assert not os.path.exists(workdir), "work was done before the config was checked"
  return message


@pytest.mark.parametrize("name,path,value", CASES,
                         ids=[f"{n}-{p}={v!r}" for n, p, v in CASES])
def test_every_bad_value_is_refused_before_any_work(name, path, value, tmp_path):
  _refused(name, _with(name, path, value), tmp_path / "run", names=[f"config.{path}"])


# Values of the right type that no run can use; (name, path, value, error, what the message names)
SEMANTIC = [
    ("robustness", "change_scale", 0.0, ConfigError, "change_scale"),
    ("robustness", "change_scale", -1.0, ConfigError, "change_scale"),
    ("robustness", "num_seeds", 1, ConfigError, "num_seeds"),
    ("robustness", "width", 0, ConfigError, "width"),
    ("robustness", "delta_cdf_method", "gird", ConfigError, "'gird'"),
    ("robustness", "initializations", ("uniform",), ConfigError, "'uniform'"),
    ("robustness", "true_potentials", ("0.5-norm",), ConfigError, "true_potentials"),
    ("robustness", "hypothesized_potentials", ("nope:nothing",), ConfigError,
     "hypothesized_potentials"),
    ("regimes", "dim", 3, ConfigError, "dim"),
    ("regimes", "init_scales", (1e-3, -1.0), ConfigError, "init_scales"),
    ("regimes", "data_exponents", (1.5,), ConfigError, "data_exponents"),
    ("regimes", "curve_points", 1, ConfigError, "curve_points"),
    ("regimes", "eager_below_cost", -1.0, ConfigError, "eager_below_cost"),
    ("regimes", "potentials", ("2-nrom",), ConfigError, "'2-nrom'"),
    ("finetune", "architectures", ("resnet19",), ConfigError, "'resnet19'"),
    ("finetune", "model_kwargs", {"banana": 1}, ConfigError, "model_kwargs"),
    ("finetune", "model_kwargs", "hidden=16", ConfigError, "model_kwargs"),
    ("finetune", "search.learning_rates", (0.1, 0.0), ConfigError, "search.learning_rates"),
    ("finetune", "search.epochs", 0, ConfigError, "search.epochs"),
    ("finetune", "search.seed", 0, ConfigError, "search.seed"),
    ("finetune", "train.precision", "float16", ConfigError, "'float16'"),
    ("finetune", "data.source", "cifar", ConfigError, "'cifar'"),
    ("finetune", "data.n_data", 100_000, ConfigError, "N = 100000"),
    ("finetune", "pretrain.learning_rate", 0.0, ConfigError, "pretrain.learning_rate"),
    ("finetune", "trained_potentials", ("1-norm",), ConfigError, "trained_potentials"),
    ("finetune", "data.data_dir", "/no/such/folder", None, None),  # (with image_folder below)
    ("synaptic_data", "fit_ks_alpha", 1.5, ConfigError, "fit_ks_alpha"),
    ("synaptic_data", "em_starts", 0, ConfigError, "em_starts"),
    ("synaptic_data", "euclidean_constants", (0.02, -1.0), ConfigError, "euclidean_constants"),
    ("synaptic_data", "data_path", "/no/such/table.csv", FileNotFoundError, "Zenodo record 3710459"),
]
SEMANTIC = [c for c in SEMANTIC if c[3] is not None]


@pytest.mark.parametrize("name,path,value,error,named", SEMANTIC,
                         ids=[f"{c[0]}-{c[1]}={c[2]!r}" for c in SEMANTIC])
def test_values_out_of_range_are_refused_before_any_work(name, path, value, error, named,
                                                         tmp_path):
  _refused(name, _with(name, path, value), tmp_path / "run", expected=error, names=[named])


def test_missing_image_folder_and_checkpoints_are_refused_before_any_work(tmp_path):
  config = _with("finetune", "data.source", "image_folder")
  config.data.data_dir = str(tmp_path / "no_images")
  _refused("finetune", config, tmp_path / "run", FileNotFoundError, ["no_images"])
  (tmp_path / "images").mkdir()
  config.data.data_dir = str(tmp_path / "images")
  config.architectures = ("mlp", "cnn_small")
  config.pretrain.checkpoint_dir = str(tmp_path / "weights")
  # every architecture's file is checked before the first one is finetuned
  _refused("finetune", config, tmp_path / "run", FileNotFoundError, ["mlp.pth"])


def _typo(draw, key):
  """A near miss of `key`: a letter dropped, doubled, swapped or appended."""
  i = draw(st.integers(0, len(key) - 1))
  op = draw(st.sampled_from(["drop", "double", "swap", "append"]))
  if op == "drop" and len(key) > 3:
    return key[:i] + key[i + 1:]
  if op == "double":
    return key[:i] + key[i] + key[i:]
  if op == "swap" and i + 1 < len(key) and key[i] != key[i + 1]:
    return key[:i] + key[i + 1] + key[i] + key[i + 2:]
  return key + "x"


@given(st.data(), st.sampled_from(sorted(EXPERIMENTS)))
def test_unknown_keys_are_refused_with_close_matches(tmp_path_factory, data, name):
  """A typo of a real key (at any depth) is refused naming it and the key it was meant to be;
  a random name is refused naming it and the known keys."""
  config = ml_collections.ConfigDict(EXPERIMENTS[name][1]().to_dict(), type_safe=False)
  paths = [p for p, _ in _leaves(config.to_dict())]
  path = data.draw(st.sampled_from(paths))
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  if data.draw(st.booleans()):
    wrong = _typo(data.draw, leaf)
    siblings = set(node.keys())
    if wrong in siblings:
      return
    meant = ".".join([*parents, leaf])
  else:
    wrong = data.draw(st.from_regex(r"[a-z][a-z0-9_]{2,12}", fullmatch=True))
    if wrong in set(node.keys()):
      return
    meant = None
  setattr(node, wrong, 1)
  bad = ".".join([*parents, wrong])
  workdir = tmp_path_factory.mktemp("unknown") / "run"
  message = _refused(name, config, workdir, names=[f"unknown config key {bad!r}"])
  if meant is not None:
    assert "did you mean" in message and repr(meant) in message, message


@given(st.data(), st.sampled_from(sorted(EXPERIMENTS)))
def test_non_finite_numbers_anywhere_are_refused(tmp_path_factory, data, name):
  config = EXPERIMENTS[name][1]().to_dict()
  numeric = [(p, v) for p, v in _leaves(config)
             if (isinstance(v, (int, float)) and not isinstance(v, bool)) or
             (isinstance(v, tuple) and v and all(isinstance(x, (int, float)) for x in v))]
  path, ref = data.draw(st.sampled_from(numeric))
  bad = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
  value = bad if not isinstance(ref, tuple) else (*ref[:-1], bad)
  workdir = tmp_path_factory.mktemp("nonfinite") / "run"
  message = _refused(name, _with(name, path, value), workdir, names=[f"config.{path}"])
  assert re.search(r"nan|inf|finite|integer", message), message


def _valid(name, tmp_path):
  config = EXPERIMENTS[name][1]()
  if name == "synaptic_data":  # (the check for the table comes first)
    table = tmp_path / "table.csv"
    table.write_text("spine_vol_um3\n0.1\n")
    config.data_path = str(table)
  return config


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_a_file_as_workdir_is_refused_before_any_work(name, tmp_path):
  run = EXPERIMENTS[name][0]
  config = _valid(name, tmp_path)
  afile = tmp_path / "results.txt"
  afile.write_text("not a folder")
  for workdir in (afile, afile / "run"):
    with pytest.raises(NotADirectoryError, match=re.escape(str(workdir))):
      run(config, str(workdir))
  assert afile.read_text() == "not a folder"


# ----------------------------------------------------------------------------------------------
# mdgeom.results: corrupt cells, unreadable files, shared-cluster file modes
# ----------------------------------------------------------------------------------------------

CELL = {"key": "k", "fingerprint": "f", "value": {"delta_cdf": [[0.1, 0.2]], "x": None}}


@given(st.one_of(
    st.integers(0, 60).map(lambda n: ("truncated", n)),
    st.binary(min_size=1, max_size=40).map(lambda b: ("bytes", b)),
    st.sampled_from([("text", "[1, 2]"), ("text", '"a string"'), ("text", "{}"),
                     ("text", '{"fingerprint": "f"}'), ("text", "null"), ("text", "")])))
def test_unreadable_cells_are_recomputed_with_a_warning_naming_them(tmp_path_factory, damage):
  workdir = str(tmp_path_factory.mktemp("cells"))
  store = results.CellStore(workdir, "config")
  store.put("k", CELL["value"])
  path = store.path("k")
  kind, arg = damage
  if kind == "truncated":
    with open(path, "rb") as f:
      text = f.read()
    if arg >= len(text) - 2:
      arg = len(text) // 2
    with open(path, "wb") as f:
      f.write(text[:arg])
  elif kind == "bytes":
    with open(path, "wb") as f:
      f.write(arg)
  else:
    with open(path, "w") as f:
      f.write(arg)
  logger = logging.getLogger("mdgeom.results")
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger.addHandler(handler)
  try:
    got = store.get("k")
    value, cached = store.get_or_compute("k", lambda: {"recomputed": True})
  finally:
    logger.removeHandler(handler)
  assert got is None, f"a damaged cell was read as {got!r}"
  assert (value, cached) == ({"recomputed": True}, False)
  assert store.get("k") == {"recomputed": True}  # rewritten whole
  warned = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
  assert warned and all(path in w for w in warned), warned


@given(st.integers(0, 30), st.binary(max_size=20))
def test_read_json_names_the_file(tmp_path_factory, cut, junk):
  path = str(tmp_path_factory.mktemp("json") / "results.json")
  results.write_json_atomic(path, {"config": {"a": 1}, "values": [1.5, None]})
  with open(path, "rb") as f:
    text = f.read()
  with open(path, "wb") as f:
    f.write(text[:min(cut, len(text) - 2)] + junk)
  try:
    results.read_json(path)
  except results.ResultFileError as e:
    assert path in str(e) and isinstance(e, ValueError)
    assert e.__cause__ is not None  # the parser's own error, for --verbose


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_result_files_get_the_umask_mode_not_0600(tmp_path, umask):
  old = os.umask(umask)
  try:
    path = tmp_path / "results.json"
    results.write_json_atomic(str(path), {"a": 1})
    store = results.CellStore(str(tmp_path), "c")
    store.put("k", 1)
    for p in (str(path), store.path("k")):
      assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, oct(os.stat(p).st_mode)
  finally:
    os.umask(old)


def test_workdir_helpers_refuse_files_and_non_paths(tmp_path):
  afile = tmp_path / "f"
  afile.write_text("x")
  for bad in (afile, afile / "sub" / "run"):
    with pytest.raises(NotADirectoryError, match=re.escape(str(bad))):
      results.prepare_workdir(str(bad))
  with pytest.raises(NotADirectoryError, match=re.escape(str(afile))):
    results.CellStore(str(afile), "c")
  for bad in (None, "", 3, ["runs"]):
    with pytest.raises(TypeError, match="workdir"):
      results.prepare_workdir(bad)
  made = results.prepare_workdir(str(tmp_path / "a" / "b"))
  assert os.path.isdir(made)


# ----------------------------------------------------------------------------------------------
# The command line: one line per error, --verbose for the traceback, --help lists the flags
# ----------------------------------------------------------------------------------------------

def _cli_run(module, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def _one_line_error(out, *named):
  assert out.returncode != 0, out.stdout
  assert "Traceback" not in out.stderr, out.stderr
  lines = [line for line in out.stderr.splitlines() if "error:" in line]
  assert len(lines) == 1, out.stderr
  for n in named:
    assert n in lines[0], lines[0]
  return lines[0]


CLI_CASES = [
    ("finetune", ["--config=configs/resnet.py:banana"],
     ["unknown variant 'banana' of configs/resnet.py"]),
    ("finetune", ["--config=configs/shufflenet.py:banana"], ["configs/shufflenet.py"]),
    ("finetune", ["--config.banana_knob=3"], ["unknown config key 'banana_knob'"]),
    ("finetune", ["--config.search.epoch=3"], ["'search.epoch'", "did you mean 'search.epochs'"]),
    ("robustness", ["--config=configs/robustness.py:small", "--config.num_seed=3"],
     ["'num_seed'", "did you mean 'num_seeds'"]),
    ("robustness", ["--config=configs/no_such_config.py"], ["no_such_config.py"]),
    ("robustness", ["--config.num_seeds=abc"], ["--config.num_seeds=abc"]),
    ("synaptic_data", ["--config.data_path=/no/such/table.csv"],
     ["/no/such/table.csv", "Zenodo record 3710459", "--config.data_path"]),
]


@pytest.mark.parametrize("module,args,named", CLI_CASES, ids=[" ".join(c[1]) for c in CLI_CASES])
def test_command_line_errors_are_one_line(module, args, named, tmp_path):
  out = _cli_run(module, *args, f"--workdir={tmp_path / 'run'}")
  _one_line_error(out, *named)
  assert not os.path.exists(tmp_path / "run")


def test_command_line_nan_knob_and_verbose(tmp_path):
  args = ["--config=configs/robustness.py:small", "--config.change_scale=nan",
          f"--workdir={tmp_path / 'run'}"]
  _one_line_error(_cli_run("robustness", *args), "config.change_scale", "nan")
  verbose = _cli_run("robustness", *args, "--verbose")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr
  assert "ConfigError" in verbose.stderr and not os.path.exists(tmp_path / "run")


def test_help_lists_config_and_workdir():
  out = _cli_run("finetune", "--help")
  text = out.stdout + out.stderr
  for flag in ("--config:", "--workdir:", "--[no]verbose:"):
    assert flag in text, text[-2000:]
  assert "configs/resnet.py" in text and "runs/finetune" in text  # the defaults


# ----------------------------------------------------------------------------------------------
# A newcomer's path: the README's imports and filter, the licence, the extras
# ----------------------------------------------------------------------------------------------

def test_torch_import_is_there_after_import_mdgeom():
  code = "import mdgeom; print(mdgeom.models.torch_import.load_pretrained.__name__)"
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"), timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "load_pretrained", out.stderr


def test_readme_leaf_filter_keeps_exactly_the_analysed_weights_of_resnet18():
  import jax
  import mdgeom
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  specs = re.findall(r"`(exclude_paths\([^`]*\))`", readme)
  assert specs, "the README shows a leaf filter"
  model = mdgeom.models.get("resnet18")
  shapes = jax.eval_shape(model.init, jax.random.key(0))["params"]
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(shapes)]
  analysed = [p for p in paths if model.analysed(p)]
  for spec in specs:
    keep = eval(f"mdgeom.analysis.{spec}")  # noqa: S307 (the README's own example)
    kept = [p for p in paths if keep(p, None)]
    assert kept == analysed, (spec, [p for p in kept if p not in analysed][:5])
  assert "where=model.analysed" in readme


def test_license_and_reference_extra():
  with open(os.path.join(ROOT, "LICENSE")) as f:
    text = f.read()
  assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  assert project["license"] == {"text": "Apache-2.0"}
  # The PyPI package named `cornet` is not dicarlolab's CORnet: the tests use the repository's
  # own torch transcription when dicarlolab's is not installed.
  names = [re.split(r"[<>=!~ \[]", r)[0].lower() for r in project["optional-dependencies"]["reference"]]
  assert "cornet" not in names


@pytest.mark.parametrize("args,named", [
    (["--workdir="], ["--workdir is empty"]),
    (["--local_device_ids=7"], ["--local_device_ids", "--distributed"]),
])
def test_flags_that_would_fall_back_quietly_are_errors(args, named, tmp_path):
  out = _cli_run("robustness", "--config=configs/robustness.py:small", *args)
  _one_line_error(out, *named)
