"""dlqadmin settings: read from the environment only.

Every setting comes from an environment variable (see README, "Configuration"). Secrets may
also be given as a file path in ``<NAME>_FILE`` (Docker/Kubernetes secrets).
"""

import base64
import ipaddress
import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_networks(name: str, default: str = "") -> list[str]:
    """Comma-separated CIDRs (or single addresses); a malformed one stops the process."""
    networks = env_list(name, default)
    for item in networks:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network; give comma-separated CIDRs "
                "such as 10.0.0.0/8,192.0.2.7 (or leave it empty)"
            ) from None
    return networks


def env_secret(name: str, default: str = "") -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, default)


# Values of SECRET_KEY published in this repository or by Django: never a production key.
SECRET_KEY_PLACEHOLDERS = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "secret",
        "test-secret-key-not-for-production",
        "insecure-development-key-do-not-use-in-production",
    }
)
SECRET_KEY_MIN_LENGTH = 50
_KEY_HOW_TO = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'


def secret_key_problem(key: str) -> str:
    """Why ``key`` is no production SECRET_KEY ('' when it is fine)."""
    if key.strip().lower() in SECRET_KEY_PLACEHOLDERS or key.startswith("django-insecure-"):
        return "is a published placeholder"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is {len(key)} characters long, shorter than {SECRET_KEY_MIN_LENGTH}"
    if len(set(key)) < 5:
        return "has fewer than 5 different characters"
    return ""


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY (or SECRET_KEY_FILE), "
            f"or DEBUG=true for local development; {_KEY_HOW_TO}"
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105 - DEBUG only
elif not DEBUG and (problem := secret_key_problem(SECRET_KEY)):
    raise ImproperlyConfigured(f"SECRET_KEY {problem}: refused when DEBUG is off; {_KEY_HOW_TO}")

# Fernet key(s) for broker credentials at rest; comma-separated, newest first (rotation).
_FERNET_HOW_TO = "generate one with: python -c " + (
    '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)
DLQADMIN_ENCRYPTION_KEY = env_secret("DLQADMIN_ENCRYPTION_KEY")
if not DLQADMIN_ENCRYPTION_KEY and not DEBUG:
    raise ImproperlyConfigured(f"DLQADMIN_ENCRYPTION_KEY is required when DEBUG is off ({_FERNET_HOW_TO})")


def fernet_key_problem(key: str) -> str:
    """Why ``key`` is no Fernet key (32 bytes, URL-safe base64), '' when it is one."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "is not URL-safe base64"
    return "" if len(raw) == 32 else f"decodes to {len(raw)} bytes, not 32"


_fernet_keys = [k.strip() for k in DLQADMIN_ENCRYPTION_KEY.split(",") if k.strip()]
for _number, _key in enumerate(_fernet_keys, start=1):
    if problem := fernet_key_problem(_key):  # the key itself is never repeated in the message
        raise ImproperlyConfigured(
            f"DLQADMIN_ENCRYPTION_KEY: key {_number} of {len(_fernet_keys)} {problem}, so it is no "
            f"Fernet key ({_FERNET_HOW_TO})"
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "dlqadmin",
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
    "dlqadmin.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "dlqadmin.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "dlqadmin.wsgi.application"
ASGI_APPLICATION = "dlqadmin.asgi.application"

# PostgreSQL only, everywhere (`make demo` starts an embedded one and passes its URL).
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is required: the URL of a PostgreSQL database "
        "(postgres://user:password@host:5432/dbname). `make demo` starts an embedded PostgreSQL "
        "and sets it for its own processes."
    )
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
except ValueError as exc:  # an unknown scheme
    raise ImproperlyConfigured(f"DATABASE_URL is not a PostgreSQL URL ({exc})") from None
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        f"DATABASE_URL must point at PostgreSQL (postgres://...), not {DATABASE_URL.split(':', 1)[0]}: "
        "dlqadmin supports PostgreSQL only"
    )

# Session settings of every database connection. The dashboard, the API and the harvest run short
# indexed queries: there a parallel plan's worker start-up and JIT compilation cost more than they
# save, and the workers take cores the other processes need (the header filter at 1M rows: 33 ms
# with a parallel plan, 7-12 ms serial; docs/benchmarks.md). DB_SESSION_OPTIONS= keeps the server's.
DB_SESSION_OPTIONS = env_str("DB_SESSION_OPTIONS", "-c jit=off -c max_parallel_workers_per_gather=0")
if DB_SESSION_OPTIONS.strip():
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} {DB_SESSION_OPTIONS}".strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = ["dlqadmin.auth.ThrottledModelBackend"]
# Sign-in throttling: this many failures per username or per address lock it out for the window.
DLQADMIN_LOGIN_MAX_FAILURES = env_int("DLQADMIN_LOGIN_MAX_FAILURES", 10)
DLQADMIN_LOGIN_LOCKOUT_SECONDS = env_int("DLQADMIN_LOGIN_LOCKOUT_SECONDS", 900)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# Static files are served by WhiteNoise under daphne (collected by `collectstatic` in the image;
# straight from the source folders when DEBUG is on, e.g. `make demo`).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Redis: channel layer + Celery. Without REDIS_URL: in-memory channel layer and an in-process
# Celery worker thread (see dlqadmin/celery.py) so tasks still run asynchronously.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "dlqadmin",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout must exceed channels_redis's 5 s blocking read, or consumers time out
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "asgi"),
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # A task held by a worker that died is redelivered after this long (chunks take seconds).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
# Explicit overrides (e.g. `make demo` without Redis uses kombu's filesystem transport so the
# web, worker and harvester processes still share one queue).
if env_str("CELERY_BROKER_URL"):
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
if env_str("CELERY_RESULT_BACKEND"):
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND")
if env_str("CELERY_BROKER_TRANSPORT_OPTIONS"):
    try:
        CELERY_BROKER_TRANSPORT_OPTIONS = json.loads(env_str("CELERY_BROKER_TRANSPORT_OPTIONS"))
    except ValueError as exc:
        raise ImproperlyConfigured(f"CELERY_BROKER_TRANSPORT_OPTIONS is not JSON: {exc}") from None
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "redrive-jobs-watchdog": {"task": "dlqadmin.tasks.redrive_jobs_watchdog", "schedule": 30.0},
    "auto-retry": {"task": "dlqadmin.tasks.auto_retry_run", "schedule": 15.0},
    "worker-heartbeat": {"task": "dlqadmin.tasks.worker_heartbeat", "schedule": 30.0},
    "search-index": {"task": "dlqadmin.tasks.search_index", "schedule": 5.0},
    "alerts-evaluate": {"task": "dlqadmin.tasks.alerts_evaluate", "schedule": 60.0},
    "connections-health": {"task": "dlqadmin.tasks.connections_check_idle", "schedule": 60.0},
    "retention-purge": {"task": "dlqadmin.tasks.retention_purge", "schedule": 6 * 3600.0},
    "partitions-ensure": {"task": "dlqadmin.tasks.partitions_ensure", "schedule": 300.0},
}
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "dlqadmin.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "dlqadmin.api.permissions.UserThrottle",
        "dlqadmin.api.permissions.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "dlq-user": env_str("API_THROTTLE_USER", "600/min"),
        "dlq-anon": env_str("API_THROTTLE_ANON", "30/min"),
    },
    "EXCEPTION_HANDLER": "dlqadmin.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "dlqadmin API",
    "DESCRIPTION": "Dead-letter queue console for RabbitMQ, Kafka and NATS JetStream.",
    "VERSION": "1",
    # Swagger UI assets are served from this app (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # OpenAPI links: which answer's id feeds which next request (dlqadmin/api/schema.py)
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "dlqadmin.api.schema.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DeadLetterStatusEnum": "dlqadmin.models.DeadLetterStatus",
        "ErrorGroupStatusEnum": "dlqadmin.models.ErrorGroupStatus",
        "RedriveJobStatusEnum": "dlqadmin.models.RedriveJobStatus",
    },
}

# Harvest defaults (per-source options override these).
DLQADMIN_HARVEST_BATCH_SIZE = env_int("DLQADMIN_HARVEST_BATCH_SIZE", 500)
DLQADMIN_MAX_REDRIVES = env_int("DLQADMIN_MAX_REDRIVES", 5)
# Resolved / discarded / archived dead letters are deleted this many days after they failed (0 = keep).
DLQADMIN_RETENTION_DAYS = env_int("DLQADMIN_RETENTION_DAYS", 30)
# Dead-letter bodies are stored in partitions of this many ids (in harvest order); retention drops a
# whole partition once all its messages may go. May change at any time (it applies to the next
# partition created). docs/architecture.md, "Storage".
DLQADMIN_PARTITION_SIZE = env_int("DLQADMIN_PARTITION_SIZE", 1_000_000)
if DLQADMIN_PARTITION_SIZE < 1:
    raise ImproperlyConfigured(
        f"DLQADMIN_PARTITION_SIZE must be a positive number of ids, not {DLQADMIN_PARTITION_SIZE}"
    )
# The lease of a claimed redrive chunk: its worker renews it while alive; once it expired (the
# worker died), another worker claims the chunk again under a new fencing token.
DLQADMIN_STALE_CLAIM_SECONDS = env_int("DLQADMIN_STALE_CLAIM_SECONDS", 120)
# tasks that work one redrive job at once (each claims its own chunks; the velocity is job-wide)
DLQADMIN_REDRIVE_LANES = env_int("DLQADMIN_REDRIVE_LANES", 2)
# a redrive over a filter claims this many messages in the request; the worker claims the rest
DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = env_int("DLQADMIN_REDRIVE_CLAIM_IN_REQUEST", 2000)
# a dashboard or admin selection posts one field per id: room for the id limit of a selection
# (dlqadmin.services.redrive.options.MAX_SELECTION_IDS, 10 000) plus the other fields
DATA_UPLOAD_MAX_NUMBER_FIELDS = 11_000

# Connection health: the harvester and redrive workers record what they see at most this often
# per connection (at once when it changes); beat checks the connections nobody reported on for
# DLQADMIN_HEALTH_IDLE_SECONDS.
DLQADMIN_HEALTH_RECORD_SECONDS = env_int("DLQADMIN_HEALTH_RECORD_SECONDS", 15)
DLQADMIN_HEALTH_IDLE_SECONDS = env_int("DLQADMIN_HEALTH_IDLE_SECONDS", 120)

# /metrics: a bearer token, or else only these networks may scrape.
DLQADMIN_METRICS_TOKEN = env_secret("DLQADMIN_METRICS_TOKEN")
DLQADMIN_METRICS_ALLOWED_NETS = env_networks("DLQADMIN_METRICS_ALLOWED_NETS", "127.0.0.0/8,::1/128")
# Reverse proxies whose X-Forwarded-For is believed (dlqadmin/proxies.py); empty: none, the
# client is REMOTE_ADDR.
DLQADMIN_TRUSTED_PROXIES = env_networks("DLQADMIN_TRUSTED_PROXIES")

# Content-Security-Policy: scripts only from our origin (no inline script anywhere).
DLQADMIN_CSP = env_str(
    "DLQADMIN_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'",
)

# Web security when not in DEBUG.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # probes and scrapers talk plain HTTP to the process itself, past the TLS-terminating proxy
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Email for alerts (Django's email backends).
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "dlqadmin@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
