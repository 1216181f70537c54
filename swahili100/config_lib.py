"""Config files and command-line overrides.

    config = load("configs/debug.py")                 # or "configs/swahili_base.py:runlocal"
    config = apply_overrides(config, ["--config.optim.lr=1e-3", "--config.mesh.fsdp", "2"])

A config file defines `get_config(arg=None) -> ml_collections.ConfigDict`. Overrides use the
`--config.section.key=value` syntax of ml_collections' config_flags; an unknown key or a value of
the wrong type is refused with a `ConfigError` that names the key (and close matches).
"""

import ast
import difflib
import importlib.util
import json
import os
from typing import Any

import ml_collections

from swahili100 import fs, host_memory


class ConfigError(ValueError):
  """A config file, key or value that cannot be used; the message says which and how to fix it."""


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py` or `path.py:arg` and returns its `get_config([arg])`."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(f"config file {path!r} not found (e.g. --config configs/debug.py)")
  module_spec = importlib.util.spec_from_file_location("_swahili100_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} defines no get_config()")
  return module.get_config(arg) if arg else module.get_config()


def from_json(path: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved as `<workdir>/config.json` (a local path or a URL)."""
  return ml_collections.ConfigDict(json.loads(fs.read_text(path)))


def _all_keys(config, prefix="") -> list[str]:
  keys = []
  for k, v in config.items():
    keys.append(prefix + k)
    if isinstance(v, ml_collections.ConfigDict):
      keys += _all_keys(v, prefix + k + ".")
  return keys


def _parse(key: str, text: str, current):
  """`text` as a value of `current`'s type."""
  try:
    if isinstance(current, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError
      return text.lower() in ("true", "1")
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    if isinstance(current, (tuple, list)):
      return type(current)(ast.literal_eval(text))
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  except (ValueError, SyntaxError):
    raise ConfigError(f"--config.{key}={text!r}: expected a {type(current).__name__} "
                      f"(current value {current!r})") from None


def set_value(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets dotted `key` from its command-line text, checking that it exists and its type."""
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      close = difflib.get_close_matches(key, _all_keys(config), n=3)
      hint = f"; did you mean {', '.join('--config.' + c for c in close)}?" if close else ""
      raise ConfigError(f"unknown config key --config.{key}{hint}")
    if i < len(parts) - 1:
      node = node[part]
  current = node[parts[-1]]
  if isinstance(current, ml_collections.ConfigDict):
    raise ConfigError(f"--config.{key} is a section; set one of its keys, e.g. "
                      f"--config.{key}.{next(iter(current.keys()))}=...")
  with node.unlocked():
    node[parts[-1]] = _parse(key, text, current)


def aliases(given: dict[str, tuple[str, Any]], overrides: list[str]) -> list[str]:
  """The `--config.k=v` of each short flag given ({dotted key: (flag, value)}): a short flag is
  another spelling of its config field, so setting a key both ways is refused, not ranked."""
  keys = {o[len("--config."):].partition("=")[0] for o in overrides if o.startswith("--config.")}
  both = sorted(set(given) & keys)
  if both:
    flag = given[both[0]][0]
    raise ConfigError(f"{flag} and --config.{both[0]} set the same field; give one of them")
  return [f"--config.{k}={v}" for k, (_, v) in given.items()]


def apply_overrides(config, argv: list[str], check: bool = True) -> ml_collections.ConfigDict:
  """Applies every `--config.k=v` / `--config.k v` in argv; returns the config.

  `check` runs the training configs' cross-field `validate` (off for other configs, e.g. data)."""
  i, given = 0, set()
  while i < len(argv):
    arg = argv[i]
    if not arg.startswith("--config."):
      raise ConfigError(f"unexpected argument {arg!r}; config overrides look like --config.a.b=v")
    key, sep, text = arg[len("--config."):].partition("=")
    if not sep:
      if i + 1 >= len(argv):
        raise ConfigError(f"--config.{key} needs a value")
      i, text = i + 1, argv[i + 1]
    set_value(config, key, text)
    given.add(key)
    i += 1
  adopt_init_model(config, given)
  if check:
    validate(config)
    config.lock()   # a run's config gains no field after this; what it resolves is recorded apart
  return config


# model fields that say how a model is computed, not what it is: a run may set them apart from
# the run it starts from (init.from)
BACKEND_KEYS = ("attention", "remat", "layout_vjps", "causal_chunks", "loss_chunks", "dtype")


def init_from(config) -> str:
  """The run folder (or `<run>/checkpoints/<step>`) whose parameters start this run: the config's
  `init.from`; "" for a fresh initialisation."""
  init = get(config, "init")
  return (get(init, "from") or "") if init is not None else ""


CHECKPOINTS = "checkpoints"   # a run folder's checkpoint steps: <workdir>/checkpoints/<step>


def split_path(path: str) -> tuple[str, int | None]:
  """`<workdir>` or `<workdir>/checkpoints[/<step>]` -> (workdir, step or None for latest)."""
  p = fs.Path(fs.absolute(str(path).rstrip("/")))
  if p.name.isdigit() and p.parent.name == CHECKPOINTS:
    return str(p.parent.parent), int(p.name)
  if p.name == CHECKPOINTS:
    return str(p.parent), None
  return str(p), None


def adopt_init_model(config, given: set[str]) -> None:
  """With `init.from` set, the model section becomes that run's (from its config.json) but for
  the back-end switches; a `given` --config.model.* key that contradicts it is refused by name."""
  source = init_from(config)
  if not source:
    return
  path = fs.join(split_path(source)[0], "config.json")
  if not fs.exists(path):
    raise ConfigError(f"--config.init.from={source}: {path} not found; give a run folder made "
                      "by `swahili100 train` or `swahili100 import`, or one of its "
                      "checkpoints/<step>")
  saved = from_json(path).model
  clashes = [f"--config.model.{k}={config.model.get(k)!r} (the run has {v!r})"
             for k, v in saved.items()
             if k not in BACKEND_KEYS and f"model.{k}" in given and config.model.get(k) != v]
  if clashes:
    raise ConfigError(f"{', '.join(clashes)} contradicts --config.init.from={source}: the model "
                      f"comes from {path}; drop the flag (only {', '.join(BACKEND_KEYS)} may "
                      "differ) or train from scratch without init.from")
  with config.unlocked():
    for k, v in saved.items():
      if k not in BACKEND_KEYS:
        config.model[k] = v


def get(cfg, key: str, default=None):
  """`cfg.key` of a ConfigDict, a dict or any object, `default` when it is absent: the one
  accessor for code that takes a config section or its dataclass."""
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def check_heads(num_heads: int, num_kv_heads: int) -> None:
  """Grouped-query attention: every key/value head serves the same number of query heads."""
  if num_heads % num_kv_heads:
    raise ConfigError(f"config.model.num_kv_heads={num_kv_heads} must divide "
                      f"config.model.num_heads={num_heads}")


def validate(config) -> None:
  """Cross-field checks, each error naming the keys to change."""
  m, d, o = config.model, config.data, config.optim
  check_heads(m.num_heads, m.num_kv_heads)
  if d.batch_size % o.grad_accum:
    raise ConfigError(f"config.data.batch_size={d.batch_size} must be a multiple of "
                      f"config.optim.grad_accum={o.grad_accum}")
  if o.get("name", "adamw") not in ("adamw", "muon"):
    raise ConfigError(f"config.optim.name={o.name!r}: expected adamw | muon")
  if o.schedule not in ("cosine", "wsd"):
    raise ConfigError(f"config.optim.schedule={o.schedule!r}: expected cosine | wsd")
  try:
    host_memory.check(host_memory.policy(config.train))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.train.num_steps <= o.warmup_steps:
    raise ConfigError(f"config.train.num_steps={config.train.num_steps} must exceed "
                      f"config.optim.warmup_steps={o.warmup_steps}")
