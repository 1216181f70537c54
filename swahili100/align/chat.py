"""The chat format, shared with the Hugging Face export's `chat_template`:

    <|user|>\nHabari?<|end|>\n<|assistant|>\nNzuri.<|end|>\n

Each message is `<|role|>` newline content `<|end|>` newline; a prompt for generation ends with
`<|assistant|>` newline. Only assistant content and its closing `<|end|>` are trained.
"""

import numpy as np

from swahili100 import special_tokens

ROLES = {"system": special_tokens.SYSTEM, "user": special_tokens.USER,
         "assistant": special_tokens.ASSISTANT}


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
  """The conversation as text, exactly as the exported `chat_template` renders it."""
  text = "".join(f"{ROLES[m['role']]}\n{m['content']}{special_tokens.END_OF_TURN}\n"
                 for m in messages)
  return text + (f"{special_tokens.ASSISTANT}\n" if add_generation_prompt else "")


def encode(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
  """(ids, train mask): mask is 1 on assistant content and its `<|end|>`, 0 elsewhere."""
  ids, mask = [], []
  for m in messages:
    if m["role"] not in ROLES:
      raise ValueError(f"unknown chat role {m['role']!r}; expected one of {sorted(ROLES)}")
    head = tokenizer.encode(f"{ROLES[m['role']]}\n").ids
    body = tokenizer.encode(f"{m['content']}{special_tokens.END_OF_TURN}\n").ids
    ids += head + body
    mask += [0] * len(head) + [int(m["role"] == "assistant")] * len(body)
  return ids, mask


def to_rows(examples: list[tuple[list[int], list[int]]], seq_len: int) -> dict:
  """One example per row, padded: the batch dict of `swahili100.train.train_step`.

  `mask` marks targets (the next token) that are trained: target t+1 is trained when token t+1
  is an assistant token.
  """
  n = len(examples)
  out = {k: np.zeros((n, seq_len), np.int32)
         for k in ("inputs", "targets", "segment_ids", "positions", "mask")}
  for i, (ids, mask) in enumerate(examples):
    if len(ids) > seq_len + 1:
      raise ValueError(f"example {i} has {len(ids)} tokens; raise --seq-len above {len(ids) - 1}")
    ids, mask = np.asarray(ids), np.asarray(mask)
    t = len(ids) - 1
    out["inputs"][i, :t], out["targets"][i, :t] = ids[:-1], ids[1:]
    out["segment_ids"][i, :t], out["positions"][i, :t] = 1, np.arange(t)
    out["mask"][i, :t] = mask[1:]
  return out
