"""One Redis server or a Redis Cluster behind the same calls.

``connect(url, cluster=...)`` returns ``redis.Redis`` or ``redis.cluster.RedisCluster``
(``REELSIFT_REDIS_CLUSTER``: a URL names one node, the client discovers the others).
The stream code is written for both: every command or script that touches several keys
names keys of one partition, which share a hash tag (``layout``), so they sit in one slot.

Three calls differ on a cluster, and go through here:

- a Lua script in a pipeline: redis-py's cluster pipeline refuses EVALSHA (a node may
  not have the script loaded, and it cannot load it mid-pipeline), so ``LuaScript``
  sends EVAL with the script's text there; the server caches the compiled script by its
  hash all the same. On one server it is the usual ``register_script`` (EVALSHA).
- MGET in a pipeline: refused by name by the cluster pipeline (it cannot know the keys
  share a slot); ``mget`` sends it as a raw command, which the pipeline routes by its
  keys' slot and rejects client-side if they do not share one.
- XREAD / XREADGROUP of one stream: their keys sit at a movable position, so redis-py's
  cluster client asks a server for them (COMMAND GETKEYS, twice, each a round trip of its
  own) for every such command it routes: 64 extra round trips for a replica's poll of 32
  streams. ``xread``/``xreadgroup`` run them in a script there, whose key the client
  reads itself (``KeyedScripts``; it follows MOVED/ASK like any keyed command);
  ``stream_entries`` reads either reply (Lua's nested arrays, or redis-py's parsed XREAD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.policies import (
    BasePolicyResolver,
    CommandPolicies,
    PolicyResolver,
    RequestPolicy,
    ResponsePolicy,
    StaticPolicyResolver,
)

RedisClient = redis.Redis | RedisCluster
RedisPipeline = redis.client.Pipeline | ClusterPipeline


class KeyedScripts(BasePolicyResolver):
    """EVAL routed by its keys without asking a server for them.

    A cluster client with no policy for a command asks a server which arguments are its
    keys (COMMAND GETKEYS: a round trip of its own, per command, before the command is
    even sent) when the command's keys sit at a movable position, as EVAL's do. EVAL is
    keyed (its keys follow ``numkeys``, which redis-py reads itself once it knows that):
    saying so here spares that round trip for every script call.
    """

    def __init__(self, fallback: PolicyResolver | None = None) -> None:
        keyed = CommandPolicies(request_policy=RequestPolicy.DEFAULT_KEYED,
                                response_policy=ResponsePolicy.DEFAULT_KEYED)
        super().__init__({"core": {"eval": keyed}}, fallback or StaticPolicyResolver())

    def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
        return KeyedScripts(fallback)


class StreamCluster(RedisCluster):
    """``RedisCluster`` whose pipelines use its policy resolver (redis-py 8.1 builds a
    pipeline with the default resolver whatever the client was given)."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        pipe._policy_resolver = self._policy_resolver
        return pipe


def connect(url: str, *, cluster: bool = False, **options: Any) -> RedisClient:
    """A client for ``url``; ``cluster``: a Redis Cluster reached through that node."""
    if cluster:
        return StreamCluster.from_url(url, policy_resolver=KeyedScripts(), **options)
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


_XREAD = "return redis.call('XREAD', 'COUNT', ARGV[1], 'STREAMS', KEYS[1], ARGV[2])"
_XREADGROUP = ("return redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], "
               "'STREAMS', KEYS[1], ARGV[4])")


def xread(client: RedisClient | RedisPipeline, stream: str, position: str, count: int) -> Any:
    """Entries of one stream after ``position``; read the reply with ``stream_entries``."""
    if is_cluster(client):
        return client.execute_command("EVAL", _XREAD, 1, stream, count, position)
    return client.xread({stream: position}, count=count)


def xreadgroup(client: RedisClient | RedisPipeline, group: str, consumer: str, stream: str,
               count: int) -> Any:
    """New entries of one stream for ``consumer``; read the reply with ``stream_entries``."""
    if is_cluster(client):
        return client.execute_command("EVAL", _XREADGROUP, 1, stream, group, consumer, count,
                                      ">")
    return client.xreadgroup(group, consumer, {stream: ">"}, count=count)


def stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """``(entry id, fields)`` of an ``xread``/``xreadgroup`` reply of one stream, from
    redis-py's parsed form (a list, or a dict under RESP3) or a script's nested arrays;
    fields are a dict (None for an entry trimmed away before it was claimed)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (rows,) = reply.values()
    else:
        ((_stream, rows),) = reply
    entries = []
    for entry_id, fields in rows:
        if isinstance(fields, list):  # a script's reply: [field, value, field, value, ...]
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        entries.append((entry_id, fields))
    return entries
