"""Builds the embedded sample corpus `data_pipeline/sample/` (original Swahili written for this project).

Command:  python -m data_pipeline.make_sample            (rewrites data_pipeline/sample/*.jsonl[.gz])

Deterministic: a fixed seed, the templates and word lists of sample_text.json, gzip with mtime=0,
binary writes.
Clean documents come from hand-written texts plus a template generator over ten registers
(news, story, health, farming, dialogue, education, weather, sport, notices, recipes).
Planted defects carry `"planted": "<kind>"` (also inside the bytes of lines that are not valid
JSON or UTF-8) so that tests and the README can count them; see `PLANTED` for the counts.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path

import ftfy.bad_codecs  # noqa: F401  registers sloppy-windows-1252

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SHARDS = ("sample-00000.jsonl", "sample-00001.jsonl.gz", "sample-00002.jsonl", "sample-00003.jsonl.gz")
SEED = 20261124
# The word lists, sentence templates per register ([openers, body]), hand-written documents,
# foreign-language texts and boilerplate lines: text, so it lives in a data file.
TEXT = json.loads((Path(__file__).resolve().parent / "sample_text.json").read_text("utf-8"))
(NAMES, PLACES, DAYS, MONTHS, CROPS, ANIMALS, JOBS, OFFICIALS, TEAMS, SUBJECTS, DISEASES, DISHES,
 SPICES, WEATHER, REGISTERS, HANDWRITTEN, FOREIGN, BOILERPLATE) = (TEXT[k] for k in (
    "names", "places", "days", "months", "crops", "animals", "jobs", "officials", "teams",
    "subjects", "diseases", "dishes", "spices", "weather", "registers", "handwritten", "foreign",
    "boilerplate"))


def _fill(t: str, r: random.Random) -> str:
  """Replaces {slot} markers with random words; each occurrence draws independently."""
  pools = {"name": NAMES, "place": PLACES, "day": DAYS, "month": MONTHS, "crop": CROPS,
           "animal": ANIMALS, "job": JOBS, "official": OFFICIALS, "team": TEAMS, "subject": SUBJECTS,
           "disease": DISEASES, "dish": DISHES, "spice": SPICES, "weather": WEATHER}
  out = []
  for i, part in enumerate(t.split("{")):
    if i == 0:
      out.append(part)
      continue
    key, rest = part.split("}", 1)
    if key == "n":
      val = str(r.randint(2, 95))
    elif key == "big":
      val = f"{r.randint(1, 99) * 1000:,}"
    elif key == "year":
      val = str(r.randint(2015, 2026))
    elif key == "date":
      val = f"{r.randint(1, 28)} {r.choice(MONTHS)}"
    elif key == "pct":
      val = str(r.randint(5, 90))
    elif key == "temp":
      val = str(r.randint(14, 36))
    else:
      val = r.choice(pools[key])
    out.append(val + rest)
  return "".join(out)


PLANTED = {  # kind -> how many documents/lines carry it
    "exact_duplicate": 8, "near_duplicate": 8, "language_english": 4, "language_french": 3,
    "language_somali": 3, "language_kinyarwanda": 3, "boilerplate": 10, "mojibake": 6, "html": 6,
    "pii": 6, "apostrophe_variant": 6, "empty": 3, "tiny": 4, "invalid_utf8": 2, "malformed_json": 2,
    "missing_text": 2,
}
NUM_GENERATED = 330


def generated_doc(register: str, r: random.Random) -> str:
  openers, body = REGISTERS[register]
  k = min(len(body), r.randint(7, 13))
  sents = [_fill(r.choice(openers), r)] + [_fill(t, r) for t in r.sample(body, k)]
  if register == "mazungumzo":
    return "\n".join(sents)
  return " ".join(sents)


def clean_docs(r: random.Random) -> list[dict]:
  docs = [{"id": f"sample-{reg}-hw{i:02d}", "text": t, "source": "sample", "register": reg}
          for i, (reg, t) in enumerate(HANDWRITTEN)]
  regs = sorted(REGISTERS)
  for i in range(NUM_GENERATED):
    reg = regs[i % len(regs)]
    docs.append({"id": f"sample-{reg}-{i:04d}", "text": generated_doc(reg, r), "source": "sample",
                 "register": reg})
  return docs


def _planted(kind: str, i: int, text, **extra) -> dict:
  d = {"id": f"sample-planted-{kind}-{i}", "source": "sample", "planted": kind, **extra}
  if text is not None:
    d["text"] = text
  return d


def planted_docs(clean: list[dict], r: random.Random) -> tuple[list[dict], list[bytes]]:
  """(planted JSON documents, raw planted lines that are not valid JSON or UTF-8)."""
  out = []
  pool = [d for d in clean if d["register"] != "mazungumzo"]
  for i, d in enumerate(r.sample(pool, PLANTED["exact_duplicate"])):
    out.append(_planted("exact_duplicate", i, d["text"], duplicate_of=d["id"]))
  for i, d in enumerate(r.sample(pool, PLANTED["near_duplicate"])):
    words = d["text"].split(" ")
    edits = [(j, r.choice(["pia", "sana", "kabisa", "tena"])) for j in r.sample(range(len(words)), 3)]
    j, w = edits[0]   # one of the last 3 words changed: 5-gram Jaccard >= 0.93 (same RNG draws)
    j = len(words) - 1 - j % 3
    words[j] = w if words[j] != w else ("pia" if w != "pia" else "sana")
    out.append(_planted("near_duplicate", i, " ".join(words), duplicate_of=d["id"]))
  for lang, texts in FOREIGN.items():
    for i, t in enumerate(texts):
      out.append(_planted(f"language_{lang}", i, t))
  for i in range(PLANTED["boilerplate"]):
    d = generated_doc(r.choice(sorted(REGISTERS)), r)
    lines = r.sample(BOILERPLATE, 2)
    out.append(_planted("boilerplate", i, f"{lines[0]}\n{d}\n{lines[1]}\nSoma zaidi",
                        boilerplate_lines=[lines[0], lines[1], "Soma zaidi"]))
  for i in range(PLANTED["mojibake"]):
    d = generated_doc("habari", r) + " Mzee alisema: “Tumechoka kusubiri—tunataka maji sasa.” Café ya mjini ilifungwa."
    bad = d.encode("utf-8").decode("sloppy-windows-1252")   # UTF-8 read as Windows-1252
    out.append(_planted("mojibake", i, bad))
  for i in range(PLANTED["html"]):
    sents = generated_doc("elimu", r).split(". ")
    body = "".join(f"<p>{s}.</p>\n" for s in sents)
    out.append(_planted("html", i, f"<div class=\"makala\">\n<h2>Habari za elimu</h2>\n{body}"
                        "<br/>Kwa maelezo zaidi&nbsp;bofya <a href=\"/elimu\">hapa</a> &amp; ujiunge.</div>"))
  for i in range(PLANTED["pii"]):
    name = r.choice(NAMES).lower()
    phone = r.choice(["+255 7{0}{1} {2}{3}{4} {5}{6}{7}", "+254 7{0}{1} {2}{3}{4}{5}{6}{7}",
                      "0{0}{1}{2}-{3}{4}{5}-{6}{7}"]).format(*[r.randint(0, 9) for _ in range(8)])
    d = generated_doc("tangazo", r)
    out.append(_planted("pii", i, f"{d} Kwa maswali piga simu {phone} au andika barua pepe kwa "
                        f"{name}.{r.randint(1, 99)}@mfano.co.tz.", pii=[phone]))
  variants = ["’", "ʼ", "`"]
  for i in range(PLANTED["apostrophe_variant"]):
    v = variants[i % 3]
    d = generated_doc("kilimo", r) + " Wafugaji wa ng'ombe walivuka ng'ambo ya mto wakati wa ng'ang'ania."
    out.append(_planted("apostrophe_variant", i, d.replace("'", v), variant=v))
  for i, t in enumerate(["", "   ", "\n\n"]):
    out.append(_planted("empty", i, t))
  for i, t in enumerate(["Karibu.", "Habari yako?", "Asante sana", "Soma zaidi"]):
    out.append(_planted("tiny", i, t))
  for i in range(PLANTED["missing_text"]):
    out.append(_planted("missing_text", i, None, title="Makala bila maandishi"))
  raw = []
  for i in range(PLANTED["invalid_utf8"]):
    raw.append(b'{"id": "sample-planted-invalid_utf8-%d", "source": "sample", "planted": "invalid_utf8", '
               b'"text": "Habari za mji wa Tanga \xff\xfe na \xc3\x28 pwani yake nzuri."}' % i)
  for i in range(PLANTED["malformed_json"]):
    raw.append(b'{"id": "sample-planted-malformed_json-%d", "source": "sample", "planted": "malformed_json", '
               b'"text": "Mstari huu umekatika katikati' % i)
  return out, raw


def build() -> dict[str, bytes]:
  """Shard name -> exact bytes of each shard (deterministic)."""
  r = random.Random(SEED)
  clean = clean_docs(r)
  planted, raw = planted_docs(clean, r)
  lines = [json.dumps(d, ensure_ascii=False).encode("utf-8") for d in clean + planted] + raw
  r.shuffle(lines)
  out = {}
  for k, name in enumerate(SHARDS):
    body = b"".join(line + b"\n" for line in lines[k::len(SHARDS)])
    if name.endswith(".gz"):
      buf = io.BytesIO()
      with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(body)
      body = buf.getvalue()
    out[name] = body
  return out


def main(argv: list[str] | None = None) -> int:
  SAMPLE_DIR.mkdir(exist_ok=True)
  for name, data in build().items():
    (SAMPLE_DIR / name).write_bytes(data)
    print(f"wrote {SAMPLE_DIR / name} ({len(data)} bytes)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
