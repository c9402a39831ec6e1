# SPDX-License-Identifier: GPL-3.0-or-later
"""URLs of the benchmark's django-helpdesk project: helpdesk's mails link to its ticket pages."""

from django.urls import include, path

urlpatterns = [path("helpdesk/", include("helpdesk.urls"))]
