"""Vocabulary extension: append learned Swahili merges to a base byte-level BPE (an open model's).

Every base token keeps its id, and the new merges rank below all base merges, so BPE applies them
only where no base merge applies any more: text encodes exactly as before unless a new token
spans it (`tests/test_extend_vocab.py`). Candidates are the merges the project's BPE trainer
learned on Swahili text (with the base's normalizer and pre-tokenizer, so its pieces are the
base's pieces), in the trainer's rank order. A candidate joins only if the base vocabulary lacks
it and the extended tokenizer so far splits it into exactly two pieces: that pair is its merge,
which therefore fires on the base's own segmentation (a learned pair the base never produces
would be a token no text reaches).
"""

from __future__ import annotations

import json

# BPE model options whose behaviour the appended merges would not respect.
_UNSUPPORTED = {"continuing_subword_prefix": None, "end_of_word_suffix": None,
                "byte_fallback": False, "dropout": None}


class ExtendError(ValueError):
  """A base tokenizer this extension cannot extend exactly."""


def check_base(base: dict, path: str) -> None:
  """Refuses what is not a byte-level BPE, naming the field."""
  model = base.get("model") or {}
  if model.get("type") != "BPE":
    raise ExtendError(f"{path}: model.type is {model.get('type')!r}; --extend needs a byte-level "
                      "BPE tokenizer (Llama 3, Qwen, SmolLM2, GPT-2, this project's)")
  for key, ok in _UNSUPPORTED.items():
    if model.get(key, ok) != ok:
      raise ExtendError(f"{path}: model.{key} is {model.get(key)!r}; appended merges would not "
                        f"respect it (only {ok!r} is supported)")
  if "ByteLevel" not in json.dumps(base.get("pre_tokenizer")):
    raise ExtendError(f"{path}: the pre_tokenizer has no ByteLevel step "
                      f"({json.dumps(base.get('pre_tokenizer'))[:80]}); --extend needs a "
                      "byte-level BPE (SentencePiece-style tokenizers are not supported)")


def _pairs(merges: list) -> list[tuple[str, str]]:
  """Merges as pairs, from either layout `tokenizers` writes ("a b" strings or [a, b] lists)."""
  return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def _pieces(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
  """BPE of one pre-tokenized piece under `ranks`: the lowest-ranked pair merges first, the
  leftmost occurrence first (the order `tokenizers` applies them in)."""
  symbols = list(word)
  while len(symbols) > 1:
    rank, i = min((ranks.get(p, len(ranks)), i) for i, p in enumerate(zip(symbols, symbols[1:])))
    if rank == len(ranks):
      break
    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
  return symbols


def next_id(base: dict) -> int:
  """The first id no base token (model vocabulary or added token) uses."""
  ids = list(base["model"]["vocab"].values()) + [t["id"] for t in base.get("added_tokens", [])]
  return max(ids) + 1


def extend(base: dict, learned: list, add: int) -> tuple[dict, dict]:
  """(extended tokenizer JSON, counts) with up to `add` of the `learned` merges appended."""
  vocab = dict(base["model"]["vocab"])
  pairs = _pairs(base["model"]["merges"])
  ranks = {p: r for r, p in enumerate(pairs)}
  known = set(vocab) | {t["content"] for t in base.get("added_tokens", [])}
  new: list[tuple[str, str]] = []
  skipped = 0
  for a, b in _pairs(learned):
    if len(new) >= add:
      break
    token = a + b
    if token in known:
      continue
    split = _pieces(token, ranks)
    if len(split) != 2:     # its halves are not tokens of the extended vocabulary (yet)
      skipped += 1
      continue
    ranks[tuple(split)] = len(ranks)
    new.append(tuple(split))
    known.add(token)
  start = next_id(base)
  out = json.loads(json.dumps(base))
  model = out["model"]
  model["vocab"] = {**vocab, **{a + b: start + k for k, (a, b) in enumerate(new)}}
  as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
  model["merges"] = list(model["merges"]) + [f"{a} {b}" if as_strings else [a, b] for a, b in new]
  return out, {"requested": add, "added": len(new), "skipped_unreachable": skipped,
               "first_new_id": start, "learned_merges": len(learned)}
