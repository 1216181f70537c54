"""Phase 2: normalize and clean text shards.

  swahili100 clean --input data/raw --output data/cleaned [--min-chars 50] [--workers 2]
      [--config.clean.<key>=<value> ...]

Per document, in order: ftfy mojibake repair + NFC; HTML tags/entities out; control and
zero-width characters out; Swahili apostrophe unification (ng’ombe, ngʼombe, ng`ombe -> ng'ombe);
boilerplate lines out (share/cookie/"Soma zaidi"/"Shiriki"/"Jiunge nasi"...); e-mail addresses
-> <EMAIL> and phone numbers (+255/+254/00255 and local 07xx/06xx) -> <PHONE>; whitespace
collapsed; documents shorter than --min-chars dropped as `too_short`.
"""

from __future__ import annotations

import argparse
import functools
import html
import re
import sys
import unicodedata

import ftfy
from ftfy import badness, chardata

from data_pipeline import shards

_SCRIPT = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"</?(?!(?:EMAIL|PHONE)>)[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]{0,500})?/?>|<!--.*?-->",
                  re.S)   # our own <EMAIL>/<PHONE> masks survive a second clean
# control chars except \t \n, plus format chars (zero-width space/joiners, BOM, soft hyphen, bidi)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e"
                      r"\u2060-\u2064\ufeff]")
_APOSTROPHE = re.compile(r"(?<=[^\W\d_])[\u2019\u02bc\u2018`\u00b4\u02b9\u2032](?=[^\W\d_])")
_APOSTROPHE_CHARS = re.compile(r"[\u2019\u02bc\u2018`\u00b4\u02b9\u2032]")   # cheap pre-check
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?=[+0])(?:"   # the lookahead rejects most positions at once
    r"(?:\+|00)\s?25[45][\s.-]?\(?0?\)?[\s.-]?\d{2,3}[\s.-]?\d{3}[\s.-]?\d{3,4}"   # +255 / +254
    r"|\+\d{1,3}[\s.-]?\d{2,4}[\s.-]?\d{3,4}[\s.-]?\d{3,4}"                         # other intl
    r"|0[67]\d{2}[\s.-]?\d{3}[\s.-]?\d{3}"                                          # local 07xx
    r")(?!\w)")
# Boilerplate lines. A line is dropped only when it is *nothing but* navigation/share chrome, a
# "Soma pia: <headline>" link line, a copyright line, or a cookie notice, so that prose starting
# with the same words ("Soma zaidi kuhusu historia ya ...", "Ingia ndani ...") is kept.
_NAV = (r"soma (?:zaidi|pia|habari (?:zaidi|nyingine))|habari (?:zaidi|zinazohusiana)|"
        r"makala (?:zinazohusiana|nyingine)|endelea kusoma|(?:bofya|bonyeza) hapa(?: kusoma zaidi)?|"
        r"read more|related(?: articles| posts| news)?|iliyotangulia|inayofuata|previous|next|"
        r"toa maoni|acha maoni|maoni\s*\(\d+\)|tangaza nasi|wasiliana nasi|kuhusu sisi|"
        r"jiunge nasi|tufuate(?: kwenye| katika)?|tufuatilie(?: kwenye| katika)?|jisajili|subscribe|"
        r"log ?in|ingia|sign (?:up|in)|share(?: this| on)?|shiriki(?: habari hii| makala hii| hii)?|"
        r"tweet|print|chapisha")
_SOCIAL = (r"facebook|twitter|x|whatsapp|instagram|youtube|telegram|pinterest|linkedin|tiktok|"
           r"e-?mail|barua pepe")
_BOILERPLATE = re.compile(
    rf"^\W*(?:(?:{_NAV})\W*(?:(?:{_SOCIAL})\b\W*)*|(?:(?:{_SOCIAL})\b\W*)+)$"        # chrome only
    rf"|^\W*(?:soma (?:zaidi|pia)|habari zinazohusiana|related|read more|tazama pia)"
    r"\s*[:»>|–-]+\s*\S.{0,120}$"                                                   # link lines
    r"|^\W*jiunge na (?:jarida|kundi|chaneli|channel)\b.{0,80}$"                     # newsletter
    r"|^(?=.{0,120}$).*(?:©|\(c\) ?\d{4}|haki zote zimehifadhiwa|hakimiliki|all rights reserved)"
    r"|^(?=.{0,300}$)(?=.*\b(?:cookies?|vidakuzi)\b)"
    r".*\b(?:tovuti|website|site|kubali|accept|sera|policy|faragha|privacy|kuendelea|continu\w*)\b",
    re.I)
_MAX_BOILERPLATE_LINE = 300
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]{2,}|"
                     r"[\t\u00a0\u2000-\u200a\u202f\u205f\u3000]")   # single spaces stay
_BLANKS = re.compile(r"\n{3,}")
# What ftfy.fix_text may change besides mojibake, from its own tables (fixes.py's fixers).
_FTFY_FIXES = re.compile("[" + "".join(
    re.escape(chr(c)) for c in sorted({*chardata.LIGATURES, *chardata.WIDTH_MAP,
                                       *chardata.CONTROL_CHARS, *range(0x80, 0xA0),
                                       0x0D, 0x1B, 0x2028, 0x2029})) + "\ud800-\udfff]")
_FTFY_BAD_LINE = re.compile(badness.BADNESS_RE.pattern, badness.BADNESS_RE.flags | re.MULTILINE)
_FTFY_SEGMENT = ftfy.TextFixerConfig().max_decode_length   # ftfy splits longer lines


def _ftfy_would_keep(text: str) -> bool:
  """True when `ftfy.fix_text` (our settings) provably returns `text` unchanged, checked with
  ftfy's own tables: no character one of its fixers maps (C1 controls, ligatures, full-width
  forms, line breaks, surrogates, escapes, controls), already NFC, and no line its badness test
  flags (the one search runs with `^` at every line start, as ftfy tests line by line; a match
  across lines only sends the document to ftfy). Most documents pass, and skip ftfy's passes."""
  return (len(text) <= _FTFY_SEGMENT and not _FTFY_FIXES.search(text)
          and unicodedata.is_normalized("NFC", text) and not _FTFY_BAD_LINE.search(text))


def clean_text(text: str, cfg) -> str:
  # mojibake needs non-ASCII: ASCII skips ftfy, and so does text it would leave as it is
  if cfg.fix_mojibake and not text.isascii() and not _ftfy_would_keep(text):
    text = ftfy.fix_text(text, normalization="NFC", unescape_html=False, uncurl_quotes=False)
  if cfg.strip_html and "<" in text:
    text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
  if cfg.strip_html and "&" in text:
    text = html.unescape(text)
  text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
  text = _CONTROL.sub("", text)
  if cfg.unify_apostrophes and _APOSTROPHE_CHARS.search(text):
    text = _APOSTROPHE.sub("'", text)
  lines = []
  for line in text.split("\n"):
    if "  " in line or "\t" in line or not line.isascii():   # else nothing for _SPACES to do
      line = _SPACES.sub(" ", line)
    line = line.strip()
    if cfg.drop_boilerplate and len(line) <= _MAX_BOILERPLATE_LINE and _BOILERPLATE.match(line):
      continue
    lines.append(line)
  text = "\n".join(lines)
  if "\n\n\n" in text:
    text = _BLANKS.sub("\n\n", text)
  text = text.strip()
  if cfg.mask_pii:
    if "@" in text:
      text = _EMAIL.sub("<EMAIL>", text)
    text = _PHONE.sub("<PHONE>", text)
  return text


def clean_doc(doc: dict, cfg) -> dict | shards.Drop:
  text = clean_text(doc["text"], cfg)
  if len(text) < cfg.min_chars:
    return shards.Drop("too_short", {"chars": len(text)})
  doc["text"] = text
  return doc


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  p.add_argument("--min-chars", type=int, default=None, help=f"default {cfg.clean.min_chars}")
  p.add_argument("--no-mask-pii", dest="mask_pii", action="store_false", default=None,
                 help="keep e-mails and phone numbers")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "clean", __doc__, "clean", _flags)
  r = cfg.runner
  fn = functools.partial(clean_doc, cfg=cfg.clean)
  stats = shards.run_phase("clean", args.input, args.output, fn, workers=r.workers,
                           max_line_bytes=r.max_line_bytes, start_method=r.start_method,
                           config=cfg.clean.to_dict())
  print(shards.summary(stats), file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
