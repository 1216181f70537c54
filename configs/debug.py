"""Debug run: a tiny Llama on the demo's token records.

Command:  swahili100 train --config configs/debug.py --workdir runs/debug
Hardware: 2 CPU cores; expected ~1-2 min including compilation (well inside the guide's 5 min).
Expect:   loss falls clearly from ~ln(vocab) within 200 steps and a checkpoint lands in
          runs/debug/checkpoints/.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  return base.get_config()   # the base values are the debug run's
