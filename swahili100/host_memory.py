"""The host's memory allocator for training processes (`config.train.host_malloc`).

XLA:CPU allocates a step's buffers afresh every step, and glibc hands large blocks back to the
kernel on free (`munmap`), so the kernel faults in and zeroes every page again on the next
step: ~25,000 page faults and ~40 ms of system time in an 89 ms debug step on 2 cores, 46 s of
system time in 84 steps of small.py. jemalloc told never to purge (`dirty_decay_ms:-1`) keeps
freed pages for the next step: the debug step 89 → 65 ms, small.py 2.37k → 2.88k tokens/s
(docs/RESEARCH.md "The host allocator"). What a step computes is unchanged; resident memory
stays at its peak.

An allocator is chosen when a process starts (`LD_PRELOAD`), so `train` and `align` re-execute
their own command line once with jemalloc preloaded, as Intel's `ipexrun` launcher does for
PyTorch. Without libjemalloc (`apt-get install libjemalloc2`) the run goes on with glibc and says
so.
"""

import os
import sys

POLICIES = ("jemalloc", "system")
DEFAULT = "jemalloc"   # also for a config.json written before the field existed
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"   # freed pages stay for the next step
_TRIED = "SWAHILI100_HOST_MALLOC_TRIED"   # set in the re-executed process: never loop
_SEARCH = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
           "/usr/local/lib")


def find_jemalloc() -> str | None:
  """The path of libjemalloc's shared library, or None."""
  for folder in _SEARCH:
    for name in ("libjemalloc.so.2", "libjemalloc.so"):
      path = os.path.join(folder, name)
      if os.path.exists(path):
        return path
  return None


def active() -> str:
  """The allocator this process runs with: "jemalloc" when libjemalloc is mapped, else "system"."""
  try:
    with open("/proc/self/maps") as f:
      return "jemalloc" if "libjemalloc" in f.read() else "system"
  except OSError:
    return "system"


def policy(train_cfg) -> str:
  """`config.train.host_malloc` (the default where an older config.json lacks it)."""
  return train_cfg.get("host_malloc", DEFAULT)


def check(policy: str) -> None:
  """The one rule for the field's values (`config_lib.validate` reports it as a ConfigError)."""
  if policy not in POLICIES:
    raise ValueError(f"config.train.host_malloc={policy!r}: expected {' | '.join(POLICIES)}")


def reexec(policy: str, command_line: bool) -> str:
  """Runs this process's own command line again with jemalloc preloaded when `policy` asks for it
  and the process runs without it (never returns then); returns what the process runs with.

  `command_line` says the caller is the process's entry point (`main()` given no argv): a
  function called from other code (a test, a notebook) never replaces its process."""
  check(policy)
  now = active()
  if policy == "system" or now == "jemalloc" or not command_line:
    return now
  if os.environ.get(_TRIED):
    return "system (jemalloc was preloaded but is not mapped; LD_PRELOAD=" \
           f"{os.environ.get('LD_PRELOAD', '')!r})"
  lib = find_jemalloc()
  if lib is None:
    print("note: libjemalloc not found (apt-get install libjemalloc2); training with glibc's "
          "allocator, which costs page faults every step (--config.train.host_malloc=system "
          "silences this)", file=sys.stderr, flush=True)
    return "system (libjemalloc not found)"
  env = dict(os.environ, **{_TRIED: "1"})
  env["LD_PRELOAD"] = " ".join(filter(None, (lib, env.get("LD_PRELOAD", ""))))
  env.setdefault("MALLOC_CONF", MALLOC_CONF)
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)
  raise AssertionError("unreachable")
