"""Turns committed master changes into payloads and hands them to the producer.

Every event leaves through ``dj_cqrs.controller.producer.produce``, looked up at call time,
because users' test suites patch that function.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from dj_cqrs.constants import SignalType
from dj_cqrs.master import outbox
from dj_cqrs.payload import TransportPayload, get_message_expiration_dt

logger = logging.getLogger('django-cqrs')


def build_save_payload(
    instance: Any, using: str | None, sync: bool = False, queue: str | None = None
) -> TransportPayload:
    instance_data = instance.to_cqrs_dict(using, sync=sync)
    previous_data = instance.get_tracked_fields_data()
    signal_type = SignalType.SYNC if sync else SignalType.SAVE
    meta = instance.get_cqrs_meta(
        instance_data=instance_data, previous_data=previous_data, signal_type=signal_type
    )
    return TransportPayload(
        signal_type,
        instance.CQRS_ID,
        instance_data,
        instance.pk,
        queue,
        previous_data,
        expires=get_message_expiration_dt(),
        meta=meta,
    )


def build_delete_payload(instance: Any) -> TransportPayload:
    revision = instance.cqrs_revision
    instance_data: dict[str, Any] = {
        'id': instance.pk,
        'cqrs_revision': (revision if isinstance(revision, int) else 0) + 1,
        'cqrs_updated': str(timezone.now()),
    }
    custom = instance.get_custom_cqrs_delete_data()
    if custom:
        instance_data['custom'] = custom
    meta = instance.get_cqrs_meta(instance_data=instance_data, signal_type=SignalType.DELETE)
    return TransportPayload(
        SignalType.DELETE,
        instance.CQRS_ID,
        instance_data,
        instance.pk,
        expires=get_message_expiration_dt(),
        meta=meta,
    )


def publish_save(
    instance: Any, using: str, sync: bool = False, queue: str | None = None, outbox_id: int | None = None
) -> None:
    """Serialize ``instance`` now (it is committed) and publish it."""
    instance.reset_cqrs_saves_count()
    instance.__dict__.pop('_cqrs_pending', None)
    try:
        payload = build_save_payload(instance, using, sync=sync, queue=queue)
    except ObjectDoesNotExist:
        logger.error(
            "Can't produce message from master model '%s': The instance doesn't exist (pk=%s)",
            type(instance).__name__,
            instance.pk,
        )
        if outbox_id is not None:
            outbox.delivered.add(using, [outbox_id])  # the row is gone: its DELETE event has its own row
        return
    except Exception:
        # A broken serializer must not stop the other events of the transaction (upstream lets
        # it escape from on_commit, which skips every later callback). An outbox row stays.
        logger.exception("CQRS couldn't be serialized: pk = %s (%s).", instance.pk, instance.CQRS_ID)
        return
    emit(payload, using, outbox_id)


#: While the broker is failing, the fast path leaves events to the relay instead of making every
#: committing request wait for a publish timeout.
BREAKER_SECONDS = 5.0
_breaker = {'open_until': 0.0}


def emit(payload: TransportPayload, using: str = 'default', outbox_id: int | None = None) -> bool:
    """Publish through ``producer.produce``; return whether the event was delivered."""
    from dj_cqrs.controller import producer

    if outbox_id is not None and time.monotonic() < _breaker['open_until']:
        return False
    try:
        result = producer.produce(payload)
    except Exception:
        logger.exception("CQRS couldn't be published: pk = %s (%s).", payload.pk, payload.cqrs_id)
        result = False
    if result is False:  # our transports return False when the broker did not confirm
        if outbox_id is not None:
            _breaker['open_until'] = time.monotonic() + BREAKER_SECONDS
            logger.warning(
                'CQRS event kept in the outbox for the relay: pk = %s (%s), outbox id = %s.',
                payload.pk,
                payload.cqrs_id,
                outbox_id,
            )
        return False
    if outbox_id is not None:
        _breaker['open_until'] = 0.0
        outbox.delivered.add(using, [outbox_id])
        from dj_cqrs.master import relay

        relay.maybe_catch_up(using)
    return True
