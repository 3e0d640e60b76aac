"""Search on a Ray cluster: each index of an archive in a shard actor (vectors and records only), searched
in parallel and merged as :class:`~geovec.backend.search.MultiStore` merges indexes in one process.

:class:`RayShards` is the :class:`~geovec.backend.search.IndexSet` that ``geovec serve --engine ray`` and
``geovec search --engine ray`` hand to ``service.run_search``; :mod:`.shard` is the actor's body.
"""

from .shards import RayIndexSet, RayShards, ShardProxy, shard_memory

__all__ = ["RayIndexSet", "RayShards", "ShardProxy", "shard_memory"]
