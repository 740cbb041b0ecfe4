#!/usr/bin/env python
"""The Django 6 task shop: ``manage.py oban start`` runs its tasks (tests/ext/django6)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskshop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
