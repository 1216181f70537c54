"""Fault injection for the kill tests: run a data phase with a hook that SIGKILLs it at a named point.

  python tests/fault_hooks.py --kill unit_progress@2 data_pipeline.clean --input ... --output ...

installs `Kill("unit_progress", 2)` with `shards.set_event_hook` and calls the phase module's
`main(argv)`. The process (a pool worker, when the point is reached in one) kills itself with
SIGKILL at the first `event` of that name whose `index` (the unit's position in the phase's task
list, or the shard's position in dedup's decision pass) is at least the given one. Worker pools
receive the hook through their initializer: `Kill` is picklable, so "spawn" workers get it too.
"""

import importlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipeline import shards  # noqa: E402


class Kill:
  """Event hook: SIGKILL this process at event `name` once `index >= at`."""

  def __init__(self, name: str, at: int = 0):
    self.name, self.at = name, at

  def __call__(self, event: str, **info) -> None:
    if event == self.name and info.get("index", 0) >= self.at:
      os.kill(os.getpid(), signal.SIGKILL)


def command(kill: str, module: str, args: list[str]) -> list[str]:
  """The argv that runs `module`'s main(args) under `--kill EVENT@INDEX`."""
  return [sys.executable, str(Path(__file__).resolve()), "--kill", kill, module, *args]


def main(argv: list[str]) -> int:
  if len(argv) < 3 or argv[0] != "--kill":
    raise SystemExit(f"usage: {__doc__.splitlines()[2].strip()}")
  name, _, at = argv[1].partition("@")
  shards.set_event_hook(Kill(name, int(at or 0)))
  return importlib.import_module(argv[2]).main(argv[3:]) or 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
