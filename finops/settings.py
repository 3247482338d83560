"""Settings, all from the environment. Production-safe defaults: DEBUG off, secure cookies when not DEBUG."""

from __future__ import annotations

import contextlib
import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path

import plotly

from finops import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


DEBUG = env_bool("DEBUG")


def local_secret_key() -> str:
    """Without SECRET_KEY: a random key kept in the data folder (created once, readable by us only),
    so a local install never runs on a published key and sessions survive restarts."""
    path = embedded.data_dir() / "secret_key"
    if not path.exists():
        draft = path.with_name(f"secret_key.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(50))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # atomic: of processes starting together, one key wins
        draft.unlink()
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- database: DATABASE_URL, else the embedded PostgreSQL under FINOPS_DATA_DIR -------------------------
# only its URL: the server is started by the commands that need it (finops.cli), never by this import
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded.postgres_url()
DATABASES = {"default": embedded.database_settings(DATABASE_URL)}
if os.environ.get("FINOPS_TEST_DATABASE"):  # set by the test bootstrap: one test database per pytest run
    DATABASES["default"]["TEST"] = {"NAME": os.environ["FINOPS_TEST_DATABASE"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "finops.accounts",
    "finops.ledger",
    "finops.pricing",
    "finops.kpis",
    "finops.audit",
    "finops.guardrails",
    "finops.alerts",
    "finops.modeltiers",
    "finops.bills",
    "finops.core",
    "ingest",
    "ingest.connectors",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "finops.core.middleware.SecurityHeadersMiddleware",
    "finops.accounts.middleware.LoginThrottleMiddleware",
]

ROOT_URLCONF = "finops.urls"
WSGI_APPLICATION = "finops.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"  # the role's home (dashboard/home.py)
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = ["finops.accounts.authentication.ThrottledModelBackend"]
if os.environ.get("FINOPS_TEST_DATABASE"):
    # Set only by the test bootstrap (finops/testing/pytest_bootstrap.py), and inherited by the servers the
    # suite starts: its users' passwords are hashed cheaply. PBKDF2's million rounds cost ~0.3 s a user,
    # minutes over the suite; PBKDF2 stays second, so a password made outside the suite still checks.
    PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- static files: everything (plotly.js included) is served by the app itself, never a CDN ------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or embedded.data_dir() / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [("plotly", Path(plotly.__file__).parent / "package_data")]
WHITENOISE_USE_FINDERS = True  # serve straight from the finders: no collectstatic step needed to start
WHITENOISE_AUTOREFRESH = DEBUG


# --- security: HTTPS, cookies, response headers, login and token throttling -----------------------------
# Plain HTTP on purpose (set by `finops up`, which serves 127.0.0.1 only): cookies without the Secure flag
FINOPS_PLAIN_HTTP = env_bool("FINOPS_PLAIN_HTTP")
_served_over_https = not DEBUG and not FINOPS_PLAIN_HTTP
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=_served_over_https)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=_served_over_https)
# Behind a TLS-terminating proxy that sets (and overwrites) e.g. X-Forwarded-Proto: https
if os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + os.environ["SECURE_PROXY_SSL_HEADER"].strip().upper().replace("-", "_"),
        "https",
    )
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
# SecurityMiddleware sends HSTS on HTTPS responses only, so plain-HTTP local use never gets it
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sent on every response by finops.core.middleware. No inline script or handler anywhere, so none is
# allowed; inline styles are, since Plotly sets style attributes and injects its modebar's <style>
FINOPS_CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
FINOPS_PERMISSIONS_POLICY = {
    feature: "()"
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
}

# Failed logins per account and per client address, and unknown bearer tokens per address, in a window
# that starts with the first failure; past a limit the answer is 429 until the window ends
FINOPS_LOGIN_FAILURES_PER_ACCOUNT = env_int("FINOPS_LOGIN_FAILURES_PER_ACCOUNT", 5)
FINOPS_LOGIN_FAILURES_PER_ADDRESS = env_int("FINOPS_LOGIN_FAILURES_PER_ADDRESS", 20)
FINOPS_TOKEN_FAILURES_PER_ADDRESS = env_int("FINOPS_TOKEN_FAILURES_PER_ADDRESS", 20)
FINOPS_THROTTLE_WINDOW_SECONDS = env_int("FINOPS_THROTTLE_WINDOW_SECONDS", 15 * 60)
# The client address is REMOTE_ADDR unless a proxy you run sets this header (e.g. X-Real-IP); never
# trusted by default, since any client can send X-Forwarded-For
FINOPS_CLIENT_ADDRESS_HEADER = os.environ.get("FINOPS_CLIENT_ADDRESS_HEADER", "").strip()

# Connector credentials are encrypted at rest with this key (else one derived from SECRET_KEY)
FINOPS_ENCRYPTION_KEY = os.environ.get("FINOPS_ENCRYPTION_KEY") or None

# --- guardrails (SPEC.md, "Guardrails") ----------------------------------------------------------------
# Allowance windows are calendar windows in this zone (weeks start on Monday).
FINOPS_TIME_ZONE = os.environ.get("FINOPS_TIME_ZONE", "UTC")
# An allowed guard check with an estimate holds it this many seconds unless its usage event settles it.
FINOPS_RESERVATION_TTL = env_int("FINOPS_RESERVATION_TTL", 300)
# The guard check's answer when it cannot read its counters (a database error): "open" allows, "closed" denies.
FINOPS_GUARD_FAIL_MODE = os.environ.get("FINOPS_GUARD_FAIL_MODE", "open")
if FINOPS_GUARD_FAIL_MODE not in {"open", "closed"}:
    raise ValueError(f"FINOPS_GUARD_FAIL_MODE must be open or closed, not {FINOPS_GUARD_FAIL_MODE!r}")
# How long a guard check waits for an allowance's counter row held by another check or a writer.
FINOPS_GUARD_LOCK_TIMEOUT_MS = env_int("FINOPS_GUARD_LOCK_TIMEOUT_MS", 2000)
# Whether a guard check's transaction (its reservation) waits for its WAL to reach the disk before it
# answers. Off (the default): the check holds its allowance's lock about half as long, and a crash of the
# database server can forget the reservations of its last fraction of a second (never a call, a counter
# or a kill). On: every answered reservation survives a crash.
FINOPS_GUARD_SYNCHRONOUS_COMMIT = env_bool("FINOPS_GUARD_SYNCHRONOUS_COMMIT", False)

# --- bills (SPEC.md, "Bills") -----------------------------------------------------------------------------
# A reconciliation line whose telemetry and statement dollars differ by at most this share of the
# statement's is `matched`: a fraction (0.005) or a percentage ("0.5%"); default 0.5%.


def env_share(name: str, default: str) -> Decimal:
    text = os.environ.get(name, "").strip() or default
    try:
        value = Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} must be a fraction (0.005) or a percentage (0.5%), not {text!r}") from None
    if not value.is_finite() or not 0 <= value < 1:
        raise ValueError(f"{name} must be between 0 and 1 (or 0% and 100%), not {text!r}")
    return value


FINOPS_RECONCILE_TOLERANCE = env_share("FINOPS_RECONCILE_TOLERANCE", "0.005")

# --- alerts (SPEC.md, "Alerts") ---------------------------------------------------------------------------
# Where people open finops: alert notifications link to {FINOPS_BASE_URL}/alerts/<id>/.
FINOPS_BASE_URL = os.environ.get("FINOPS_BASE_URL", "http://localhost:8000")
# Alert channels (finops/alerts/channels.py):
# A webhook or Slack delivery attempt fails when connecting and reading the answer take longer than this.
FINOPS_ALERT_HTTP_TIMEOUT_SECONDS = env_int("FINOPS_ALERT_HTTP_TIMEOUT_SECONDS", 5)
# Email channels go through Django's mail backend: an SMTP server from these (Django's own names).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")  # TLS from the start, usually port 465
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "finops@localhost")

# --- API -------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "finops.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # the API reads and answers JSON (SPEC.md); a form body is a 415, not a half-parsed QueryDict; JSON
    # nested past what the parser can read is a 400
    "DEFAULT_PARSER_CLASSES": ["finops.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "finops.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "finops.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "finops API",
    "DESCRIPTION": "Usage events in, priced ledger and agent KPIs out. See SPEC.md for the contracts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # swagger-ui is served from the sidecar package's static files: no CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # what a client sends and what it gets back are separate components (read-only ids, write-only secrets)
    "COMPONENT_SPLIT_REQUEST": True,
    # choice sets that share a field name ("kind") get a name of their own, not a hash
    "ENUM_NAME_OVERRIDES": {
        "AlertChannelKindEnum": "finops.alerts.models.ChannelKind",
        "AlertRuleKindEnum": "finops.alerts.models.RuleKind",
        "BillMonthStateEnum": "finops.bills.models.MonthState",
        "RepriceRunStatusEnum": "finops.pricing.models.RepriceStatus",
        "ModelTierEnum": "finops.modeltiers.models.Tier",
        "UsageTierEnum": "finops.modeltiers.selectors.TIERS",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ingest.otlp.schema.otlp_traces_document",  # POST /v1/traces is a plain Django view
    ],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024  # batches of thousands of events

# --- Celery: CELERY_BROKER_URL, else a filesystem queue under FINOPS_DATA_DIR (no service to install) ---
_broker_dir = embedded.data_dir() / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":  # its folders are made by the Celery app when it configures
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # exchange bindings: kombu keeps them in ./control (the working directory) unless told
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ROUTES = {
    "ingest.tasks.*": {"queue": "ingest"},
    "ingest.connectors.tasks.*": {"queue": "ingest"},
    "finops.pricing.tasks.*": {"queue": "pricing"},
    "finops.alerts.tasks.*": {"queue": "alerts"},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(embedded.data_dir() / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}, "django.db.backends": {"level": "INFO"}},
}
if CELERY_BROKER_URL == "filesystem://":
    # the local queue has no host, so kombu warns "No hostname was supplied" on every task a command
    # sends (`finops alerts evaluate` printed it to a new user); its only other warning is about rediss
    LOGGING["loggers"]["kombu.connection"] = {"level": "ERROR"}
