# SPDX-License-Identifier: GPL-3.0-or-later
"""The smallest Django project django-helpdesk runs in, for bench/peers/helpdesk_feed.py.

Everything it writes (the SQLite database, stored attachments, outgoing mail) goes into the folder
named by HELPDESK_BENCH_DIR, a fresh temporary folder per run. It is a settings module rather than
settings.configure() in the feeder because `django-admin get_email`, helpdesk's own mail command,
runs in processes of its own and must find the same project.
"""

import os
from pathlib import Path

_DIR = Path(os.environ["HELPDESK_BENCH_DIR"])

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "django.contrib.messages",
    "django.contrib.humanize",
    "rest_framework",
    "helpdesk",
]
SITE_ID = 1
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_DIR / "helpdesk.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "helpdesk_urls"
# The middleware of a default project; the admin, which helpdesk's pages link to, checks for it.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
MEDIA_ROOT = str(_DIR / "media")
# Outgoing mail is written to files, never sent: it is counted afterwards, in every process.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = str(_DIR / "sent")
DEFAULT_FROM_EMAIL = "support@example.com"
# Teams need the optional pinax-teams package, which a mail benchmark has no use for.
HELPDESK_TEAMS_MODE_ENABLED = False
