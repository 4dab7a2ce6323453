#!/usr/bin/env python
"""replica_site: the bench replica project (settings from BENCH_* environment variables)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

if __name__ == '__main__':
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'replica_settings')
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
