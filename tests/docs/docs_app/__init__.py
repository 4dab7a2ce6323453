"""The app the documentation's model snippets are defined in (see tests/docs/runner.py)."""
