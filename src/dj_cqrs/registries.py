"""Upstream import path ``dj_cqrs.registries``."""

from dj_cqrs.registry import MasterRegistry, RegistryMixin, ReplicaRegistry

__all__ = ['MasterRegistry', 'RegistryMixin', 'ReplicaRegistry']
