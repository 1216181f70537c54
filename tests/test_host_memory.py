"""The host allocator policy (`config.train.host_malloc`): with `reuse` a jitted function's
large temporaries stop costing page faults on every call; a bad value is refused by name."""

import subprocess
import sys

import pytest

from swahili100 import config_lib, host_memory

from conftest import REPO

# Each call makes two 40 MiB temporaries (above glibc's largest mmap threshold, 32 MiB). The
# policy is set in a fresh process, before XLA's threads allocate, as engine.run sets it.
PROBE = """
import resource, statistics, sys
from swahili100 import host_memory
applied = host_memory.configure(sys.argv[1])
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: (jnp.sin(x) @ w).sum() + (jnp.cos(x) @ w).sum())
x, w = jnp.ones((2560, 4096), jnp.float32), jnp.ones((4096, 8), jnp.float32)
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x, w).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, statistics.median(faults))   # the heap still grows on an odd call under reuse
"""


def _median_faults_per_call(policy):
  out = subprocess.run([sys.executable, "-c", PROBE, policy], cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=True).stdout.split()
  return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_reuse_ends_the_page_faults_of_each_call():
  applied, system = _median_faults_per_call("system")
  assert applied == "system" and system > 10000   # 80 MiB mapped afresh per call: 20k pages
  applied, reuse = _median_faults_per_call("reuse")
  assert applied == "reuse" and reuse < system / 100, (reuse, system)


def test_a_bad_policy_is_refused_naming_the_field():
  with pytest.raises(config_lib.ConfigError, match=r"config.train.host_malloc='keep': expected "
                     r"reuse \| system"):
    config_lib.apply_overrides(config_lib.load(str(REPO / "configs" / "debug.py")),
                               ["--config.train.host_malloc=keep"])
  with pytest.raises(ValueError, match="host_malloc='keep'"):
    host_memory.configure("keep")
