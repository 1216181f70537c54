"""Weights & Biases: the scalars TensorBoard gets, from the main process, one W&B run per workdir.

`config.train.wandb`: `mode` = disabled (default) | online | offline, `project`, `entity`,
`name`. The W&B run id is kept in `<workdir>/wandb_run_id`, so a restart or a resume after a
preemption continues the same W&B run; W&B writes its files under `<workdir>/wandb/` (for a
`gs://` workdir, under a local temporary folder: W&B appends to its files). The config and
what the run resolved (config.json's content) are the W&B run's config. A missing `wandb`
package, a missing login for `online`, or a failed `wandb.init` prints one line and the run
goes on without W&B: tracking never stops training.
"""

import importlib.util
import netrc
import os
import secrets
import sys
import tempfile

from swahili100 import config_lib, fs


def _lazy(name: str):
  """The module `name`, executed at its first attribute use; None when it is not installed.

  `import wandb` costs ~3 s of CPU (pydantic models); every `train` and `align` process would pay
  it with W&B disabled, the default (importlib's documented lazy-import recipe)."""
  spec = importlib.util.find_spec(name)
  if spec is None:
    return None
  loader = importlib.util.LazyLoader(spec.loader)
  spec.loader = loader
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  loader.exec_module(module)
  return module


wandb = _lazy("wandb")   # the optional [wandb] extra; a training-only install has none

ID_FILE = "wandb_run_id"
MODES = ("disabled", "online", "offline")


def _warn(text: str) -> None:
  print(f"warning: W&B logging is off: {text}", file=sys.stderr, flush=True)


def _logged_in() -> bool:
  """An API key in WANDB_API_KEY or ~/.netrc (what `wandb login` writes); no prompt."""
  if os.environ.get("WANDB_API_KEY"):
    return True
  try:
    return netrc.netrc().authenticators("api.wandb.ai") is not None
  except (OSError, netrc.NetrcParseError):
    return False


class WandbRun:
  """The W&B run of one training attempt, or nothing when tracking is off or unavailable."""

  def __init__(self, cfg, workdir: str, run_config: dict):
    self.run = None
    mode = str(cfg.get("mode", "disabled")) if cfg is not None else "disabled"
    if mode not in MODES:
      raise config_lib.ConfigError(f"config.train.wandb.mode={mode!r}: choose one of "
                                   f"{', '.join(MODES)}")
    if mode == "disabled":
      return
    if wandb is None:
      _warn("the wandb package is not installed (pip install 'swahili100[wandb]')")
      return
    if mode == "online" and not _logged_in():
      _warn("not logged in (run `wandb login` or set WANDB_API_KEY), or use "
            "--config.train.wandb.mode=offline and `wandb sync` later")
      return
    id_path = fs.join(workdir, ID_FILE)
    run_id = fs.read_text(id_path).strip() if fs.exists(id_path) else secrets.token_hex(4)
    local = tempfile.mkdtemp(prefix="swahili100-wandb-") if fs.is_remote(workdir) else workdir
    try:
      self.run = wandb.init(project=cfg.get("project") or "swahili100",
                            entity=cfg.get("entity") or None, name=cfg.get("name") or None,
                            mode=mode, id=run_id, resume="allow", dir=local, config=run_config,
                            settings=wandb.Settings(console="off", silent=True))
    except Exception as e:  # noqa: BLE001 (wandb raises many kinds; none may stop training)
      _warn(f"wandb.init failed ({type(e).__name__}: {e})")
      return
    if not fs.exists(id_path):
      fs.write_text(id_path, run_id + "\n")

  def log(self, step, values: dict[str, float]) -> None:
    if self.run is None or not values:
      return
    try:
      self.run.log(values, step=step if isinstance(step, int) else None)
    except Exception as e:  # noqa: BLE001
      _warn(f"wandb.log failed ({type(e).__name__}: {e})")
      self.finish()

  def finish(self) -> None:
    if self.run is not None:
      run, self.run = self.run, None
      try:
        run.finish()
      except Exception as e:  # noqa: BLE001
        _warn(f"wandb.finish failed ({type(e).__name__}: {e})")
