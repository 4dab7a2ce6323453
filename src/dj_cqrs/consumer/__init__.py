"""Replica consumer: the worker loop and the process supervisor of ``cqrs_consume``."""
