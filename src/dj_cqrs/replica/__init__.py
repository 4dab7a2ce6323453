"""Replica side: model mixins, data mapping, revision fencing and dispatch of received events."""
