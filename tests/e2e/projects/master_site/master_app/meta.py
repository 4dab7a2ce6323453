"""The default generic meta function of the master (``CQRS['master']['meta_function']``)."""

import os


def get_cqrs_meta(obj=None, **kwargs):
    meta = {
        'via': 'meta_function',
        'cqrs_id': getattr(obj, 'CQRS_ID', None),
        'signal_type': str(kwargs.get('signal_type')),
        'kwargs': sorted(kwargs),
    }
    # The guide's get_cqrs_meta override indexes meta['access'] on what super() returns. Our
    # package's default meta supports that by itself; upstream needs the key to exist already
    # (the harness sets CQRS_E2E_META_ACCESS=1 when the master runs upstream).
    if os.environ.get('CQRS_E2E_META_ACCESS') == '1':
        meta['access'] = {}
    return meta
