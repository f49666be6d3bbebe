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


class PageForm(FlaskForm):
    """FlaskForm whose WTForms catalogue is cached per language.

    Flask-WTF reads the catalogue from disk on every request; on the cart's POST that was a tenth
    of the request's time. The catalogue never changes while the process runs.
    """

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            return _wtforms_translations(str(get_locale() or "fr"))
