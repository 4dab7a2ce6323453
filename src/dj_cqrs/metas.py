"""Upstream import path ``dj_cqrs.metas``."""

from dj_cqrs.master.mixins import MasterMeta
from dj_cqrs.replica.mixins import ReplicaMeta

__all__ = ['MasterMeta', 'ReplicaMeta']
