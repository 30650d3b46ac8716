"""Every message deskmark writes for people is in every catalogue, translated, with its fields
and markup intact, and compiled; languages, money and dates follow the locale."""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from integrations.i18n import LANGUAGES, LOCALE_DIR, Words, language_of, supported

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "n_": (1, 2), "N_": None}
FIELD = re.compile(r"{(\w+)}")
TAG = re.compile(r"</?[a-z]+>")
CATALOGUES = [lang for lang in LANGUAGES if lang != "en"]


def used_messages() -> set[str | tuple[str, str]]:
    """What the code asks to be translated, read from the source as `pybabel extract` reads it
    (babel.cfg)."""
    found: set[str | tuple[str, str]] = set()
    for folder in ("integrations", "worker", "deskmark"):
        for _file, _line, message, _comments, _context in extract_from_dir(
                ROOT / folder, method_map=[("sandbox/**.py", "ignore"), ("**.py", "python")],
                keywords=KEYWORDS):
            found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def catalogue(language: str) -> Path:
    return LOCALE_DIR / language.replace("-", "_") / "LC_MESSAGES" / "deskmark.po"


def test_the_code_uses_messages() -> None:
    used = used_messages()
    assert len(used) > 80 and "Checks: {checks}." in used  # the extraction sees the code


@pytest.mark.parametrize("language", CATALOGUES)
def test_every_message_the_code_uses_is_translated_keeping_its_fields_and_markup(language: str) -> None:
    with catalogue(language).open("rb") as f:
        po = read_po(f)
    entries = {m.id if isinstance(m.id, str) else tuple(m.id): m for m in po if m.id}
    missing = [m for m in used_messages() if m not in entries]
    assert missing == [], f"{language} lacks {len(missing)} messages the code uses, e.g. {missing[:3]}"
    checked = 0
    for key, entry in entries.items():
        assert not entry.fuzzy, (language, key)
        source = key if isinstance(key, str) else key[1]
        for text in ([entry.string] if isinstance(entry.string, str) else list(entry.string or ())):
            assert text, f"{language}: no translation of {source!r}"
            wanted = set(FIELD.findall(source)) - ({"count"} if not isinstance(key, str) else set())
            fields = set(FIELD.findall(text))
            assert wanted <= fields <= set(FIELD.findall(source)) | {"count"}, (language, source, text)
            assert sorted(TAG.findall(text)) == sorted(TAG.findall(source)), (language, source, text)
            checked += 1
    assert checked >= len(entries)


@pytest.mark.parametrize("language", CATALOGUES)
def test_the_compiled_catalogue_is_the_written_one(language: str) -> None:
    """The .mo deskmark loads says what the .po says (`bash deploy/messages` compiles it)."""
    with catalogue(language).open("rb") as f:
        po = read_po(f)
    compiled = gettext.GNUTranslations(io.BytesIO(catalogue(language).with_suffix(".mo").read_bytes()))
    singular = [(m.id, m.string) for m in po if m.id and isinstance(m.id, str)]
    assert singular and all(compiled.gettext(key) == text for key, text in singular)
    plural = [(tuple(m.id), tuple(m.string or ())) for m in po if m.id and not isinstance(m.id, str)]
    assert plural and all(compiled.ngettext(key[0], key[1], 5) in forms for key, forms in plural)


def test_languages_are_read_as_helpdesks_report_them() -> None:
    assert [supported(t) for t in ("ja", "de-AT", "pt_BR", "pt", "zh-TW", "zh-HK", "zh-CN", "zh", "en-US",
                                   "ZH-hant", "ar-EG", "hi-IN", "xx", "", None)] == [
        "ja", "de", "pt-BR", "pt-BR", "zh-Hant", "zh-Hant", "zh-Hans", "zh-Hans", "en", "zh-Hant", "ar", "hi",
        None, None, None]
    assert language_of("auto", "ja") == "ja" and language_of("auto", None) == "en"
    assert language_of("auto", "tlh") == "en" and language_of("de", "ja") == "de"


def test_money_numbers_and_dates_follow_the_locale() -> None:
    assert Words("en").money(0.0135) == "$0.0135" and Words("en").money(20, 2) == "$20.00"
    assert Words("de").money(0.0135) == "0,0135\xa0$"
    assert Words("fr").money(20, 2).startswith("20,00")
    assert Words("de").number(1234.5, 1) == "1.234,5"
    at = 1796638746.0  # 2026-12-07 10:19:06 UTC
    assert Words("en").datetime(at) == "Dec 7, 2026, 10:19:06\u202fAM UTC"
    assert Words("ja").datetime(at).startswith("2026/12/07")
    assert Words("ja")._("Checks: {checks}.", checks="x") == "確認事項: x。"
    assert Words("ar").n_(", and on {count} more ticket", ", and on {count} more tickets", 3)
    with pytest.raises(ValueError, match="deskmark does not write 'tlh'"):
        Words("tlh")
