"""The base of every form: Flask-WTF with WTForms' own messages translated once per language."""
from __future__ import annotations

from functools import lru_cache

from babel import support
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


@lru_cache(maxsize=8)
def _wtforms_translations(locale: str) -> support.Translations:
    """WTForms' built-in messages ("Not a valid integer value", ...) in one language, read once."""
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class _RequestTranslations:
    """WTForms' messages in the request's language, which is looked up only when a message is written."""

    def gettext(self, string: str) -> str:
        """One message."""
        return self._catalogue().gettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """One message with a number."""
        return self._catalogue().ngettext(singular, plural, n)

    @staticmethod
    def _catalogue() -> support.Translations:
        """The catalogue of the request's language."""
        return _wtforms_translations(str(get_locale() or "fr"))


_REQUEST_TRANSLATIONS = _RequestTranslations()


class PageForm(FlaskForm):
    """FlaskForm whose WTForms catalogue is cached per language and chosen at the first message.

    Flask-WTF reads the catalogue from disk on every request; on the cart's POST that was a tenth
    of the request's time. The catalogue never changes while the process runs, and a valid form
    writes no message, so a valid POST does not even need to know the language.
    """

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            return _REQUEST_TRANSLATIONS
