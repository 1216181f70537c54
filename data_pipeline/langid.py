"""Language identification for the filter: offline detectors and the evaluation that chose one.

    python -m data_pipeline.langid --evaluate        (table of precision/recall/speed per detector)

`Detector(name)` wraps one offline model that ships inside its pip package and returns
(top language, confidence that the text is the target language). The filter uses `pycld2`
(CLD2; its confidence is the fraction of the text's bytes it attributes to Swahili, which suits
code-switched text): best precision, 9x faster than py3langid and 57x than lingua; see
docs/RESEARCH.md (2026-11-24) for the table.
A document is judged on its first `max_chars` characters (10,000). Detectors are built lazily and
not pickled, so a filter function holding one can go to workers.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import time
from pathlib import Path

from lingua import Language, LanguageDetectorBuilder
from py3langid import langid

from data_pipeline import make_sample

# Languages a Swahili crawl mixes with (lingua names). Kinyarwanda/Kirundi, Kikuyu, Lingala and
# Chichewa have no lingua model; the evaluation below measures how they are scored.
LINGUA_LANGUAGES = ("SWAHILI", "ENGLISH", "FRENCH", "SOMALI", "GANDA", "ZULU", "XHOSA", "SHONA",
                    "SOTHO", "TSWANA", "TSONGA", "YORUBA", "AFRIKAANS", "ARABIC", "PORTUGUESE",
                    "GERMAN", "INDONESIAN", "MALAY", "TAGALOG")
DETECTORS = ("lingua-restricted", "lingua-restricted-low", "lingua-all", "py3langid",
             "py3langid-restricted", "pycld2")
_PY3LANGID_SET = ("sw", "en", "fr", "so", "rw", "zu", "xh", "ar", "af", "pt", "de", "id", "ms",
                  "tl", "mg")
_WS = re.compile(r"\s+")
# C0/C1 controls and lone surrogates: CLD2 rejects them as invalid UTF-8 (seen in sw-news).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class Detector:
  """`score(text) -> (top language ISO 639-1, probability of `target`)`, built on first use."""

  def __init__(self, name: str = "pycld2", target: str = "sw",
               languages: tuple[str, ...] = LINGUA_LANGUAGES, max_chars: int = 10_000):
    if name not in DETECTORS:
      raise ValueError(f"unknown language detector {name!r}; choose one of {DETECTORS}")
    self.name, self.target, self.languages, self.max_chars = name, target, languages, max_chars
    self._impl = None

  def __getstate__(self):
    return {**self.__dict__, "_impl": None}   # Rust/C models are rebuilt in each worker

  def _build(self):
    n = self.name
    if n.startswith("lingua"):
      b = (LanguageDetectorBuilder.from_all_languages() if n == "lingua-all" else
           LanguageDetectorBuilder.from_languages(*[getattr(Language, x) for x in self.languages]))
      if n == "lingua-restricted-low":
        b = b.with_low_accuracy_mode()
      det = b.build()
      target = next(x for x in Language.all() if x.iso_code_639_1.name.lower() == self.target)

      def score(text):
        values = det.compute_language_confidence_values(text)
        if not values:
          return "und", 0.0
        top = values[0].language.iso_code_639_1.name.lower()
        conf = next((v.value for v in values if v.language == target), 0.0)
        return top, conf
      return score
    if n.startswith("py3langid"):
      ident = langid._load_identifier(  # noqa: SLF001 (the package's own loader)
          norm_probs=True, langs=list(_PY3LANGID_SET) if n == "py3langid-restricted" else None)

      def score(text):
        ranked = ident.rank(text)
        top = ranked[0][0]
        conf = next((p for lang, p in ranked if lang == self.target), 0.0)
        return top, float(conf)
      return score
    try:
      import pycld2
    except ImportError as e:
      raise ImportError("the filter's language ID needs pycld2: pip install 'pycld2==0.42' "
                        "(part of the [data] extra), or pass --lang-detector lingua-restricted") from e

    def score(text):
      try:
        reliable, _, details = pycld2.detect(text, isPlainText=True)
      except pycld2.error:
        return "und", 0.0
      top = details[0][1]
      conf = sum(pct for _, code, pct, _ in details if code == self.target) / 100.0
      return ("un" if top == "un" else top), conf
    return score

  def __call__(self, text: str) -> tuple[str, float]:
    if self._impl is None:
      self._impl = self._build()
    text = _WS.sub(" ", _UNSAFE.sub(" ", text[: self.max_chars])).strip()
    if not text:
      return "und", 0.0
    return self._impl(text)


# ----------------------------------------------------------------------------- evaluation set
# Negatives written for this project (not from any corpus): English in news and tweet registers,
# and short passages in neighbouring languages, plus the sample corpus's planted foreign texts.
NEGATIVES = {
    "en": [
        "The government announced on Monday that new water projects will reach rural villages.",
        "Farmers in the northern region expect a good harvest after the long rains this season.",
        "I can't believe the match was cancelled again, the fans deserve better than this.",
        "Prices of sugar and cooking oil have gone up in most markets across the country.",
        "Please send me the report before the meeting tomorrow morning.",
        "The hospital received new equipment for testing malaria and other fevers.",
        "Students will sit their national examinations at the end of November.",
        "Honestly this new phone is the best thing I have bought this year lol",
        "Traffic on the main road was blocked for hours after the accident near the bridge.",
        "Our school football team won the regional final by two goals to one.",
        "The president urged citizens to register to vote before the deadline.",
        "Good morning everyone, have a blessed week ahead!",
        "Researchers say the new vaccine reduced infections by more than half.",
        "Electricity was cut off in several neighbourhoods for the whole weekend.",
        "We are looking for a driver with at least three years of experience.",
    ],
    "rw": [
        "Abanyeshuri bose bagomba kwiyandikisha mbere y'uko amasomo atangira.",
        "Imvura nyinshi yaguye mu ijoro ryakeye yangije amazu menshi mu karere.",
        "Umuryango wanjye utuye hafi y'ikiyaga cya Kivu.",
    ],
    "rn": [
        "Abana barakina umupira hanze y'ishure buri mugoroba.",
        "Leta yatanguje umugambi mushasha wo kwubaka amabarabara mu gihugu cose.",
    ],
    "lg": [
        "Omusajja oyo yagenda mu katale okugula emmere y'abaana be.",
        "Abalimi mu kitundu kino basuubira amakungula amalungi omwaka guno.",
        "Twagala okulaba nga abaana bonna basoma bulungi ku ssomero.",
    ],
    "ki": [
        "Mũndũ ũcio nĩathiire ndũka gũthooma irio cia ciana ciake.",
        "Arĩmi a kũu nĩmarehirwo nĩ mbura nyingĩ mwaka ũyũ.",
    ],
    "zu": [
        "Umfana uhamba ngezinyawo aye esikoleni njalo ekuseni.",
        "Uhulumeni umemezele ukuthi kuzokwakhiwa imigwaqo emisha esifundazweni.",
        "Abalimi bathi isivuno salo nyaka sesihle kakhulu.",
    ],
    "sn": [
        "Vana vari kutamba bhora panze pechikoro masikati ose.",
        "Hurumende yakazivisa kuti mitengo yemafuta ichakwira mwedzi unouya.",
        "Varimi vanoti goho regore rino rakanaka kupfuura regore rapfuura.",
    ],
    "ny": [
        "Ana akusewera mpira kunja kwa sukulu tsiku lililonse.",
        "Boma lalengeza kuti mitengo ya feteleza idzatsika chaka chino.",
    ],
    "ln": [
        "Bana bazali kobeta ndembo libanda ya eteyelo mokolo nyonso.",
        "Guvernema elobi ete ntalo ya mafuta ekomata na sanza oyo ezali koya.",
    ],
    "so": [
        "Dowladda ayaa ku dhawaaqday in biyo nadiif ah la gaarsiin doono tuulooyinka.",
        "Ardayda waxay imtixaanka qaadanayaan dhammaadka bisha.",
    ],
}


def _sentences(text: str) -> list[str]:
  return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def evaluation_set(shared: Path, per_source: int = 200) -> dict[str, list[tuple[str, str]]]:
  """{group: [(label, text)]}: Swahili from ../shared/data (formal and code-switched tweets), and
  the negatives above plus data_pipeline/make_sample.FOREIGN. Deterministic."""
  groups: dict[str, list[tuple[str, str]]] = {}
  news = []
  with gzip.open(shared / "sw-news" / "part-00001.jsonl.gz", "rt", encoding="utf-8") as f:
    for line in f:
      news += _sentences(json.loads(line)["text"])
      if len(news) >= per_source * 4:
        break
  groups["sw-news sentences"] = [("sw", s) for s in news[::4][:per_source]]
  with open(shared / "masakhanews-swa" / "dev.tsv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  groups["masakhanews headlines"] = [("sw", r["headline"].strip()) for r in rows[:per_source]]
  with open(shared / "afrisenti-swa" / "dev.tsv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  groups["afrisenti tweets (code-switched)"] = [("sw", r["tweet"].strip()) for r in rows
                                                if r["tweet"].strip()][:per_source * 2]
  neg = [(lang, t) for lang, texts in NEGATIVES.items() for t in texts]
  lang_code = {"english": "en", "french": "fr", "somali": "so", "kinyarwanda": "rw"}
  for lang, texts in make_sample.FOREIGN.items():
    for t in texts:
      neg += [(lang_code.get(lang, lang), s) for s in _sentences(t)]
  groups["English"] = [x for x in neg if x[0] == "en"]
  groups["neighbouring languages"] = [x for x in neg if x[0] != "en"]
  return groups


def evaluate(shared: Path, detectors=DETECTORS, threshold: float = 0.5) -> list[dict]:
  """Per detector: recall per Swahili group, false-positive rate on negatives, precision, speed."""
  groups = evaluation_set(shared)
  rows = []
  for name in detectors:
    det = Detector(name)
    det("Habari za asubuhi")   # build outside the timing
    row = {"detector": name}
    tp = fp = n_pos = n_neg = 0
    t0 = time.perf_counter()
    for group, items in groups.items():
      hits = 0
      for label, text in items:
        _, conf = det(text)
        keep = conf >= threshold
        hits += keep
        if label == "sw":
          tp += keep
          n_pos += 1
        else:
          fp += keep
          n_neg += 1
      row[group] = hits / max(len(items), 1)
    secs = time.perf_counter() - t0
    row.update(recall=tp / n_pos, fpr=fp / n_neg, precision=tp / max(tp + fp, 1),
               ms_per_text=1e3 * secs / (n_pos + n_neg), n_pos=n_pos, n_neg=n_neg)
    rows.append(row)
  return rows


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--evaluate", action="store_true", help="print the detector comparison table")
  p.add_argument("--shared", default=None, help="the evaluation data folder (sw-news/, "
                 "masakhanews-swa/, afrisenti-swa/), e.g. ../shared/data; needed by --evaluate")
  p.add_argument("--threshold", type=float, default=0.5)
  p.add_argument("--detectors", nargs="*", default=list(DETECTORS))
  args = p.parse_args(argv)
  if not args.evaluate:
    p.print_help()
    return 0
  if not args.shared:
    p.error("--evaluate needs --shared DIR (the folder holding sw-news/, masakhanews-swa/ and "
            "afrisenti-swa/)")
  rows = evaluate(Path(args.shared), args.detectors, args.threshold)
  cols = [k for k in rows[0] if k not in ("detector", "n_pos", "n_neg")]
  print(f"{rows[0]['n_pos']} Swahili texts, {rows[0]['n_neg']} negatives, keep if P(sw) >= "
        f"{args.threshold}; columns are keep rates per group, then overall")
  print("| detector | " + " | ".join(cols) + " |")
  print("|---" * (len(cols) + 1) + "|")
  for r in rows:
    print(f"| {r['detector']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
