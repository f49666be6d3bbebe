"""Configuration classes read from the environment."""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("PANIER_INSTANCE", BASE_DIR / "instance"))


def _bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def filesystem_broker_options(instance: Path) -> dict:
    """Kombu filesystem transport folders under the instance folder, polled quickly."""
    queue = instance / "broker" / "queue"
    processed = instance / "broker" / "processed"
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        # Broadcast/control messages (pidbox); Kombu otherwise writes them to ./control.
        "control_folder": str(instance / "broker" / "control"),
        "store_processed": False,
        "polling_interval": float(os.environ.get("CELERY_POLLING_INTERVAL", "0.05")),
    }


class Config:
    """Defaults for every environment; each value can be set from the environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'panier.db'}"
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    DOCUMENTS_DIR = os.environ.get("DOCUMENTS_DIR", str(INSTANCE_DIR / "documents"))
    INSTANCE_DIR = str(INSTANCE_DIR)
    BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8000")
    SITE_NAME = os.environ.get("SITE_NAME", "Panier commun")
    #: The legal name printed on receipts; receipt numbers run without gaps per association.
    ASSOCIATION_NAME = os.environ.get("ASSOCIATION_NAME", "Café associatif du Bourg")
    DEFAULT_TIMEZONE = os.environ.get("DEFAULT_TIMEZONE", "Europe/Paris")

    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None

    MAIL_SERVER = os.environ.get("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_USE_TLS = _bool("MAIL_USE_TLS")
    MAIL_SENDER = os.environ.get("MAIL_SENDER", "Panier commun <panier@localhost>")
    #: "smtp" delivers for real; "file" writes .eml files under instance/mail (demo default).
    MAIL_TRANSPORT = os.environ.get("MAIL_TRANSPORT", "smtp")

    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY") or None
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY") or None
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET") or None

    #: Sign-in counters, shared by the web processes: unset, a file in the instance folder
    #: (instance/ratelimit.db, app.ratelimit_store); redis://... when several machines serve the site.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or None
    RATELIMIT_HEADERS_ENABLED = False
    #: Reverse proxies in front of gunicorn (0 = none): their X-Forwarded-For/-Proto are trusted,
    #: so the per-address login limit sees each visitor's address, not the proxy's.
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per 15 minutes")

    BABEL_DEFAULT_LOCALE = "fr"
    BABEL_DEFAULT_TIMEZONE = DEFAULT_TIMEZONE  # Flask-Babel asks select_timezone, which reads DEFAULT_TIMEZONE
    LANGUAGES = ("fr", "en")

    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    PASSWORD_RESET_MAX_AGE = int(os.environ.get("PASSWORD_RESET_MAX_AGE", str(2 * 3600)))
    #: A photo as phones send it (12 to 48 Mpx, up to ~20 MB): it is shrunk to PHOTO_MAX_SIDE pixels and
    #: stored without its EXIF (GPS) block. A heavier one is refused on the form, which keeps what was typed.
    PHOTO_MAX_BYTES = int(os.environ.get("PHOTO_MAX_BYTES", str(20 * 1024 * 1024)))
    #: Pixels a photo may open to (a 50 Mpx phone mode is 8160 × 6120): more is a decompression bomb.
    PHOTO_MAX_PIXELS = int(os.environ.get("PHOTO_MAX_PIXELS", "60000000"))
    PHOTO_MAX_SIDE = int(os.environ.get("PHOTO_MAX_SIDE", "1600"))
    PHOTO_JPEG_QUALITY = int(os.environ.get("PHOTO_JPEG_QUALITY", "85"))
    #: Whole request; room above PHOTO_MAX_BYTES so a heavy photo is refused on the form, not by a 413 page
    #: that loses the form. Uploaded files wait on disk, not in memory (Werkzeug spools them).
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", str(32 * 1024 * 1024)))
    #: Households per bag-slip chunk: bounds the pages one render holds in memory.
    DOCUMENT_CHUNK_HOUSEHOLDS = int(os.environ.get("DOCUMENT_CHUNK_HOUSEHOLDS", "100"))
    #: How long a bag's shortage e-mail waits for the rest of its preparation (« Sac prêt » sends it at once).
    SHORTAGE_MAIL_DELAY_SECONDS = int(os.environ.get("SHORTAGE_MAIL_DELAY_SECONDS", "600"))


class ProductionConfig(Config):
    """Production: a secret key is mandatory and cookies are Secure."""

    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True


class DevelopmentConfig(Config):
    """Local demo on the embedded defaults (plain HTTP on loopback)."""

    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    MAIL_TRANSPORT = os.environ.get("MAIL_TRANSPORT", "file")


class TestConfig(Config):
    """Tests: a throw-away database, no Secure cookies so the test client keeps them."""

    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False
    RATELIMIT_STORAGE_URI = "memory://"
    CELERY_BROKER_URL = "memory://"
    MAIL_TRANSPORT = "smtp"
    BASE_URL = "http://localhost"


CONFIGS = {
    "production": ProductionConfig,
    "development": DevelopmentConfig,
    "test": TestConfig,
}
