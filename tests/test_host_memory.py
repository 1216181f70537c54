"""The host allocator (`config.train.host_malloc`): a command re-executed with jemalloc stops
paying page faults for a step's large buffers on every call; code that is not the process's
entry point is never replaced; a missing library or a failed preload never loops."""

import os
import subprocess
import sys

import pytest

from swahili100 import config_lib, host_memory

from conftest import REPO

# Each call makes two 40 MiB temporaries (glibc maps and unmaps blocks this large every time).
# The script is the process's entry point, so with `jemalloc` it re-executes itself once.
PROBE = """
import resource, statistics, sys
from swahili100 import host_memory
applied = host_memory.reexec(sys.argv[1], command_line=True)
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: (jnp.sin(x) @ w).sum() + (jnp.cos(x) @ w).sum())
x, w = jnp.ones((2560, 4096), jnp.float32), jnp.ones((4096, 8), jnp.float32)
f(x, w).block_until_ready()
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x, w).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, host_memory.active(), statistics.median(faults))
"""


def _probe(policy):
  env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
  out = subprocess.run([sys.executable, "-c", PROBE, policy], cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=True, env=env).stdout.split()
  return out[0], out[1], float(out[2])


@pytest.mark.skipif(host_memory.find_jemalloc() is None, reason="libjemalloc2 not installed")
def test_jemalloc_ends_the_page_faults_of_each_call():
  applied, active, system = _probe("system")
  assert applied == active == "system" and system > 10000   # 80 MiB mapped afresh: 20k pages
  applied, active, jemalloc = _probe("jemalloc")
  assert applied == active == "jemalloc" and jemalloc < system / 100, (jemalloc, system)


@pytest.fixture
def no_exec(monkeypatch):
  def refuse(*args):
    raise AssertionError(f"os.execve{args[:2]} would have replaced the test process")
  monkeypatch.setattr(os, "execve", refuse)


def test_code_that_is_not_the_entry_point_is_never_replaced(no_exec):
  assert host_memory.reexec("jemalloc", command_line=False) == host_memory.active()


def test_a_missing_library_trains_on_with_a_note(no_exec, monkeypatch, capsys):
  monkeypatch.setattr(host_memory, "find_jemalloc", lambda: None)
  monkeypatch.setattr(host_memory, "active", lambda: "system")   # (test processes may preload it)
  monkeypatch.delenv("SWAHILI100_HOST_MALLOC_TRIED", raising=False)
  assert host_memory.reexec("jemalloc", command_line=True) == "system (libjemalloc not found)"
  assert "apt-get install libjemalloc2" in capsys.readouterr().err


def test_a_preload_that_did_not_take_is_not_retried(no_exec, monkeypatch):
  monkeypatch.setenv("SWAHILI100_HOST_MALLOC_TRIED", "1")
  monkeypatch.setattr(host_memory, "active", lambda: "system")
  assert host_memory.reexec("jemalloc", command_line=True).startswith(
      "system (jemalloc was preloaded but is not mapped")


def test_a_bad_policy_is_refused_naming_the_field():
  with pytest.raises(config_lib.ConfigError, match=r"config.train.host_malloc='reuse': expected "
                     r"jemalloc \| system"):
    config_lib.apply_overrides(config_lib.load(str(REPO / "configs" / "debug.py")),
                               ["--config.train.host_malloc=reuse"])
  with pytest.raises(ValueError, match="host_malloc='reuse'"):
    host_memory.reexec("reuse", command_line=False)
