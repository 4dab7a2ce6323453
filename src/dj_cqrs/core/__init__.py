"""Pure core of dj_cqrs: message values, the wire codec, routing names and retry policy.

Nothing in this package imports Django, pika or kombu.
"""
