"""Application factory: reads the configuration, binds extensions, registers blueprints."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from werkzeug.routing import IntegerConverter

from config import CONFIGS, Config


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: at most 2**31 - 1, the largest id the databases store. A longer
    number in a URL is then a 404, where it made SQLite raise OverflowError (a 500)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = 2**31 - 1,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def create_app(config: type[Config] | str | None = None, **overrides) -> Flask:
    """Build the Flask application from a config class (or its name) and overrides."""
    app = Flask(__name__, instance_path=os.environ.get("PANIER_INSTANCE") or None)
    if config is None:
        config = os.environ.get("PANIER_CONFIG", "development" if os.environ.get("FLASK_DEBUG") else "production")
    if isinstance(config, str):
        config = CONFIGS[config]
    app.config.from_object(config)
    app.config.update(overrides)
    _check_secret_key(app)
    # Every process (web, worker, beat, CLI) starts here: say it once when sign-in cannot work.
    _warn_if_cookies_cannot_work(app)
    if app.config.get("TRUSTED_PROXIES"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    Path(app.config["INSTANCE_DIR"]).mkdir(parents=True, exist_ok=True)

    register_extensions(app)
    app.url_map.converters["int"] = IdConverter
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_security_headers(app)
    register_commands(app)
    return app


def _warn_if_cookies_cannot_work(app: Flask) -> None:
    """Say at startup when BASE_URL is plain http:// while the session cookies are Secure."""
    base_url = app.config.get("BASE_URL") or ""
    if app.config.get("SESSION_COOKIE_SECURE") and base_url.startswith("http://"):
        # Browsers drop Secure cookies on plain HTTP (except, at best, on localhost): every
        # sign-in would then end in « Le formulaire a expiré » with nothing in the logs.
        app.logger.warning(
            "BASE_URL is %s, but session cookies are Secure (PANIER_CONFIG=production): browsers "
            "keep them only over HTTPS, so signing in from another machine fails with « Le formulaire "
            "a expiré ». Serve the site over HTTPS and set BASE_URL=https://... (README, Configuration).",
            base_url,
        )


def _check_secret_key(app: Flask) -> None:
    """Refuse to run without a secret key outside tests; the demo keeps one in instance/."""
    if app.config.get("SECRET_KEY"):
        return
    key_file = Path(app.config["INSTANCE_DIR"]) / "secret_key"
    if key_file.exists():
        app.config["SECRET_KEY"] = key_file.read_text().strip()
        return
    raise RuntimeError(
        "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
        "(bin/demo writes one to instance/secret_key for the demo)."
    )


def register_extensions(app: Flask) -> None:
    """Bind db, migrations, CSRF, login, Babel, the rate limiter and Celery to the app."""
    from app import db_setup, ratelimit_store  # noqa: F401  (ratelimit_store registers sqlite:// with limits)
    from app.celery import celery_init_app
    from app.extensions import babel, csrf, db, limiter, login_manager, migrate
    from app.i18n import select_locale, select_timezone

    db_setup.prepare_engine_options(app)
    db.init_app(app)
    db_setup.configure_engine(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=str(Path(__file__).resolve().parent / "translations"),
    )
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = f"sqlite:///{Path(app.config['INSTANCE_DIR']).resolve() / 'ratelimit.db'}"
    limiter.init_app(app)
    celery_init_app(app)

    from app.auth.identity import load_user

    login_manager.user_loader(load_user)

    # Import every package's models so metadata (and migrations) see all tables.
    import orders.models  # noqa: F401
    import pickup.models  # noqa: F401
    import producers.models  # noqa: F401


def register_blueprints(app: Flask) -> None:
    """One blueprint per feature."""
    from app.auth import bp as auth_bp
    from app.main import bp as main_bp
    from orders import bp as orders_bp
    from pickup import bp as pickup_bp
    from producers import bp as producers_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp, url_prefix="/compte")
    app.register_blueprint(producers_bp, url_prefix="/producteurs")
    app.register_blueprint(orders_bp, url_prefix="/commandes")
    app.register_blueprint(pickup_bp, url_prefix="/retrait")


def register_errorhandlers(app: Flask) -> None:
    """Plain French error pages; never a stack trace."""
    from app.errors import register

    register(app)


def register_template_helpers(app: Flask) -> None:
    """Jinja filters and globals: money, dates, navigation."""
    from app.templating import register

    register(app)


def register_security_headers(app: Flask) -> None:
    """A content security policy, no framing, no sniffing, on every response."""

    @app.after_request
    def set_headers(response):
        """Add the security headers."""
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'; base-uri 'self'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def register_commands(app: Flask) -> None:
    """Flask CLI commands (users, demo data, cycles)."""
    from app.cli import register

    register(app)
    logging.getLogger("panier").setLevel(logging.INFO)
