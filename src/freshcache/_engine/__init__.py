"""freshcache's engine: the implementation behind ``Cache`` and the decorators. Private: import
from ``freshcache`` (or ``freshcache.cache`` / ``freshcache.decorators``) instead.

Modules, lowest first (each imports only those above it, and the leaves of the package):

- ``keyspace``: every key string (entry, token, lock keys), ``Located``.
- ``spec``: what one ``@cached`` declares; one call's ``Located``, memoised.
- ``ops``: the operations procedures yield; backend calls typed against both protocols.
- ``health``: breaker, kept invalidations, last error.
- ``rules``: TTLs, the envelope encoding, judging a fetch, early refresh.
- ``ledger``: which stats record a read or an invalidation counts under.
- ``invalidation``: the strategy and the plan and bookkeeping of one invalidation.
- ``scope``: units of work (invalidations deferred until commit).
- ``flows``: the miss, lock, warm, naive and invalidation procedures, written once.
- ``drivers``: run a procedure for an async or a sync caller; the single-flight tables.
- ``engine``: the read (hit path written out per driver), warm and invalidation paths.
- ``wrappers``: what the decorators return; sync or async chosen at decoration.
"""
