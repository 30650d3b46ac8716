"""The words deskmark writes for people, in their language.

Notes, failure notes, Slack texts and `deskmark try`'s output come from gettext catalogues
(`integrations/locale/<language>/LC_MESSAGES/deskmark.po`, compiled to `.mo` beside it), written
with Babel; numbers, money and dates are formatted by Babel for the language's locale. The
language is DESKMARK_LANGUAGE (a BCP 47 tag), or, with `auto`, each ticket's own as its helpdesk
reports it (`language_of`). The operator's console and logs stay in English.

Messages are English sentences with named fields, `w._("Marked: {what}.", what=...)`; the
catalogues translate the sentence whole, so each language orders the fields its own way.
`pybabel extract` finds every `_`, `n_` and `N_` call (babel.cfg); tests/test_i18n.py fails when
a catalogue lacks one, or its translation loses a field.
"""

from __future__ import annotations

import datetime
import functools
import gettext
import string
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

__all__ = ["LANGUAGES", "Words", "words", "supported", "language_of", "N_", "LOCALE_DIR", "ENGLISH"]

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "deskmark"

# The languages deskmark writes, by BCP 47 tag: their English names, which the locate model is
# told to write its labels in.
LANGUAGES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "pt-BR": "Brazilian Portuguese",
    "it": "Italian", "nl": "Dutch", "ja": "Japanese", "ko": "Korean", "zh-Hans": "Simplified Chinese",
    "zh-Hant": "Traditional Chinese", "ar": "Arabic", "hi": "Hindi",
}
# Regions that mean a script: Chinese written in Taiwan, Hong Kong and Macau is Traditional.
_TRADITIONAL = {"tw", "hk", "mo", "hant"}


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "translated later"
    """Marks a message for the catalogues where it is defined; translated where it is shown."""
    return message


def supported(tag: str | None) -> str | None:
    """deskmark's language for a BCP 47 tag or a helpdesk's locale ("ja", "de-AT", "pt_BR",
    "zh-TW", "en-US"); None for one it does not write."""
    if not tag:
        return None
    clean = tag.strip().replace("_", "-")
    exact = {key.lower(): key for key in LANGUAGES}
    if clean.lower() in exact:
        return exact[clean.lower()]
    primary, _, rest = clean.lower().partition("-")
    if primary == "zh":
        return "zh-Hant" if set(rest.split("-")) & _TRADITIONAL else "zh-Hans"
    if primary == "pt":
        return "pt-BR"  # the one Portuguese deskmark writes
    return exact.get(primary)


def language_of(setting: str, reported: str | None) -> str:
    """A ticket's language: DESKMARK_LANGUAGE, or with `auto` the one its helpdesk reports
    (English when it reports none deskmark writes)."""
    if setting != "auto":
        return setting
    return supported(reported) or "en"


@functools.cache
def _translations(language: str) -> gettext.NullTranslations:
    if language == "en":
        return gettext.NullTranslations()  # the messages are English
    found = Translations.load(str(LOCALE_DIR), [language.replace("-", "_")], DOMAIN)
    if not isinstance(found, Translations):  # no catalogue: a bug, caught by the tests
        raise LookupError(f"no message catalogue for {language} in {LOCALE_DIR}")
    return found


class Words:
    """deskmark's words and formats in one language."""

    def __init__(self, language: str = "en") -> None:
        if language not in LANGUAGES:
            raise ValueError(f"deskmark does not write {language!r}: use one of {', '.join(LANGUAGES)}")
        self.language = language
        self.name = LANGUAGES[language]
        self.locale = Locale.parse(language, sep="-")
        self._t = _translations(language)

    def _(self, message: str, **fields: object) -> str:
        """The message in this language, its {fields} filled in."""
        text = self._t.gettext(message)
        return _fill(text, fields) if fields else text

    def n_(self, singular: str, plural: str, count: int, **fields: object) -> str:
        """The singular or plural message for `count` (the language's own plural rules)."""
        return _fill(self._t.ngettext(singular, plural, count), {"count": self.number(count), **fields})

    def number(self, value: float, digits: int = 0) -> str:
        return format_decimal(value, format=f"#,##0{'.' + '#' * digits if digits else ''}", locale=self.locale)

    def money(self, usd: float, digits: int = 4) -> str:
        """US dollars as this language writes them, to `digits` places ("$0.0135", "0,0135 $")."""
        pattern = self.locale.currency_formats["standard"].pattern.split(";")[0]
        places = "0." + "0" * digits if digits else "0"
        pattern = pattern.replace("0.00", places, 1) if "0.00" in pattern else pattern.replace("0", places, 1)
        return format_currency(usd, "USD", format=pattern, locale=self.locale, currency_digits=False)

    def date(self, day: str) -> str:
        """A day written YYYY-MM-DD, as this language writes it (as given when it is not one)."""
        try:
            return format_date(datetime.date.fromisoformat(day[:10]), "medium", locale=self.locale)
        except ValueError:
            return day

    def datetime(self, at: float) -> str:
        """A moment as this language writes it, in UTC, said so."""
        moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
        return format_datetime(moment, "medium", tzinfo=datetime.UTC, locale=self.locale) + " UTC"


ENGLISH = Words("en")


@functools.cache
def words(language: str) -> Words:
    return Words(language)


class _Fields(string.Formatter):
    """str.format with named fields only; a field a translation lost or misspelt is left as
    written rather than failing a note (tests/test_i18n.py keeps them from being lost)."""

    def get_value(self, key: int | str, args: object, kwargs: dict[str, object]) -> object:  # type: ignore[override]
        return kwargs.get(str(key), "{" + str(key) + "}")


_FORMATTER = _Fields()


def _fill(text: str, fields: dict[str, object]) -> str:
    try:
        return _FORMATTER.vformat(text, (), fields)
    except (ValueError, IndexError):
        return text

