"""Generate text from a checkpoint: batched prompts, KV cache, one jitted loop over new tokens.

    swahili100 generate --checkpoint runs/debug --prompt "Habari ya" [--prompt P2 ...] \
        [--prompts-file F] [--max-new-tokens 50] [--temperature 0.8 --top-p 0.95 --top-k 0 \
        --repetition-penalty 1.0 --seed 0] [--chat]

`--temperature 0` is greedy. Each row stops after `<|endoftext|>` or `<|end|>` (its own done
mask; the batch stops when every row is done). Prompts are encoded as they are (documents in the
token records start without a BOS token, so none is added); `--chat` sends each as a user turn
and prints only the reply. `--prompts-file` holds one prompt per line.

The core is `generate_batch(model, prompts_ids, ...)`: prompts left-padded into one batch (padding
slots masked out of attention), one prefill, then a `jax.lax.while_loop` that samples and feeds
each new token on device; stop strings (lm-eval's generate_until) are checked between chunks of
`STOP_CHUNK` tokens. `generate_ids(model, prompt_ids, ...)` is its one-prompt form (tests and
export's token-for-token comparison with `transformers` call it).
"""

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from swahili100 import checkpoint, config_lib, inference, lm
from swahili100 import model as model_lib
from swahili100 import sharding, special_tokens
from swahili100.align import chat

CACHE_BUCKET = 64   # cache lengths round up to a multiple of this so compiled loops are reused
PROMPT_BUCKET = 16  # so do (left-padded) prompt lengths
STOP_CHUNK = 16     # new tokens between stop-string checks (only when there are stop strings)


def sample_token(logits_V, key, temperature, top_p, top_k=0):
  """Greedy when temperature == 0, else sampling at `temperature` from the `top_k` most likely
  tokens (0 = all) and, of those, the smallest set whose probability reaches `top_p`."""
  logits_V = logits_V.astype(jnp.float32)
  greedy = jnp.argmax(logits_V).astype(jnp.int32)
  scaled_V = logits_V / jnp.maximum(temperature, 1e-6)
  order_V = jnp.argsort(-scaled_V)
  sorted_V = scaled_V[order_V]
  rank_V = jnp.arange(sorted_V.shape[0])
  sorted_V = jnp.where((top_k <= 0) | (rank_V < top_k), sorted_V, -jnp.inf)
  probs_V = jax.nn.softmax(sorted_V)
  # keep the smallest prefix whose mass reaches top_p (the most likely token always stays)
  keep_V = (jnp.cumsum(probs_V) - probs_V) < top_p
  choice = jax.random.categorical(key, jnp.where(keep_V, sorted_V, -jnp.inf))
  sampled = order_V[choice].astype(jnp.int32)
  return jnp.where(temperature > 0, sampled, greedy)


def penalize(logits_BV, seen_BV, penalty):
  """CTRL's repetition penalty as `transformers` applies it: seen tokens' logits are divided by
  `penalty` when positive, multiplied when negative (1 = off)."""
  hit = jnp.where(logits_BV > 0, logits_BV / penalty, logits_BV * penalty)
  return jnp.where(seen_BV, hit, logits_BV)


def _next_tokens(logits_BV, seen_BV, keys_B, temperature, top_p, top_k, penalty):
  logits_BV = penalize(logits_BV.astype(jnp.float32), seen_BV, penalty)
  return jax.lax.cond(  # greedy skips the per-row sort that sampling needs
      temperature > 0,
      lambda: jax.vmap(sample_token, (0, 0, None, None, None))(logits_BV, keys_B, temperature,
                                                              top_p, top_k),
      lambda: jnp.argmax(logits_BV, axis=-1).astype(jnp.int32))


def _keys(key, step, B):
  """Per-row keys of one step: a row's draws do not depend on the rest of the batch."""
  return jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(key, r), step))(jnp.arange(B))


def _prefill(graphdef, state, tokens_BP, pad_B, stop_ids, key, temperature, top_p, top_k, penalty,
             *, max_new: int, cache_len: int):
  """Runs the prompts through an empty cache and samples the first new token of every row."""
  model = nnx.merge(graphdef, state)
  B, P = tokens_BP.shape
  valid_BS = jnp.arange(cache_len)[None, :] >= pad_B[:, None]
  positions_BP = jnp.maximum(jnp.arange(P)[None, :] - pad_B[:, None], 0)
  cache = model_lib.init_cache(model.config, B, cache_len)
  logits_BPV, cache = model.decode(tokens_BP, positions_BP, cache, valid_BS)
  V = logits_BPV.shape[-1]
  prompt_BP = jnp.where(valid_BS[:, :P], tokens_BP, V)  # padding indexes past V: dropped
  seen_BV = jnp.zeros((B, V), jnp.bool_).at[jnp.arange(B)[:, None], prompt_BP].set(
      True, mode="drop")
  token_B = _next_tokens(logits_BPV[:, -1], seen_BV, _keys(key, 0, B), temperature, top_p, top_k,
                         penalty)
  out_BN = jnp.zeros((B, max_new), jnp.int32).at[:, 0].set(token_B)
  seen_BV = seen_BV.at[jnp.arange(B), token_B].set(True)
  done_B = jnp.isin(token_B, stop_ids)
  return {"step": jnp.int32(1), "cache": cache, "valid": valid_BS, "pad": pad_B, "token": token_B,
          "out": out_BN, "length": jnp.ones((B,), jnp.int32), "done": done_B, "seen": seen_BV}


def _decode(graphdef, state, carry, until, stop_ids, key, temperature, top_p, top_k, penalty):
  """Feeds and samples tokens on device while step < until and some row is not done."""
  model = nnx.merge(graphdef, state)

  def cond(c):
    return (c["step"] < until) & ~jnp.all(c["done"])

  def body(c):
    B = c["token"].shape[0]
    positions_B1 = (c["cache"]["index"] - c["pad"])[:, None]  # the fed token's slot - padding
    logits_B1V, cache = model.decode(c["token"][:, None], positions_B1, c["cache"], c["valid"])
    token_B = _next_tokens(logits_B1V[:, 0], c["seen"], _keys(key, c["step"], B), temperature,
                           top_p, top_k, penalty)
    live_B = ~c["done"]
    token_B = jnp.where(live_B, token_B, special_tokens.PAD_ID)
    return {**c, "step": c["step"] + 1, "cache": cache, "token": token_B,
            "out": c["out"].at[:, c["step"]].set(token_B),
            "length": c["length"] + live_B.astype(jnp.int32),
            "done": c["done"] | jnp.isin(token_B, stop_ids),
            "seen": c["seen"].at[jnp.arange(B), token_B].set(True)}

  return jax.lax.while_loop(cond, body, carry)


@functools.lru_cache(maxsize=None)
def _jitted():
  # donate the loop state where the backend can reuse its buffers (not on CPU, where it only warns)
  donate = () if jax.default_backend() == "cpu" else (2,)
  prefill = jax.jit(_prefill, static_argnums=0, static_argnames=("max_new", "cache_len"))
  return prefill, jax.jit(_decode, static_argnums=0, donate_argnums=donate)


def _stop_ids(eos_id) -> np.ndarray:
  if eos_id is None:
    return np.full((1,), -1, np.int32)  # matches no token
  return np.asarray([eos_id] if isinstance(eos_id, int) else list(eos_id), np.int32)


def generate_batch(model, prompts_ids, max_new_tokens: int, temperature: float = 0.0,
                   top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                   seed: int = 0, eos_id: int | tuple[int, ...] | None = special_tokens.STOP_IDS,
                   stop_strings=(), decode=None) -> list[list[int]]:
  """New token ids of every prompt (not including the prompt). A row ends after a stop id
  (`eos_id`: one id or several; by default `<|endoftext|>` and `<|end|>`), which is then its last
  id, or once `decode(ids)` contains one of `stop_strings` (checked every STOP_CHUNK tokens; the
  caller cuts the text there, see `cut_at_stop`). `eos_id=None` always makes max_new_tokens."""
  prompts_ids = [[int(t) for t in p] for p in prompts_ids]
  if not prompts_ids or any(not p for p in prompts_ids):
    raise ValueError("generate needs non-empty prompts (e.g. [special_tokens.BOS_ID])")
  if max_new_tokens <= 0:
    return [[] for _ in prompts_ids]
  B = len(prompts_ids)
  P = -(-max(len(p) for p in prompts_ids) // PROMPT_BUCKET) * PROMPT_BUCKET
  cache_len = -(-(P + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
  tokens_BP = np.full((B, P), special_tokens.PAD_ID, np.int32)
  pad_B = np.asarray([P - len(p) for p in prompts_ids], np.int32)
  for b, p in enumerate(prompts_ids):
    tokens_BP[b, pad_B[b]:] = p
  graphdef, state = nnx.split(model)
  stop_ids = _stop_ids(eos_id)
  args = (jax.random.key(seed), jnp.float32(temperature), jnp.float32(top_p), jnp.int32(top_k),
          jnp.float32(repetition_penalty))
  prefill, decode_loop = _jitted()
  carry = prefill(graphdef, state, tokens_BP, pad_B, stop_ids, *args, max_new=max_new_tokens,
                  cache_len=cache_len)
  chunk = STOP_CHUNK if stop_strings and decode is not None else max_new_tokens
  until = 1
  while until < max_new_tokens:
    until = min(until + chunk, max_new_tokens)
    carry = decode_loop(graphdef, state, carry, jnp.int32(until), stop_ids, *args)
    if chunk < max_new_tokens:
      done = np.asarray(carry["done"]).copy()
      out, length = np.asarray(carry["out"]), np.asarray(carry["length"])
      for b in np.flatnonzero(~done):
        text = decode(out[b, :length[b]].tolist())
        done[b] = any(s in text for s in stop_strings)
      if done.all():
        break
      carry = {**carry, "done": jnp.asarray(done)}
  out, length = np.asarray(carry["out"]), np.asarray(carry["length"])
  return [out[b, :length[b]].tolist() for b in range(B)]


def generate_ids(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0,
                 eos_id: int | tuple[int, ...] | None = special_tokens.STOP_IDS,
                 top_k: int = 0, repetition_penalty: float = 1.0) -> list[int]:
  """`generate_batch` of one prompt: its new ids, the stop id (if any) last."""
  return generate_batch(model, [prompt_ids], max_new_tokens, temperature, top_p, top_k,
                        repetition_penalty, seed, eos_id)[0]


def strip_stop(ids: list[int], stop: tuple[int, ...] = special_tokens.STOP_IDS) -> list[int]:
  """`ids` without a final stop id."""
  return ids[:-1] if ids and ids[-1] in stop else ids


def cut_at_stop(text: str, stop_strings) -> str:
  """`text` up to the first occurrence of any stop string (lm-eval's generate_until)."""
  cut = min([i for i in (text.find(s) for s in stop_strings if s) if i >= 0], default=len(text))
  return text[:cut]


def read_prompts(args) -> list[str]:
  prompts = list(args.prompt or [])
  if args.prompts_file:
    with open(args.prompts_file, encoding="utf-8") as f:
      prompts += [line.rstrip("\n") for line in f if line.strip()]
  return prompts


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="swahili100 generate", description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="<workdir>/checkpoints/<step>, a workdir (its latest step) or a "
                           "quantized folder")
  parser.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
  parser.add_argument("--prompts-file", default=None, help="more prompts, one per line")
  parser.add_argument("--max-new-tokens", type=int, default=100)
  parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
  parser.add_argument("--top-p", type=float, default=0.95)
  parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0 = all)")
  parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tokenizer", default=None, help="override config.data.tokenizer")
  parser.add_argument("--chat", action="store_true",
                      help="send each prompt as a user turn of the chat format (aligned models) "
                           "and print only the assistant's reply")
  args = parser.parse_args(argv)
  prompts = read_prompts(args)
  if not prompts:
    print("generate: no prompt; give --prompt P (repeatable) or --prompts-file F",
          file=sys.stderr)
    return 2

  # one device's mesh, entered like every other jitted phase (mesh-aware back-ends need it)
  mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
  try:
    config, model = inference.load(args.checkpoint, mesh)
  except checkpoint.CheckpointError as e:
    print(f"swahili100 generate: error: {e}", file=sys.stderr)
    return 2
  try:
    tokenizer = lm.load_tokenizer(args.tokenizer or config.data.tokenizer)
  except config_lib.ConfigError as e:
    print(f"generate: {e} (override with --tokenizer)", file=sys.stderr)
    return 2
  try:
    specials = special_tokens.of(tokenizer, args.tokenizer or config.data.tokenizer)
  except ValueError as e:
    print(f"generate: {e}", file=sys.stderr)
    return 2
  if args.chat and not specials.own:
    print("generate: --chat needs the project's chat tokens (<|user|>, <|assistant|>, ...); this "
          "run's tokenizer is an imported model's: align it first (`swahili100 align`) or drop "
          "--chat", file=sys.stderr)
    return 2
  if args.chat:
    texts = [chat.render([{"role": "user", "content": p}], add_generation_prompt=True)
             for p in prompts]
  else:
    texts = prompts
  prompts_ids = [tokenizer.encode(t).ids for t in texts]
  empty = [p for p, ids in zip(prompts, prompts_ids) if not ids]
  if empty:
    print(f"generate: the prompt {empty[0]!r} encodes to no tokens; give a non-empty prompt",
          file=sys.stderr)
    return 2
  with jax.set_mesh(mesh):
    new = generate_batch(model, prompts_ids, args.max_new_tokens, args.temperature, args.top_p,
                         args.top_k, args.repetition_penalty, args.seed, specials.stop)
  outputs = [tokenizer.decode(strip_stop(n, specials.stop)) if args.chat
             else tokenizer.decode(p + strip_stop(n, specials.stop)) for p, n in zip(prompts_ids, new)]
  print("\n---\n".join(outputs))
  return 0


if __name__ == "__main__":
  sys.exit(main())
