"""Sample text from a checkpoint with a KV cache: one prefill, then one jitted step per token.

    swahili100 generate --checkpoint runs/debug --prompt "Habari ya" --max-new-tokens 50 \
        [--temperature 0.8 --top-p 0.95 --seed 0] [--chat]

`--temperature 0` is greedy decoding. Sampling stops at `<|endoftext|>` or `<|end|>`. The prompt is encoded
with the tokenizer of `config.data.tokenizer` as is (documents in the token records start
without a BOS token, so none is added).

The core is `generate_ids(model, prompt_ids, ...)`, a function of the model and token ids only
(used by tests and by export's token-for-token comparison with `transformers`).
"""

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from swahili100 import model as model_lib
from swahili100 import special_tokens

CACHE_BUCKET = 64  # cache lengths round up to a multiple of this so compiled steps are reused


def sample_token(logits_V, key, temperature, top_p):
  """Greedy when temperature == 0, else nucleus (top-p) sampling at `temperature`."""
  logits_V = logits_V.astype(jnp.float32)
  greedy = jnp.argmax(logits_V).astype(jnp.int32)
  scaled_V = logits_V / jnp.maximum(temperature, 1e-6)
  order_V = jnp.argsort(-scaled_V)
  sorted_V = scaled_V[order_V]
  probs_V = jax.nn.softmax(sorted_V)
  # keep the smallest prefix whose mass reaches top_p (the most likely token always stays)
  keep_V = (jnp.cumsum(probs_V) - probs_V) < top_p
  choice = jax.random.categorical(key, jnp.where(keep_V, sorted_V, -jnp.inf))
  sampled = order_V[choice].astype(jnp.int32)
  return jnp.where(temperature > 0, sampled, greedy)


def _step(graphdef, state, tokens_BT, positions_BT, cache, key, temperature, top_p):
  """Runs tokens through the cache and samples the next token from the last position."""
  model = nnx.merge(graphdef, state)
  logits_BTV, cache = model.decode(tokens_BT, positions_BT, cache)
  next_token = sample_token(logits_BTV[0, -1], key, temperature, top_p)
  return next_token, logits_BTV[0, -1], cache


@functools.lru_cache(maxsize=None)
def _jitted_step():
  # donate the cache where the backend can reuse its buffer (not on CPU, where it only warns)
  donate = () if jax.default_backend() == "cpu" else (4,)
  return jax.jit(_step, static_argnums=0, donate_argnums=donate)


def generate_ids(model, prompt_ids, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0,
                 eos_id: int | tuple[int, ...] | None = special_tokens.STOP_IDS) -> list[int]:
  """New token ids after `prompt_ids` (not including the prompt); stops after a stop id
  (`eos_id`: one id or several; by default `<|endoftext|>` and `<|end|>`), which is then the last
  id returned. `eos_id=None` always returns `max_new_tokens` ids."""
  stop = set() if eos_id is None else {eos_id} if isinstance(eos_id, int) else set(eos_id)
  prompt_ids = [int(t) for t in prompt_ids]
  if not prompt_ids:
    raise ValueError("generate_ids needs a non-empty prompt (e.g. [special_tokens.BOS_ID])")
  if max_new_tokens <= 0:
    return []
  graphdef, state = nnx.split(model)
  P = len(prompt_ids)
  max_len = -(-(P + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
  cache = model_lib.init_cache(model.config, 1, max_len)
  key = jax.random.key(seed)
  temperature = jnp.float32(temperature)
  top_p = jnp.float32(top_p)
  tokens_BT = jnp.asarray([prompt_ids], jnp.int32)
  positions_BT = jnp.arange(P, dtype=jnp.int32)[None]
  step = _jitted_step()
  out = []
  for i in range(max_new_tokens):
    token, _, cache = step(graphdef, state, tokens_BT, positions_BT, cache,
                            jax.random.fold_in(key, i), temperature, top_p)
    token = int(token)
    out.append(token)
    if token in stop:
      break
    tokens_BT = jnp.full((1, 1), token, jnp.int32)
    positions_BT = jnp.full((1, 1), P + i, jnp.int32)
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="swahili100 generate", description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="<workdir>/checkpoints/<step>, or a workdir (its latest step)")
  parser.add_argument("--prompt", required=True)
  parser.add_argument("--max-new-tokens", type=int, default=100)
  parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
  parser.add_argument("--top-p", type=float, default=0.95)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tokenizer", default=None, help="override config.data.tokenizer")
  parser.add_argument("--chat", action="store_true",
                      help="send --prompt as a user turn of the chat format (aligned models) and "
                           "print only the assistant's reply")
  args = parser.parse_args(argv)

  import tokenizers

  from swahili100 import checkpoint
  config, model = checkpoint.load_model(args.checkpoint)
  tok_path = args.tokenizer or config.data.tokenizer
  try:
    tokenizer = tokenizers.Tokenizer.from_file(str(tok_path))
  except Exception as e:  # noqa: BLE001 (tokenizers raises a bare Exception)
    print(f"generate: cannot load the tokenizer {tok_path!r} (config.data.tokenizer; "
          f"override with --tokenizer): {e}", file=sys.stderr)
    return 2
  if args.chat:
    from swahili100.align import chat  # noqa: PLC0415
    text = chat.render([{"role": "user", "content": args.prompt}], add_generation_prompt=True)
    prompt_ids = tokenizer.encode(text).ids
  else:
    prompt_ids = tokenizer.encode(args.prompt).ids
  if not prompt_ids:
    print("generate: the prompt encodes to no tokens; give a non-empty --prompt", file=sys.stderr)
    return 2
  new_ids = generate_ids(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_p,
                         args.seed)
  if new_ids and new_ids[-1] in special_tokens.STOP_IDS:
    new_ids = new_ids[:-1]
  print(tokenizer.decode(new_ids) if args.chat else tokenizer.decode(prompt_ids + new_ids))
  return 0


if __name__ == "__main__":
  sys.exit(main())
