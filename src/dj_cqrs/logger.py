"""Upstream import path ``dj_cqrs.logger``."""

from dj_cqrs.replica.dispatch import install_last_query_capturer, log_timed_out_queries

__all__ = ['install_last_query_capturer', 'log_timed_out_queries']
