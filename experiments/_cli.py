"""The command line shared by the experiments: --config (an ml_collections config file, with
`:variant` and `--config.key=value` overrides) and --workdir; main() only parses and calls run().

Flags are defined when a script runs, not when its module is imported, so tests and notebooks
can import several experiments in one process.
"""

from __future__ import annotations

import os
from typing import Callable

from absl import app, flags
from ml_collections import config_flags


def main(run: Callable, summary: Callable, default_config: str, default_workdir: str) -> None:
  config = config_flags.DEFINE_config_file("config", default_config, "Experiment config file.")
  workdir = flags.DEFINE_string("workdir", default_workdir, "Where results are written.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    res = run(config.value, workdir.value)
    print(summary(res))
    print(f"results: {os.path.join(workdir.value, 'results.json')}")

  app.run(_main)
