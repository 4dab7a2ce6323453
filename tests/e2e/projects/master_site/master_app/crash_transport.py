"""A test-only transport of the crash tests: the RabbitMQ transport that SIGKILLs its own process.

Enabled by ``CQRS_E2E_KILL_ON_PRODUCE=N`` (see master_settings): the Nth ``produce`` call kills the
process before anything is sent. ``produce`` runs in the on-commit callback, so the change (and its
outbox row) is committed and the event is not published: the window the outbox exists for.
"""

import os
import signal
import sys
import threading

from dj_cqrs.transport import RabbitMQTransport

_lock = threading.Lock()
_calls = [0]


class KillOnProduceTransport(RabbitMQTransport):
    @classmethod
    def produce(cls, payload):
        with _lock:
            _calls[0] += 1
            n = _calls[0]
        if n == int(os.environ['CQRS_E2E_KILL_ON_PRODUCE']):
            sys.stderr.write(f'e2e: SIGKILL on produce call {n}: pk = {payload.pk} ({payload.cqrs_id})\n')
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().produce(payload)
