"""AdamW with warmup then cosine or warmup-stable-decay, clipping and a weight-decay mask."""

import jax
import optax


def schedule(o, num_steps: int) -> optax.Schedule:
  """Linear warmup to `o.lr`, then cosine to `lr * min_lr_ratio` (or hold, then decay: wsd)."""
  end = o.lr * o.min_lr_ratio
  warmup = optax.linear_schedule(0.0, o.lr, o.warmup_steps)
  rest = num_steps - o.warmup_steps
  if o.schedule == "cosine":
    after = optax.cosine_decay_schedule(o.lr, rest, alpha=o.min_lr_ratio)
    return optax.join_schedules([warmup, after], [o.warmup_steps])
  decay_steps = max(1, int(rest * o.decay_fraction))
  stable = optax.constant_schedule(o.lr)
  decay = optax.linear_schedule(o.lr, end, decay_steps)
  return optax.join_schedules([warmup, stable, decay],
                              [o.warmup_steps, num_steps - decay_steps])


def decay_mask(params):
  """Weight decay on matrices (projections and embeddings), never on norm scales or biases."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make(o, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of `config.optim` and its learning-rate schedule."""
  lr = schedule(o, num_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(o.grad_clip),
      optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                  mask=decay_mask))
  return tx, lr
