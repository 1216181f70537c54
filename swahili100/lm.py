"""Losses and the pure train/eval steps every stage shares (pretraining, SFT, DPO, evaluation).

A loss function has the signature

    loss_fn(params, graphdef, frozen, batch) -> (objective_sum, sums)

where `objective_sum` is differentiated, `sums` is a dict of per-batch sums that includes
`weight`, the normaliser (target tokens for language modelling, pairs for DPO), and `frozen` is a
pytree the loss reads but never trains (DPO's reference parameters; None otherwise). Sums rather
than means make gradient accumulation exact: micro-batch sums add up, and the step divides once.

Batches are dicts of int32 [B, T] arrays: `inputs`, `targets`, `segment_ids`, `positions`, and
`mask` (1 where the target is trained); DPO batches hold two of them, `chosen` and `rejected`.
"""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tokenizers
from flax import nnx, struct

from swahili100 import config_lib, fs


def logits(params, graphdef, batch):
  """float32 logits_BTV of a packed batch."""
  return nnx.merge(graphdef, params)(batch["inputs"], batch["segment_ids"], batch["positions"])


def target_logp(logits_BTV, targets_BT):
  """(log p(target) [B, T], log Z [B, T]) without materialising a log-softmax."""
  logz_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
  target_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
  return target_BT - logz_BT, logz_BT


def lm_loss(params, graphdef, frozen, batch, *, z_loss: float = 0.0):
  """Next-token cross-entropy summed over masked targets (+ z·logZ², PaLM's z-loss); the model's
  head and the loss are fused when `config.model.loss_chunks` > 0 (model.fused_nll_sums)."""
  del frozen
  m = nnx.merge(graphdef, params)
  mask_BT = batch["mask"].astype(jnp.float32)
  if m.fuses_loss(batch["inputs"].shape[1]):
    nll, zsq = m.fused_nll_sums(batch["inputs"], batch["targets"], batch["mask"],
                                batch["segment_ids"], batch["positions"], z_loss=z_loss)
  else:
    logits_BTV = m(batch["inputs"], batch["segment_ids"], batch["positions"])
    logp_BT, logz_BT = target_logp(logits_BTV, batch["targets"])
    nll, zsq = -jnp.sum(logp_BT * mask_BT), jnp.sum(logz_BT**2 * mask_BT)
  total = nll + z_loss * zsq if z_loss else nll
  return total, {"loss": nll, "weight": jnp.sum(mask_BT)}


def sequence_logprobs(params, graphdef, batch):
  """Per-row sum of log p(target) over masked targets, [B]."""
  logp_BT, _ = target_logp(logits(params, graphdef, batch), batch["targets"])
  return jnp.sum(logp_BT * batch["mask"], axis=-1)


def dpo_loss(params, graphdef, frozen, batch, *, beta: float):
  """-log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]) summed over pairs
  (Rafailov et al. 2023); `frozen` holds the reference parameters."""
  ref = jax.lax.stop_gradient(frozen)
  chosen, rejected = batch["chosen"], batch["rejected"]
  margin_B = beta * ((sequence_logprobs(params, graphdef, chosen)
                      - sequence_logprobs(ref, graphdef, chosen))
                     - (sequence_logprobs(params, graphdef, rejected)
                        - sequence_logprobs(ref, graphdef, rejected)))
  loss_B = -jax.nn.log_sigmoid(margin_B)
  return jnp.sum(loss_B), {"loss": jnp.sum(loss_B),
                           "reward_accuracy": jnp.sum((margin_B > 0).astype(jnp.float32)),
                           "margin": jnp.sum(margin_B),
                           "weight": jnp.float32(margin_B.shape[0])}


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes: the jitted step takes and returns it, the
  engine holds it, `aot` lowers it, checkpoints store its parameters and optimizer state."""
  params: Any
  opt_state: Any
  step: jax.Array        # [] int32: updates done
  first_bad: jax.Array   # [] int32: first step whose loss or gradient was not finite; -1 if none


def train_step(state: TrainState, batch, frozen, *, graphdef, tx, loss_fn,
               grad_accum: int) -> tuple[TrainState, dict]:
  """One optimizer update over `grad_accum` micro-batches; returns the new state and metrics.

  Metrics are the loss function's sums divided by their `weight` (the loss, DPO's reward
  accuracy, ...), the global gradient norm, and `weight` itself. `first_bad` stays on device so
  the host only syncs on it at log and checkpoint steps.
  """
  params = state.params
  grad_fn = jax.grad(lambda p, b: loss_fn(p, graphdef, frozen, b), has_aux=True)
  if grad_accum == 1:
    grads, sums = grad_fn(params, batch)
  else:
    micro = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)
    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(lambda: loss_fn(params, graphdef, frozen, first)[1])
    zeros = (jax.tree.map(jnp.zeros_like, params),
             jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))

    def body(carry, mb):
      g, s = grad_fn(params, mb)
      return jax.tree.map(jnp.add, carry, (g, s)), None

    (grads, sums), _ = jax.lax.scan(body, zeros, micro)
  weight = jnp.maximum(sums["weight"], 1.0)
  grads = jax.tree.map(lambda g: g / weight, grads)
  updates, opt_state = tx.update(grads, state.opt_state, params)
  params = optax.apply_updates(params, updates)
  metrics = {k: v / weight for k, v in sums.items() if k != "weight"}
  metrics.update(grad_norm=optax.tree.norm(grads), weight=sums["weight"])
  finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
  first_bad = jnp.where((state.first_bad < 0) & ~finite, state.step, state.first_bad)
  return TrainState(params, opt_state, state.step + 1, first_bad), metrics


def eval_step(params, batch, token_bytes_V, *, graphdef):
  """(sum nats, sum bytes, tokens) of one validation batch."""
  _, sums = lm_loss(params, graphdef, None, batch)
  nbytes = jnp.sum(token_bytes_V[batch["targets"]] * batch["mask"])
  return sums["loss"], nbytes.astype(jnp.float32), sums["weight"]


@functools.lru_cache(maxsize=8)
def _jitted_eval(graphdef):
  return jax.jit(functools.partial(eval_step, graphdef=graphdef))


def eval_sums(graphdef, params, batches, token_bytes_V, place=lambda b: b) -> np.ndarray:
  """[sum nats, sum bytes, tokens] of `eval_step` over `batches` (each placed by `place`)."""
  step = _jitted_eval(graphdef)
  sums = np.zeros(3)
  for batch in batches:
    sums += np.array([float(x) for x in step(params, place(batch), token_bytes_V)])
  return sums


def bits_per_byte(sum_nats: float, sum_bytes: float) -> float:
  return sum_nats / math.log(2) / max(sum_bytes, 1.0)


def summarize(sums) -> dict:
  """{'loss' (nats/token), 'bpb', 'tokens', 'bytes'} of `eval_sums`' output."""
  nats, nbytes, tokens = (float(x) for x in sums)
  return {"loss": nats / max(tokens, 1.0), "bpb": bits_per_byte(nats, nbytes),
          "tokens": int(tokens), "bytes": int(nbytes)}


def load_tokenizer(path) -> tokenizers.Tokenizer:
  """The project tokenizer from a local path or a URL (gs://...)."""
  try:
    return tokenizers.Tokenizer.from_file(fs.local_file(path))
  except Exception as e:  # noqa: BLE001 (tokenizers raises a bare Exception)
    raise config_lib.ConfigError(f"cannot load the tokenizer {path!r}: {e}; point "
                                 "config.data.tokenizer (or --tokenizer) at the "
                                 "swahili_bpe.json that `swahili100 train-tokenizer` wrote"
                                 ) from None


def token_bytes(tokenizer_path, vocab_size: int) -> np.ndarray:
  """UTF-8 bytes each token stands for (byte-level BPE: one vocab character = one byte).

  Special tokens count 0 bytes, so bits-per-byte = sum(nats) / ln 2 / sum(bytes of targets).
  """
  tok = load_tokenizer(tokenizer_path)
  special = {t.content for t in tok.get_added_tokens_decoder().values()}
  out = np.zeros(vocab_size, np.int32)
  for token, i in tok.get_vocab().items():
    if i < vocab_size and token not in special:
      out[i] = len(token)
  return out
