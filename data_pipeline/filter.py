"""Phase 4: language ID and quality filtering.

  swahili100 filter --input data/deduped --output data/filtered [--workers 2]
      [--lang-threshold 0.5] [--min-words 50] [--config.filter.dup_line_frac=0.35 ...]

Rules, in order; a document is dropped by the first that fails, under that rule's name (the
`removed/` record carries the measured value and the threshold). Thresholds: `configs/pipeline.py`
`filter` section (FineWeb-2 `swh_Latn` values where FineWeb-2 sets one, Gopher's otherwise).
  lang             share of the text CLD2 attributes to Swahili < lang_threshold (data_pipeline/langid.py)
  too_few_words / too_many_words       Gopher word-count bounds (whitespace words)
  mean_word_len    mean word length outside [min_mean_word_len, max_mean_word_len]
  symbol_word_ratio ('#', '...', '…') per word > max_symbol_word_ratio
  bullet_lines     share of lines starting with a bullet > max_bullet_lines
  ellipsis_lines   share of lines ending with an ellipsis > max_ellipsis_lines
  alpha_words      share of words with a letter < min_alpha_words
  stop_words       occurrences of the Swahili stop words < min_stop_words
  dup_line_frac / dup_line_char_frac   repeated lines (count / characters)
  top_{n}gram_frac characters covered by the most frequent word n-gram, n = 2..4
  dup_{n}gram_frac characters in repeated word n-grams, n = 5..10
  punct_line_frac  share of lines ending in terminal punctuation < min_punct_line_frac
  short_line_frac  share of lines shorter than short_line_chars > max_short_line_frac
  newline_ratio    newlines per word > max_newline_ratio
"""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np

from data_pipeline import langid, shards

_STRIP = "\"'“”‘’«»()[]{}<>.,;:!?…-–—*•·/\\|#@%&+=_~^`"
_BULLETS = ("•", "●", "▪", "‣", "·", "-", "*", "–", "—", "◦", "○")
_TERMINAL = (".", "!", "?", "…", '"', "'", "”", "’", ")", "»", ":", ";")


def _dups(items: list[str]) -> tuple[int, int]:
  """(number of items seen before, their characters)."""
  seen, n, chars = set(), 0, 0
  for x in items:
    if x in seen:
      n += 1
      chars += len(x)
    else:
      seen.add(x)
  return n, chars


_MUL = np.uint64(0x9E3779B97F4A7C15)


class NGrams:
  """Word n-grams of one document as 64-bit keys (numpy), with their character lengths."""

  def __init__(self, words: list[str]):
    index: dict[str, int] = {}
    self.ids = np.fromiter((index.setdefault(w, len(index) + 1) for w in words), np.uint64,
                           len(words))
    self.cum = np.concatenate([[0], np.cumsum([len(w) for w in words])])

  def keys(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(key per window, characters of the window joined by spaces)."""
    m = len(self.ids) - n + 1
    if m <= 0:
      return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    k = self.ids[:m].copy()
    with np.errstate(over="ignore"):
      for j in range(1, n):
        k = k * _MUL + self.ids[j:j + m]
    return k, self.cum[n:n + m] - self.cum[:m] + (n - 1)

  def top_chars(self, n: int) -> int:
    """Characters of the most frequent n-gram times its count (Gopher); 0 if none repeats."""
    k, chars = self.keys(n)
    if len(k) == 0:
      return 0
    _, first, counts = np.unique(k, return_index=True, return_counts=True)
    top = counts.max()
    if top < 2:
      return 0
    at = first[counts == top].min()   # ties: the n-gram seen first
    return int(chars[at]) * int(top)

  def dup_chars(self, n: int) -> int:
    """Characters in n-grams repeating an earlier one, scanning without overlap (Gopher)."""
    k, chars = self.keys(n)
    if len(k) == 0 or len(np.unique(k)) == len(k):
      return 0
    seen, total, i, keys, lens = set(), 0, 0, k.tolist(), chars.tolist()
    while i < len(keys):
      if keys[i] in seen:
        total += lens[i]
        i += n
      else:
        seen.add(keys[i])
        i += 1
    return total


class Filter:
  """Per-document rule chain; picklable (the language model is rebuilt in each worker)."""

  def __init__(self, cfg):
    # plain values: ConfigDict attribute access is slow in the per-document loop
    self.cfg = cfg = types.SimpleNamespace(**(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg))
    self.detector = langid.Detector(cfg.lang_detector, cfg.lang)
    self.stop_words = frozenset(cfg.stop_words)
    self.top = sorted((int(n), float(v)) for n, v in dict(cfg.top_ngram_frac).items())
    self.dup = sorted((int(n), float(v)) for n, v in dict(cfg.dup_ngram_frac).items())

  def check(self, text: str) -> tuple[str, dict] | None:
    """(rule name, {value, threshold}) of the first failed rule, or None to keep."""
    c = self.cfg
    top_lang, share = self.detector(text)
    if share < c.lang_threshold:
      return "lang", {"value": round(share, 3), "threshold": c.lang_threshold, "top": top_lang}
    tokens = text.split()
    if len(tokens) < c.min_words:
      return "too_few_words", {"value": len(tokens), "threshold": c.min_words}
    if len(tokens) > c.max_words:
      return "too_many_words", {"value": len(tokens), "threshold": c.max_words}
    n = max(len(tokens), 1)
    words = [w for w in (t.strip(_STRIP) for t in tokens) if w]
    mean_len = sum(map(len, words)) / max(len(words), 1)
    if not c.min_mean_word_len <= mean_len <= c.max_mean_word_len:
      return "mean_word_len", {"value": round(mean_len, 3),
                               "threshold": [c.min_mean_word_len, c.max_mean_word_len]}
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > c.max_symbol_word_ratio:
      return "symbol_word_ratio", {"value": round(symbols / n, 3), "threshold": c.max_symbol_word_ratio}
    lines = [line for line in (x.strip() for x in text.split("\n")) if line]
    nl = max(len(lines), 1)
    frac = sum(line.startswith(_BULLETS) for line in lines) / nl
    if frac > c.max_bullet_lines:
      return "bullet_lines", {"value": round(frac, 3), "threshold": c.max_bullet_lines}
    frac = sum(line.endswith(("...", "…")) for line in lines) / nl
    if frac > c.max_ellipsis_lines:
      return "ellipsis_lines", {"value": round(frac, 3), "threshold": c.max_ellipsis_lines}
    frac = sum(any(ch.isalpha() for ch in t) for t in tokens) / n
    if frac < c.min_alpha_words:
      return "alpha_words", {"value": round(frac, 3), "threshold": c.min_alpha_words}
    lower = [w.lower() for w in words]
    stops = sum(w in self.stop_words for w in lower)
    if stops < c.min_stop_words:
      return "stop_words", {"value": stops, "threshold": c.min_stop_words}
    ndup, dup_chars = _dups(lines)
    if ndup / nl > c.dup_line_frac:
      return "dup_line_frac", {"value": round(ndup / nl, 3), "threshold": c.dup_line_frac}
    chars = max(len(text), 1)
    if dup_chars / chars > c.dup_line_char_frac:
      return "dup_line_char_frac", {"value": round(dup_chars / chars, 3),
                                    "threshold": c.dup_line_char_frac}
    grams = NGrams(lower)
    for k, limit in self.top:
      frac = grams.top_chars(k) / chars
      if frac > limit:
        return f"top_{k}gram_frac", {"value": round(frac, 3), "threshold": limit}
    for k, limit in self.dup:
      frac = grams.dup_chars(k) / chars
      if frac > limit:
        return f"dup_{k}gram_frac", {"value": round(frac, 3), "threshold": limit}
    frac = sum(line.endswith(_TERMINAL) for line in lines) / nl
    if frac < c.min_punct_line_frac:
      return "punct_line_frac", {"value": round(frac, 3), "threshold": c.min_punct_line_frac}
    frac = sum(len(line) < c.short_line_chars for line in lines) / nl
    if frac > c.max_short_line_frac:
      return "short_line_frac", {"value": round(frac, 3), "threshold": c.max_short_line_frac}
    ratio = text.count("\n") / n
    if ratio > c.max_newline_ratio:
      return "newline_ratio", {"value": round(ratio, 3), "threshold": c.max_newline_ratio}
    return None

  def __call__(self, doc: dict) -> dict | shards.Drop:
    failed = self.check(doc["text"])
    if failed is not None:
      return shards.Drop(*failed)
    return doc


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  f = cfg.filter
  p.add_argument("--lang-threshold", type=float, default=None,
                 help=f"min share of Swahili in a document (default {f.lang_threshold})")
  p.add_argument("--lang-detector", choices=langid.DETECTORS, default=None,
                 help=f"language-ID model (default {f.lang_detector})")
  p.add_argument("--min-words", type=int, default=None, help=f"default {f.min_words}")
  p.add_argument("--min-stop-words", type=int, default=None, help=f"default {f.min_stop_words}")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "filter", __doc__, "filter", _flags)
  f, r = cfg.filter, cfg.runner
  stats = shards.run_phase("filter", args.input, args.output, Filter(f), workers=r.workers,
                           max_line_bytes=r.max_line_bytes, start_method=r.start_method,
                           config=f.to_dict())
  print(shards.summary(stats), file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
