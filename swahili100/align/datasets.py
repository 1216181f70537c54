"""Alignment data: chat examples (SFT) and preference pairs (DPO) as Grain datasets.

SFT file: one `{"messages": [{"role", "content"}, ...]}` per line; DPO file: one
`{"prompt": [messages], "chosen": str, "rejected": str}` per line. Each example is one padded row
(`chat.to_rows`); the dataset shuffles them with `config.data.shuffle_seed`, reshuffles every
epoch, gives each process its rows of every global batch, and the engine checkpoints its
position, so a resumed run sees exactly the next batches.
"""

import json

import grain

from swahili100 import fs, loader
from swahili100.align import chat


class AlignDataError(ValueError):
  """An alignment file that cannot be used; the message names the file, the line and the fix."""


def read_jsonl(path: str, keys: tuple[str, ...]) -> list[dict]:
  """The examples of `path`, each checked to have `keys`."""
  if not fs.exists(path):
    raise AlignDataError(f"--data {path} not found")
  rows = []
  for n, line in enumerate(fs.read_text(path).splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise AlignDataError(f"{path}:{n}: not valid JSON ({e}); fix or remove that line") from e
    missing = [k for k in keys if k not in row]
    if missing:
      raise AlignDataError(f"{path}:{n}: missing {missing}; each line needs {list(keys)}")
    rows.append(row)
  if not rows:
    raise AlignDataError(f"{path} holds no examples")
  return rows


def _split_rows(rows: dict) -> list[dict]:
  """{k: [N, T]} -> N examples {k: [T]}."""
  n = len(next(iter(rows.values())))
  return [{k: v[i] for k, v in rows.items()} for i in range(n)]


def sft_examples(tokenizer, path: str, seq_len: int) -> list[dict]:
  rows = read_jsonl(path, ("messages",))
  try:
    return _split_rows(chat.to_rows([chat.encode(tokenizer, r["messages"]) for r in rows],
                                    seq_len))
  except ValueError as e:
    raise AlignDataError(f"{path}: {e}") from e


def dpo_examples(tokenizer, path: str, seq_len: int) -> list[dict]:
  rows = read_jsonl(path, ("prompt", "chosen", "rejected"))
  pairs = {"chosen": [], "rejected": []}
  for r in rows:
    for side in pairs:
      pairs[side].append(chat.encode(tokenizer,
                                     r["prompt"] + [{"role": "assistant", "content": r[side]}]))
  try:
    chosen, rejected = (_split_rows(chat.to_rows(pairs[s], seq_len)) for s in pairs)
  except ValueError as e:
    raise AlignDataError(f"{path}: {e}") from e
  return [{"chosen": c, "rejected": r} for c, r in zip(chosen, rejected)]


def dataset(examples: list[dict], d, process_index: int = 0,
            process_count: int = 1) -> grain.IterDataset:
  """The infinite, shuffled batches of this process (`d` = config.data): its rows of every
  global batch, the same for any process and worker count (`loader.rounds`)."""
  ds = grain.MapDataset.source(examples).seed(d.shuffle_seed).shuffle().repeat(None)
  ds = loader.rounds(ds, d.batch_size, process_index, process_count).map(loader.Stack())
  return loader.prefetch(loader.workers(ds.to_iter_dataset(grain.ReadOptions(num_threads=0)), d), d)
