"""How the host's C allocator hands memory to XLA (`config.train.host_malloc`).

XLA:CPU allocates a step's buffers afresh every step. glibc serves the large ones with `mmap`
(above its threshold, which never exceeds 32 MiB, and whenever a worker thread's own arena is
too small) and returns them with `munmap`, so the kernel faults in and zeroes every page again
on the next step: on 2 cores the debug train step took ~25,000 page faults and ~40 ms of system
time per 90 ms step. `reuse` keeps freed memory in one heap for the next step (docs/RESEARCH.md
"Host allocator"): what a step computes is unchanged; the price is that the process's resident
memory stays at its peak.
"""

import ctypes
import sys

POLICIES = ("reuse", "system")

# mallopt(3) parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1),               # one heap: XLA's worker threads share the reuse
             (_M_MMAP_MAX, 0),                # large blocks come from that heap, not from mmap
             (_M_TRIM_THRESHOLD, 2**31 - 1))  # and free never hands its top back to the kernel


def configure(policy: str) -> str:
  """Applies `policy`; returns what the process now runs with: "reuse", "system", or
  "system (no glibc)" where mallopt does not exist (macOS, musl).

  Takes full effect only before the process's first computation: each of XLA's threads is given
  its heap on its first allocation, so the entry points call this before `jax.devices()`."""
  if policy not in POLICIES:
    raise ValueError(f"config.train.host_malloc={policy!r}: expected {' | '.join(POLICIES)}")
  if policy == "system":
    return "system"
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt if sys.platform.startswith("linux") else None
  except (OSError, AttributeError):
    mallopt = None
  if mallopt is None:
    return "system (no glibc)"
  if not all(mallopt(param, value) == 1 for param, value in _SETTINGS):
    return "system (mallopt refused)"
  return "reuse"
