"""One Redis server or a Redis Cluster behind the same calls.

``connect(url, cluster=...)`` returns ``redis.Redis`` or ``redis.cluster.RedisCluster``
(``REELSIFT_REDIS_CLUSTER``: a URL names one node, the client discovers the others).
The stream code is written for both: every command or script that touches several keys
names keys of one partition, which share a hash tag (``layout``), so they sit in one slot.

Two calls differ on a cluster, and go through here:

- a Lua script in a pipeline: redis-py's cluster pipeline refuses EVALSHA (a node may
  not have the script loaded, and it cannot load it mid-pipeline), so ``LuaScript``
  sends EVAL with the script's text there; the server caches the compiled script by its
  hash all the same. On one server it is the usual ``register_script`` (EVALSHA).
- MGET in a pipeline: refused by name by the cluster pipeline (it cannot know the keys
  share a slot); ``mget`` sends it as a raw command, which the pipeline routes by its
  keys' slot and rejects client-side if they do not share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import ClusterPipeline, RedisCluster

RedisClient = redis.Redis | RedisCluster
RedisPipeline = redis.client.Pipeline | ClusterPipeline


def connect(url: str, *, cluster: bool = False, **options: Any) -> RedisClient:
    """A client for ``url``; ``cluster``: a Redis Cluster reached through that node."""
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def is_cluster(client: RedisClient | RedisPipeline) -> bool:
    return isinstance(client, RedisCluster)  # ClusterPipeline is a RedisCluster too


class LuaScript:
    """A script run with keys of one slot, on one server or a cluster, in a pipeline or not."""

    def __init__(self, client: RedisClient, text: str) -> None:
        self.text = text
        self._script = client.register_script(text)

    def __call__(self, keys: Sequence[Any], args: Sequence[Any],
                 client: RedisClient | RedisPipeline) -> Any:
        if is_cluster(client):
            # (ClusterPipeline.eval is not the EVAL command: it runs the pipeline)
            return client.execute_command("EVAL", self.text, len(keys), *keys, *args)
        return self._script(keys=list(keys), args=list(args), client=client)  # type: ignore[arg-type]


def mget(client: RedisClient | RedisPipeline, keys: Sequence[Any]) -> Any:
    """MGET of keys that share a slot (a pipeline's reply comes at ``execute``)."""
    return client.execute_command("MGET", *keys)
