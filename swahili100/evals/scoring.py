"""Log-likelihood of continuations on JAX: the scorer behind the tasks, the lm-eval adapter and
text bits-per-byte.

    requests = [encode_pair(tok, "Mvua ilinyesha kwa hiyo", " ardhi ililowa.", EOS_ID), ...]
    scores = loglikelihoods(graphdef, params, requests, mesh, max_len=config.data.seq_len)
    # [(sum log p(continuation | context), is_greedy), ...] in request order

The conventions are lm-evaluation-harness's (`TemplateLM`, `HFLM`), so this scorer, lm-eval over
the JAX adapter and lm-eval's `hf` model on the exported checkpoint score every item alike:
- the context's trailing whitespace moves to the continuation, and the continuation's tokens are
  those of encode(context + continuation) after the first len(encode(context)) (`encode_pair`);
- an empty context is the prefix token (`<|endoftext|>`: every document in the records follows one);
- a row longer than max_len + 1 tokens keeps its last max_len + 1 (left truncation);
- a long text is scored in lm-eval's rolling windows (`rolling_windows`).

Rows are sorted by length, padded to a length bucket (powers of two from `min_len`, capped at
max_len) and to `batch_size` rows, so a handful of compiled shapes serve a whole task; every
process builds the same batches and `shard_global_batch` places its rows.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from swahili100 import lm, sharding


def encode_pair(tok, context: str, continuation: str, prefix_id: int):
  """(context ids, continuation ids) exactly as lm-eval's TemplateLM.loglikelihood encodes."""
  if not context:
    cont = tok.encode(continuation).ids
    return ([prefix_id], cont) if cont[:1] != [prefix_id] else (cont[:1], cont[1:])
  n_spaces = len(context) - len(context.rstrip())
  if n_spaces:
    context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
  whole = tok.encode(context + continuation).ids
  ctx = tok.encode(context).ids
  return ctx, whole[len(ctx):]


def rolling_windows(ids: list[int], prefix_id: int, max_len: int):
  """(context, continuation) windows that predict every token of `ids` once (lm-eval's
  `get_rolling_token_windows` with context_len=1, made disjoint): the first window predicts
  ids[:max_len] after the prefix; each next one predicts the next max_len tokens after the
  token before them; the last predicts what is left with a full max_len-token context."""
  out, done = [], 0
  while done < len(ids):
    if done == 0:
      n = min(max_len, len(ids))
      out.append(([prefix_id], ids[:n]))
    else:
      n = min(max_len, len(ids) - done)
      end = done + n
      window = ids[max(end - max_len - 1, 0):end - 1]
      out.append((window[:len(window) - (n - 1)], ids[done:end]))
    done += n
  return out


def bucket(n: int, max_len: int, min_len: int = 16) -> int:
  """The padded length of an n-token row: the next power of two >= min_len, at most max_len."""
  b = min_len
  while b < n:
    b *= 2
  return min(b, max(max_len, n))


def min_len_for(model_cfg) -> int:
  """Smallest row length the model's attention back-end takes (splash tiles 128 queries)."""
  return 128 if getattr(model_cfg, "attention", "reference") == "splash" else 16


def _row(ctx: list[int], cont: list[int], max_len: int):
  """(input ids, target ids, scored positions) of one request after left truncation."""
  ids = (list(ctx) + list(cont))[-(max_len + 1):]
  n_cont = min(len(cont), len(ids) - 1)
  return ids[:-1], ids[1:], n_cont


def _pack(rows, T: int, B: int) -> dict:
  """int32 [B, T] batch of right-padded rows (padding: segment 0, mask 0)."""
  batch = {k: np.zeros((B, T), np.int32) for k in ("inputs", "targets", "segment_ids", "mask")}
  for i, (inputs, targets, n_cont) in enumerate(rows):
    n = len(inputs)
    batch["inputs"][i, :n] = inputs
    batch["targets"][i, :n] = targets
    batch["segment_ids"][i, :n] = 1
    batch["mask"][i, n - n_cont:n] = 1
  batch["positions"] = np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy()
  return batch


def score_step(params, batch, *, graphdef):
  """(sum of masked log p(target) [B], all masked targets are the argmax [B]) in float32."""
  logits_BTV = lm.logits(params, graphdef, batch)
  targets_BT, mask_BT = batch["targets"], batch["mask"]
  logp_BT, _ = lm.target_logp(logits_BTV, targets_BT)
  greedy_BT = jnp.argmax(logits_BTV, axis=-1) == targets_BT
  return (jnp.sum(logp_BT * mask_BT, axis=-1),
          jnp.all(greedy_BT | (mask_BT == 0), axis=-1))


@functools.lru_cache(maxsize=8)
def _jitted(graphdef, mesh):
  # replicated outputs: every process reads every row's score (multi-host included)
  return jax.jit(functools.partial(score_step, graphdef=graphdef),
                 out_shardings=NamedSharding(mesh, P()))


def loglikelihoods(graphdef, params, requests, mesh, max_len: int, batch_size: int = 32,
                   min_len: int = 16) -> list[tuple[float, bool]]:
  """(log-likelihood, is_greedy) of each (context ids, continuation ids) request, in order.

  `batch_size` rounds up to a multiple of the mesh's batch axes (data * fsdp)."""
  d = sharding.batch_size_divisor(mesh)
  B = -(-batch_size // d) * d
  rows = [_row(c, x, max_len) for c, x in requests]
  order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
  step = _jitted(graphdef, mesh)
  logp, greedy = np.zeros(len(rows)), np.zeros(len(rows), bool)
  with jax.set_mesh(mesh):
    for start in range(0, len(order), B):
      idx = order[start:start + B]
      T = bucket(len(rows[idx[0]][0]), max_len, min_len)
      batch = sharding.shard_global_batch(_pack([rows[i] for i in idx], T, B), mesh)
      lp_B, gr_B = step(params, batch)
      logp[idx] = np.asarray(lp_B)[:len(idx)]
      greedy[idx] = np.asarray(gr_B)[:len(idx)]
  return [(float(a), bool(b)) for a, b in zip(logp, greedy)]
