"""Shared test settings: hypothesis profiles, a float64 switch, no GPU, no network."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# the command line's persistent compilation cache stays off in tests (nothing written to ~)
os.environ.setdefault("MDGEOM_CACHE_DIR", "none")

import jax
import pytest
from hypothesis import HealthCheck, settings

# The default run is derandomized: the same examples every run, so a CI result is reproducible
# (a random search once found a float32-subnormal sample the test had not meant to allow).
# HYPOTHESIS_PROFILE=thorough explores: 500 fresh random examples per test.
settings.register_profile(
    "default", max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile(
    "thorough", max_examples=500, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
  """Runs a test in float32 and, with 64-bit JAX enabled, in float64."""
  if request.param == "float64":
    with jax.enable_x64(True):
      yield request.param
  else:
    yield request.param


