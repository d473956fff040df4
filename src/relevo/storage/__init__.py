"""Storage protocols and the backends that implement them, opened by URL.

See :mod:`relevo.storage.protocols` for the contracts and :mod:`relevo.storage.registry`
for ``open_event_log(url)`` and friends.
"""
