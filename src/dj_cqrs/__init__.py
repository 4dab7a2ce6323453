"""dj_cqrs: CQRS data synchronisation between Django services."""
