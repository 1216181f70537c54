"""Phase 2 (clean): Swahili-aware normalization, boilerplate, PII masks, too_short drops."""

import gzip
import json
import unicodedata

import pytest

from configs import pipeline as pipeline_config
from data_pipeline import clean, shards

CFG = pipeline_config.get_config().clean


def c(text: str) -> str:
  return clean.clean_text(text, CFG)


@pytest.mark.parametrize("variant", ["\u2019", "\u02bc", "`", "\u2018"])
def test_apostrophe_variants_become_ascii(variant):
  t = f"Wafugaji wa ng{variant}ombe walivuka ng{variant}ambo ya mto."
  assert c(t) == "Wafugaji wa ng'ombe walivuka ng'ambo ya mto."


def test_quotes_that_are_not_apostrophes_are_kept():
  assert c("Alisema \u2018kweli\u2019 na \u201cndiyo\u201d.") == "Alisema \u2018kweli\u2019 na \u201cndiyo\u201d."


def test_swahili_morphology_and_code_switching_survive():
  t = ("Wanafunzi hawakuniambia kwamba kitabu/vitabu vyao vimepotea. Wameshindwa kuvipata. "
       "Nilienda town jana, bro, nikanunua airtime ya Shilingi 2,000 saa 10:30.")
  assert c(t) == t


def test_nfc_and_mojibake_repair():
  decomposed = "Cafe\u0301 ya Moshi"
  assert unicodedata.is_normalized("NFD", decomposed)
  assert c(decomposed) == "Caf\u00e9 ya Moshi"
  mojibake = "Mzee alisema: \u00e2\u20ac\u0153Tumechoka\u00e2\u20ac\u009d. Caf\u00c3\u00a9 imefungwa."
  assert c(mojibake) == "Mzee alisema: \u201cTumechoka\u201d. Caf\u00e9 imefungwa."


TRICKY = [
    "Mwalimu alisema \u201cKaribu\u201d \u2013 ng\u2019ombe wa Bw. M\u00fcller.",  # kept as is
    "Habari\n\u00c3 safi",                  # mojibake at a line start: ftfy's `^` per line
    "\u00c3 mwanzo wa hati",                 # ... and at the document's start
    "Cafe\u0301 ya Moshi \u2019",           # not NFC
    "\ufb01nali ya \uff28abari \u2019",     # a ligature and a full-width letter
    "mstari\r\nwa pili\u2028tatu\x85 \u2019",  # line breaks ftfy rewrites
    "\x1b[31mnyekundu\x1b[0m \u2019 \x07",  # terminal escapes and a control character
    "Caf\u00c3\u00a9 imefungwa \u2019",
]


@pytest.mark.parametrize("text", TRICKY)
def test_skipping_ftfy_never_changes_what_it_returns(text, monkeypatch):
  """The fast path skips ftfy only where ftfy would return the text unchanged."""
  fast = c(text)
  monkeypatch.setattr(clean, "_ftfy_would_keep", lambda t: False)
  assert fast == c(text)


def test_plain_swahili_with_curly_quotes_skips_ftfy():
  assert clean._ftfy_would_keep(TRICKY[0])
  assert not any(clean._ftfy_would_keep(t) for t in TRICKY[1:])


def test_zero_width_control_characters_and_whitespace():
  t = "\ufeffHabari\u200b za\u200d asu\u00adbuhi\u0007 \t\u00a0 rafiki\r\n\r\n\r\n\r\nMwisho  wa\u2009barua."
  assert c(t) == "Habari za asubuhi rafiki\n\nMwisho wa barua."


def test_html_remnants():
  t = ('<div class="makala"><h2>Elimu</h2><p>Shule mpya &amp; maktaba</p>'
       '<script>var x = "<p>";</script><!-- tangazo --><br/>Mwisho&nbsp;wa habari.</div>')
  assert c(t) == "Elimu Shule mpya & maktaba Mwisho wa habari."
  assert c("Bei ni 5 < 7 na 9 > 3.") == "Bei ni 5 < 7 na 9 > 3."   # not tags


@pytest.mark.parametrize("line", [
    "Soma zaidi", "Soma zaidi \u00bb", "Shiriki makala hii", "Read more \u2192",
    "Shiriki habari hii: Facebook | Twitter | WhatsApp", "Facebook Twitter WhatsApp",
    "Soma pia: Serikali yatangaza bajeti mpya ya elimu", "Habari zinazohusiana:",
    "Bofya hapa kusoma zaidi", "Jiunge na jarida letu upate habari kila siku", "Maoni (3)",
    "Haki zote zimehifadhiwa \u00a9 2026", "All rights reserved.",
    "Tunatumia vidakuzi (cookies) kuboresha huduma zetu. Kwa kuendelea kutumia tovuti hii "
    "unakubali sera yetu ya faragha. Kubali",
    "We use cookies to improve your experience on our website."])
def test_boilerplate_lines_removed(line):
  assert c(f"Mvua imenyesha.\n{line}\nWakulima wamefurahi.") == "Mvua imenyesha.\nWakulima wamefurahi."


@pytest.mark.parametrize("line", [
    "Soma zaidi kuhusu historia ya Kiswahili katika kitabu hiki.",
    "Ingia ndani ya nyumba upumzike.", "Habari zaidi zinaonyesha kuwa mvua itaendelea.",
    "Next week the team plays again.", "Watoto wanapenda cookies na chai ya asubuhi.",
    "Shiriki katika mjadala wa bajeti ya kijiji chetu kesho."])
def test_prose_starting_like_boilerplate_is_kept(line):
  assert line in c(f"Mwanzo.\n{line}\nMwisho.")


def test_email_and_phone_masking():
  t = ("Piga +255 712 345 678, +254 712345678, +254-722-123-456, 00255 754 123 456, "
       "0712-345-678 au 0755 123 456; andika juma.1@mfano.co.tz au info@kampuni.go.ke.")
  assert c(t) == ("Piga <PHONE>, <PHONE>, <PHONE>, <PHONE>, <PHONE> au <PHONE>; andika <EMAIL> "
                  "au <EMAIL>.")
  assert c(c(t)) == c(t)   # idempotent: the masks are not taken for HTML tags
  keep = "Mwaka 2024 watu 1,200,000 walihudhuria tarehe 12/03/2024 saa 10:30; bei TSh 25,000."
  assert c(keep) == keep


def test_clean_phase_drops_too_short_with_reason(tmp_path):
  inp = tmp_path / "in"
  docs = [{"id": "long", "text": "Habari za asubuhi! Leo tunazungumzia kilimo cha mahindi mkoani "
           "Morogoro.\nSoma zaidi", "source": "t", "extra": [1, 2]},
          {"id": "short", "text": "Karibu sana.", "source": "t"},
          {"id": "chrome", "text": "Soma zaidi\nShiriki makala hii\nFacebook | Twitter", "source": "t"},
          {"id": "empty", "text": "  \n ", "source": "t"}]
  with shards.ShardWriter(inp / "x.jsonl.gz") as w:
    for d in docs:
      w.write(d)
  out = tmp_path / "out"
  assert clean.main(["--input", str(inp), "--output", str(out)]) == 0
  kept = [d for _, d in shards.iter_docs(out)]
  assert [d["id"] for d in kept] == ["long"] and kept[0]["extra"] == [1, 2]
  assert kept[0]["text"].endswith("mkoani Morogoro.")
  st = json.loads((out / "stats.json").read_text())
  assert st["docs"] == {"in": 4, "out": 1, "dropped": {"too_short": 3}}
  assert st["config"]["min_chars"] == CFG.min_chars
  removed = [json.loads(l) for l in gzip.decompress((out / "removed" / "x.jsonl.gz").read_bytes())
             .splitlines()]
  assert [(r["reason"], r["doc"]["id"]) for r in removed] == [
      ("too_short", "short"), ("too_short", "chrome"), ("too_short", "empty")]
  assert removed[0]["chars"] == len("Karibu sana.")
  assert (out / "x.jsonl.gz.done").exists()


def test_no_mask_pii_flag(tmp_path):
  inp = tmp_path / "in"
  t = "Kwa maswali piga simu +255 712 345 678 au andika barua pepe kwa habari@mfano.co.tz leo."
  with shards.ShardWriter(inp / "x.jsonl") as w:
    w.write({"id": "a", "text": t})
  assert clean.main(["--input", str(inp), "--output", str(tmp_path / "o"), "--no-mask-pii"]) == 0
  assert [d["text"] for _, d in shards.iter_docs(tmp_path / "o")] == [t]
