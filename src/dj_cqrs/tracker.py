"""Upstream import path ``dj_cqrs.tracker``."""

from dj_cqrs.master.tracking import CQRSTracker

__all__ = ['CQRSTracker']
