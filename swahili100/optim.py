"""The optimizer of `config.optim` and its schedule: AdamW, or Muon on the hidden matrices.

    tx, lr_fn = make(config.optim, config.train.num_steps)

`optim.name = adamw`: AdamW over every parameter (weight decay on matrices only); the embedding
and an untied head take `optim.embed_lr` / `optim.head_lr` when set (a plain single AdamW, whose
state older checkpoints hold, when neither is).
`optim.name = muon`: parameters are split into groups by `groups` (nanochat's split):
    hidden   the blocks' 2-D projections (attention q/k/v/o, MLP)  -> optax.contrib.muon
    embed    the input embedding (and the head, when tied)          -> AdamW at optim.embed_lr
    head     the untied output head                                 -> AdamW at optim.head_lr
    other    norm scales and anything else                          -> AdamW at optim.lr
optax's `muon` alone would orthogonalise every 2-D parameter, the [V, D] embedding and the
head included; Muon is defined for hidden layers' weights (Jordan 2024), so the split is ours
and `muon` only ever sees hidden matrices. Every group follows the same warmup/decay shape,
scaled to its own peak. Gradients are clipped by their global norm first, in both optimizers.
"""

import jax
import optax
from optax import contrib

NAMES = ("adamw", "muon")
GROUPS = ("hidden", "embed", "head", "other")
HIDDEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def schedule(o, num_steps: int, peak: float | None = None) -> optax.Schedule:
  """Linear warmup to `peak` (default `o.lr`), then cosine to `peak * min_lr_ratio` (or hold,
  then decay: wsd)."""
  peak = o.lr if peak is None else peak
  end = peak * o.min_lr_ratio
  warmup = optax.linear_schedule(0.0, peak, o.warmup_steps)
  rest = num_steps - o.warmup_steps
  if o.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, rest, alpha=o.min_lr_ratio)
    return optax.join_schedules([warmup, after], [o.warmup_steps])
  decay_steps = max(1, int(rest * o.decay_fraction))
  stable = optax.constant_schedule(peak)
  decay = optax.linear_schedule(peak, end, decay_steps)
  return optax.join_schedules([warmup, stable, decay],
                              [o.warmup_steps, num_steps - decay_steps])


def decay_mask(params):
  """Weight decay on matrices (projections and embeddings), never on norm scales or biases."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def group_of(path_names: tuple[str, ...], ndim: int) -> str:
  """The optimizer group of one parameter, from its path (e.g. layers/0/attn/q_proj/kernel)."""
  names = [n for n in path_names if n != "value"]
  if ndim == 2 and len(names) >= 2 and names[-2] in HIDDEN and names[-1] == "kernel":
    return "hidden"
  if "embed" in names:
    return "embed"
  if "lm_head" in names:
    return "head"
  return "other"


def groups(params):
  """The tree of `params` with each leaf replaced by its group name (see the module doc)."""
  return jax.tree_util.tree_map_with_path(lambda p, x: group_of(_names(p), x.ndim), params)


def _adamw(o, lr, b1=None, b2=None):
  return optax.adamw(lr, b1=o.b1 if b1 is None else b1, b2=o.b2 if b2 is None else b2,
                     eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask)


def make(o, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of `config.optim` and the learning-rate schedule logged as `lr` (AdamW's
  peak `o.lr` for adamw; Muon's `o.muon_lr` for muon)."""
  name = o.get("name", "adamw")
  lr = schedule(o, num_steps)
  clip = optax.clip_by_global_norm(o.grad_clip)
  embed_lr = o.get("embed_lr") or o.lr
  head_lr = o.get("head_lr") or o.lr
  transforms = {
      "embed": _adamw(o, schedule(o, num_steps, embed_lr)),
      "head": _adamw(o, schedule(o, num_steps, head_lr)),
      "other": _adamw(o, lr),
  }
  if name == "adamw":
    if embed_lr == head_lr == o.lr:
      return optax.chain(clip, _adamw(o, lr)), lr
    transforms["hidden"] = transforms["other"]
    return optax.chain(clip, optax.partition(transforms, groups)), lr
  muon_lr = schedule(o, num_steps, o.muon_lr)
  transforms["hidden"] = contrib.muon(muon_lr, beta=o.muon_momentum,
                                      weight_decay=o.muon_weight_decay, nesterov=True)
  return optax.chain(clip, optax.partition(transforms, groups)), muon_lr
