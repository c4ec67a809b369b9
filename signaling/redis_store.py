"""The shared :class:`~signaling.store.Store` of several server instances: Redis.

Every instance of a deployment opens a :class:`RedisStore` on the same Redis
database. The delivery service's ordering rule (RFC 9420 §14: the delivery
service orders handshake messages; §12.4: exactly one commit moves the group
from epoch n to n+1) holds across instances because each
:meth:`RedisStore.append` is one Lua script run by Redis atomically: the epoch
compare-and-set, the public view's version check (``STALE_VIEW``), the
per-epoch quotas, the sequence numbers, the log write, the room's public
group state, the pruning of :class:`~signaling.store.LogPolicy` and the
PUBLISH of the append's :class:`~signaling.store.FeedItem` on the room's
channel. Redis runs one script at a time, so the channel's order is the
log's ``seq`` order, and a result is returned only after Redis applied all of
it.

Keys: every key of a room carries the room name as its hash tag
(``<prefix>:{<room>}:log`` and so on), so a Redis Cluster would keep each
room on one shard and the room's script would touch one shard only; rooms
spread over shards. The log of a room is a sorted set scored by ``seq``
whose members are the encoded entries (:data:`_HEADER`, then the sender,
group id, recipient and MLS message bytes, raw); the room's state is a hash
(group id, epoch, last seq, pruning marks, the public view and its version,
the log's size, the current epoch's quota usage); an index hash beside them
holds the seq of each epoch's commit (``c<epoch>``), of each recipient's
newest Welcome (``w<identity>``) and each sender's quota usage
(``u<identity>``); then the admitted identities, the presence of each identity (which instance holds its
connection) and the KeyPackages of each identity (a list: RPUSH to publish,
LPOP to claim the oldest atomically), and the room's SFU state (a hash: its Janus
room, secret, generation and topology; a hash of published feeds). An instance is alive while its key
``<prefix>:instance:{<id>}`` exists: :meth:`RedisStore.heartbeat` sets it with
a PX expiry, :meth:`RedisStore.presence` leaves out identities held by an
instance whose key has expired, and :meth:`RedisStore.sweep_presence` drops
them (each with one script that checks the holder, so of instances sweeping
at once one gets each identity).

Durability: an acknowledged entry is one Redis has applied. Redis writes the
script's effects to its append-only file as one unit; with ``appendonly
yes`` and ``appendfsync always`` it fsyncs that file before it answers the
script (and before it delivers the PUBLISH to other instances), so every
acknowledged entry survives a SIGKILL of redis-server or a crash of its host.
``appendfsync everysec`` fsyncs once a second: a crash of the Redis host (not
of the redis-server process alone) may lose up to a second of acknowledged
entries, which the members then hold and the log does not. Without the
append-only file nothing survives a restart. The client never retries a
command on its own: an append whose answer was lost may have been applied,
and a retry would log it twice.

The feed is Redis pub/sub: at most once. An instance whose feed connection
drops (or which falls further behind than Redis's ``client-output-buffer-limit
pubsub``, 32 MB by default, and is disconnected for it) misses what was
published meanwhile; the store reconnects and subscribes again, and once
Redis confirms a room's channel again it hands the room's handler a
``resync`` item, on which the consumer reads the missing seqs with
:meth:`RedisStore.read_entries` (as it does when an item shows a seq gap).
Channel names carry the database number and the key prefix, since pub/sub
spans a server's databases. Items arrive on their own connection, so an
instance may see its own append on the feed before or after the append
returns (SQLite's feed comes before, always).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .store import (AppendRequest, AppendResult, ApplicationRequest, CommitRequest, EntryKind, FeedItem,
                    GroupCreateRequest, LogEntry, LogPolicy, Outcome, Presence, ProposalRequest,
                    QuotaExceeded, RoomGroup, SfuRoomRecord)

logger = logging.getLogger("signaling")

#: An encoded entry: seq, the store clock when appended, kind, and the lengths of the epoch
#: (decimal: Lua's numbers are exact up to 2^53 only), sender, group id, recipient (``_NONE``:
#: absent) and MLS message that follow it.
_HEADER = struct.Struct(">ddBIIIII")
_NONE = 0xFFFFFFFF
_KINDS = (EntryKind.COMMIT, EntryKind.PROPOSAL, EntryKind.WELCOME, EntryKind.APPLICATION)
_LENGTH = struct.Struct(">I")
#: An append request for the script: type (G, C, P, A), whether it carries a public view, the
#: view's version (-1: not checked), the number of Welcomes, and the lengths of the epoch
#: (decimal), sender, group id, MLS message and view that follow it; then each Welcome:
#: :data:`_WELCOME`, the recipient, the Welcome.
_REQUEST = struct.Struct(">cBdIIIIII")
_WELCOME = struct.Struct(">II")
#: Feed messages: an append's entries, or a signal (JSON), after the origin instance id.
_FEED_ENTRIES, _FEED_SIGNAL = b"E", b"S"
#: Entries the read scripts look at per ZRANGEBYSCORE call.
_PAGE = 256

_LUA_COMMON = """
local HEADER = '>ddBI4I4I4I4I4'
local REQUEST = '>c1BdI4I4I4I4I4I4'
local NONE = 4294967295
local function num(x) return string.format('%d', x) end
-- Epochs stay decimal strings: exact up to 2^63, where Lua's numbers (doubles) stop at 2^53.
-- a + n for a small integer n
local function add(a, n)
  if #a <= 15 then return num(tonumber(a) + n) end
  local high, low = string.sub(a, 1, #a - 15), tonumber(string.sub(a, #a - 14)) + n
  if low < 0 then
    high, low = add(high, -1), low + 1e15
  elseif low >= 1e15 then
    high, low = add(high, 1), low - 1e15
  end
  if high == '0' then return num(low) end
  return high .. string.format('%015d', low)
end
-- a < b
local function less(a, b)
  local neg_a, neg_b = string.byte(a, 1) == 45, string.byte(b, 1) == 45
  if neg_a ~= neg_b then return neg_a end
  if neg_a then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  for k = 1, #a do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return false
end
local function larger(a, b) if less(a, b) then return b end return a end
local function smaller(a, b) if less(a, b) then return a end return b end
local function encode(seq, kind, sender, epoch, gid, rcp, body, at)
  return struct.pack(HEADER, seq, at, kind, #epoch, #sender, gid and #gid or NONE, rcp and #rcp or NONE, #body)
    .. epoch .. sender .. (gid or '') .. (rcp or '') .. body
end
-- seq, epoch, at, kind, sender, recipient (false: none), size of the MLS message
local function decode(m)
  local seq, at, kind, le, ls, lg, lr, lb, pos = struct.unpack(HEADER, m)
  local epoch = string.sub(m, pos, pos + le - 1)
  pos = pos + le
  local sender = string.sub(m, pos, pos + ls - 1)
  pos = pos + ls
  if lg ~= NONE then pos = pos + lg end
  local rcp = false
  if lr ~= NONE then rcp = string.sub(m, pos, pos + lr - 1) end
  return seq, epoch, at, kind, sender, rcp, lb
end
"""

#: One append: KEYS room, log, index; ARGV channel, origin, now, the seven
#: limits of LogPolicy (each followed by a comma, empty for none), then one :data:`_REQUEST` each.
#: The reply: one ``outcome,epoch[,first seq,count | ,scope,unit,limit]`` per request, joined by
#: ``;`` (one string: far cheaper for the client to read than nested arrays).
_APPEND = _LUA_COMMON + """
local room_key, log_key, index_key = KEYS[1], KEYS[2], KEYS[3]
local channel, origin, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limits = {}
for v in string.gmatch(ARGV[4], '([^,]*),') do limits[#limits + 1] = tonumber(v) or false end
local p_epochs, p_max_bytes, p_max_age = limits[1] or nil, limits[2] or nil, limits[3] or nil
local p_sender_bytes, p_sender_entries = limits[4] or nil, limits[5] or nil
local p_room_bytes, p_room_entries = limits[6] or nil, limits[7] or nil

local st = redis.call('HMGET', room_key, 'group_id', 'epoch', 'last_seq', 'log_bytes', 'quota_epoch',
                      'quota_entries', 'quota_bytes', 'public_version', 'pruned_seq', 'pruned_epoch')
local group_id, epoch = st[1], st[2]
local seq, log_bytes = tonumber(st[3] or 0), tonumber(st[4] or 0)
local version = tonumber(st[8] or 0)
local pruned_seq, pruned_epoch = tonumber(st[9] or 0), st[10] or '-1'

local function new_usage(e) return {epoch = e, room = {0, 0}, senders = {}} end
local usage = new_usage(epoch or '-1')
if st[5] == usage.epoch then usage.room = {tonumber(st[6]), tonumber(st[7])} end

local function sender_usage(sender)
  local mine = usage.senders[sender]
  if not mine then
    mine = {0, 0}
    local raw = redis.call('HGET', index_key, 'u' .. sender)
    if raw then
      local e, n, b = string.match(raw, '^(.*):(%d+):(%d+)$')
      if e == usage.epoch then mine = {tonumber(n), tonumber(b)} end
    end
    usage.senders[sender] = mine
  end
  return mine
end

-- the quota exceeded as {scope, unit, limit}, or nil after counting the entry
local function charge(sender, size)
  local mine = sender_usage(sender)
  local scopes = {{'sender', mine, p_sender_entries, p_sender_bytes}, {'room', usage.room, p_room_entries, p_room_bytes}}
  for _, s in ipairs(scopes) do
    if s[3] and s[2][1] + 1 > s[3] then return {s[1], 'entries', s[3]} end
    if s[4] and s[2][2] + size > s[4] then return {s[1], 'bytes', s[4]} end
  end
  for _, u in ipairs({mine, usage.room}) do u[1] = u[1] + 1; u[2] = u[2] + size end
  return nil
end

-- forget the index entries of a pruned entry
local function forget(m)
  local s, e, _, kind, _, rcp = decode(m)
  if kind == 0 then redis.call('HDEL', index_key, 'c' .. e) end
  if kind == 2 and tonumber(redis.call('HGET', index_key, 'w' .. rcp)) == s then
    redis.call('HDEL', index_key, 'w' .. rcp)
  end
end

local function remove_members(members)
  for i = 1, #members, 500 do
    redis.call('ZREM', log_key, unpack(members, i, math.min(i + 499, #members)))
  end
end

-- every entry before the commit made in epoch cutoff goes; the bytes freed
local function prune_epochs(cutoff)
  local start = redis.call('HGET', index_key, 'c' .. cutoff)
  if not start then return 0 end
  start = tonumber(start)
  local freed = 0
  while true do
    local page = redis.call('ZRANGEBYSCORE', log_key, '-inf', '(' .. num(start), 'LIMIT', 0, 256)
    if #page == 0 then break end
    for _, m in ipairs(page) do
      local _, _, _, _, _, _, size = decode(m)
      freed = freed + size
      forget(m)
    end
    remove_members(page)
  end
  pruned_seq = math.max(pruned_seq, start - 1)
  pruned_epoch = larger(pruned_epoch, cutoff)
  return freed
end

-- the oldest entries go while over max_bytes or older than max_age, sparing the commit that
-- started the current epoch, the epoch's Welcomes and proposals, and this append's entries
local function prune_size_and_age(appended)
  local excess = p_max_bytes and (log_bytes - p_max_bytes) or 0
  local threshold = p_max_age and (now - p_max_age) or nil
  local first = redis.call('ZRANGE', log_key, 0, 0)
  if #first == 0 then return 0 end
  local _, _, oldest_at = decode(first[1])
  if excess <= 0 and (threshold == nil or oldest_at >= threshold) then return 0 end
  local spared_from = 0
  if epoch then
    local started = redis.call('HGET', index_key, 'c' .. add(epoch, -1))
    if started then spared_from = tonumber(started) end
  end
  local freed, cutoff, newest_epoch = 0, 0, '-1'
  local doomed, after, done = {}, '-inf', false
  while not done do
    local page = redis.call('ZRANGEBYSCORE', log_key, after, '+inf', 'LIMIT', 0, 256)
    if #page == 0 then break end
    for _, m in ipairs(page) do
      local s, e, at, kind, _, _, size = decode(m)
      if s >= appended or (freed >= excess and (threshold == nil or at >= threshold)) then
        done = true
        break
      end
      if s < spared_from or kind == 3 then
        freed, cutoff, newest_epoch = freed + size, s, larger(newest_epoch, e)
        doomed[#doomed + 1] = m
      end
      after = '(' .. num(s)
    end
  end
  if cutoff == 0 then return 0 end
  for _, m in ipairs(doomed) do forget(m) end
  remove_members(doomed)
  if epoch then newest_epoch = smaller(newest_epoch, epoch) end
  pruned_seq = math.max(pruned_seq, cutoff)
  pruned_epoch = larger(pruned_epoch, newest_epoch)
  return freed
end

local results, members, feed = {}, {}, {}
local public, committed, appended, added = nil, false, nil, 0
for a = 5, #ARGV do
  local r = ARGV[a]
  local typ, has_public, req_version, n_welcomes, le, ls, lg, lb, lp, pos = struct.unpack(REQUEST, r)
  local function take(n)
    local part = string.sub(r, pos, pos + n - 1)
    pos = pos + n
    return part
  end
  local req_epoch = take(le)
  local sender, gid, body, view = take(ls), take(lg), take(lb), take(lp)
  has_public = has_public == 1
  local entries, refused = nil, nil
  if typ == 'G' then
    if group_id then
      refused = 'wrong_group,' .. epoch
    else
      group_id, epoch = gid, req_epoch
      if has_public then public, version = view, version + 1 end
      usage = new_usage(epoch)
      results[#results + 1] = 'accepted,' .. epoch
    end
  elseif typ == 'A' then
    entries = {{3, sender, req_epoch, false, false, body}}
  elseif group_id and group_id ~= gid then
    refused = 'wrong_group,' .. epoch
  elseif not group_id then
    refused = 'no_group,'
  elseif epoch ~= req_epoch then
    refused = 'conflict,' .. epoch
  elseif req_version >= 0 and req_version ~= version then
    refused = 'stale_view,' .. epoch
  elseif typ == 'P' then
    entries = {{1, sender, epoch, group_id, false, body}}
  else
    epoch, committed = add(req_epoch, 1), true
    usage = new_usage(epoch)
    entries = {{0, sender, req_epoch, group_id, false, body}}
    for _ = 1, n_welcomes do
      local lr, lw
      lr, lw, pos = struct.unpack('>I4I4', r, pos)
      local recipient = take(lr)
      entries[#entries + 1] = {2, sender, epoch, group_id, recipient, take(lw)}
    end
  end
  if entries and (typ == 'A' or typ == 'P') then
    local exceeded = charge(sender, #body)
    if exceeded then
      refused = table.concat({'quota_exceeded', epoch or '', exceeded[1], exceeded[2],
                              num(exceeded[3])}, ',')
      entries = nil
    end
  end
  if refused then
    results[#results + 1] = refused
  elseif entries then
    if (typ == 'P' or typ == 'C') and has_public then public, version = view, version + 1 end
    local encoded = {}
    for _, e in ipairs(entries) do
      seq = seq + 1
      local m = encode(seq, e[1], e[2], e[3], e[4] or nil, e[5] or nil, e[6], now)
      members[#members + 1] = seq
      members[#members + 1] = m
      encoded[#encoded + 1] = struct.pack('>I4', #m) .. m
      added = added + #e[6]
      if e[1] == 0 then redis.call('HSET', index_key, 'c' .. e[3], seq) end
      if e[1] == 2 then redis.call('HSET', index_key, 'w' .. e[5], seq) end
    end
    appended = appended or (seq - #entries + 1)
    feed[#feed + 1] = table.concat(encoded)
    results[#results + 1] = table.concat({'accepted', epoch or '', num(seq - #entries + 1),
                                          num(#entries)}, ',')
  end
end

for j = 1, #members, 1000 do
  redis.call('ZADD', log_key, unpack(members, j, math.min(j + 999, #members)))
end
log_bytes = log_bytes + added
local room = {'last_seq', seq, 'quota_epoch', usage.epoch, 'quota_entries', usage.room[1], 'quota_bytes', usage.room[2]}
if group_id then
  for _, v in ipairs({'group_id', group_id, 'epoch', epoch}) do room[#room + 1] = v end
end
if public then
  for _, v in ipairs({'public_group', public, 'public_version', version}) do room[#room + 1] = v end
end
for sender, u in pairs(usage.senders) do
  redis.call('HSET', index_key, 'u' .. sender, usage.epoch .. ':' .. num(u[1]) .. ':' .. num(u[2]))
end
if p_epochs and epoch and committed then log_bytes = log_bytes - prune_epochs(add(epoch, -p_epochs - 1)) end
if appended then log_bytes = log_bytes - prune_size_and_age(appended) end
for _, v in ipairs({'log_bytes', log_bytes, 'pruned_seq', pruned_seq, 'pruned_epoch', pruned_epoch}) do
  room[#room + 1] = v
end
redis.call('HSET', room_key, unpack(room))
local head = 'E' .. struct.pack('>I4', #origin) .. origin
for _, item in ipairs(feed) do redis.call('PUBLISH', channel, head .. item) end
return table.concat(results, ';')
"""

#: The entries ``reader`` may see. KEYS log; ARGV after_seq, up_to_seq, min_epoch ('' for
#: none), reader, limit, max_bytes ('' for none), and 'count' to count them instead.
_READ_LOG = _LUA_COMMON + """
local log_key = KEYS[1]
local after, up_to, reader = ARGV[1], ARGV[2], ARGV[4]
local min_epoch = ARGV[3] ~= '' and ARGV[3] or nil
local limit, max_bytes, counting = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == 'count'
local out, count, size = {}, 0, 0
local lower = '(' .. after
while true do
  local page = redis.call('ZRANGEBYSCORE', log_key, lower, up_to, 'LIMIT', 0, 256)
  if #page == 0 then break end
  for _, m in ipairs(page) do
    local s, e, _, kind, sender, rcp, lb = decode(m)
    lower = '(' .. num(s)
    if (min_epoch == nil or not less(e, min_epoch)) and (not rcp or rcp == reader)
        and not (kind == 3 and sender == reader) then
      count = count + 1
      if not counting then
        out[count] = m
        size = size + lb
        if (limit and count >= limit) or (max_bytes and size >= max_bytes) then return out end
      end
    end
  end
end
if counting then return count end
return out
"""

#: Forget a room's group. KEYS room, log, index, admitted, KeyPackage owners;
#: ARGV the prefix of the KeyPackage lists.
_RESET = """
for k = 2, 4 do redis.call('DEL', KEYS[k]) end
for _, identity in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', ARGV[1] .. identity) end
redis.call('DEL', KEYS[5])
redis.call('HDEL', KEYS[1], 'group_id', 'epoch', 'public_group', 'quota_epoch', 'quota_entries', 'quota_bytes')
redis.call('HSET', KEYS[1], 'pruned_seq', 0, 'pruned_epoch', -1, 'log_bytes', 0)
redis.call('HINCRBY', KEYS[1], 'public_version', 1)
"""

#: Store KeyPackages under a limit. KEYS the identity's list, the room's owners; ARGV identity,
#: limit, the KeyPackages. The number now stored, or -1 (nothing stored) above the limit.
_PUBLISH_KEY_PACKAGES = """
local count = redis.call('LLEN', KEYS[1]) + #ARGV - 2
if count > tonumber(ARGV[2]) then return -1 end
for j = 3, #ARGV, 1000 do redis.call('RPUSH', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV))) end
redis.call('SADD', KEYS[2], ARGV[1])
return count
"""

#: Drop a presence if the instance still holds it. KEYS presence; ARGV identity, instance.
#: 1 if dropped, else 0.
_DROP_PRESENCE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.sub(held, 2) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


#: KEYS: the room's sfu hash, its sfu-feeds hash; ARGV: janus room, secret, generation.
#: Stores the record unless one of the same or a higher generation is there (a higher one
#: than before drops the old Janus's feeds); returns the stored record.
_CLAIM_SFU_ROOM = """
local held = redis.call('HGET', KEYS[1], 'generation')
if (not held) or tonumber(held) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'janus_room', ARGV[1], 'secret', ARGV[2], 'generation', ARGV[3])
  redis.call('DEL', KEYS[2])
end
return redis.call('HMGET', KEYS[1], 'janus_room', 'secret', 'generation')
"""


class RedisStoreError(Exception):
    """The Redis store cannot be used: see the subclasses."""


class RedisURLError(RedisStoreError, ValueError):
    """The store's address is no Redis URL this store can use."""


class RedisUnavailableError(RedisStoreError, ConnectionError):
    """Redis did not answer (refused, unreachable, timed out or lost the connection): what was
    asked may or may not have been applied."""


def _redacted(url: str) -> str:
    """``url`` without its password, for errors and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        return "<unparsable URL>"


def _check_url(url: str) -> None:
    """Refuse what the client would take silently: a database that is no number, no host."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("the scheme must be redis://, rediss:// or unix://")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ValueError("no host")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError("the database (the URL's path) must be a number")


def _decode_entry(room: str, data: bytes) -> LogEntry:
    seq, _, kind, epoch_len, sender_len, group_len, recipient_len, body_len = _HEADER.unpack_from(data)
    pos = _HEADER.size
    epoch = int(data[pos:pos + epoch_len])
    pos += epoch_len
    sender = data[pos:pos + sender_len].decode()
    pos += sender_len
    group_id = None
    if group_len != _NONE:
        group_id, pos = data[pos:pos + group_len], pos + group_len
    recipient = None
    if recipient_len != _NONE:
        recipient, pos = data[pos:pos + recipient_len].decode(), pos + recipient_len
    return LogEntry(room, int(seq), _KINDS[kind], sender, epoch, data[pos:pos + body_len], group_id,
                    recipient)


def _limit(value: float | int | None) -> str | float | int:
    """A limit as a script argument: empty for none."""
    return "" if value is None else value


class _Script:
    """A Lua script run with EVALSHA, loaded again when Redis answers NOSCRIPT (after a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha: str | None = None

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self.sha is not None:
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                pass
        self.sha = await client.script_load(self.source)
        return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def run_many(self, client: Redis, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
                       ) -> list[Any]:
        """Run the script once per ``(keys, args)``, in order, in one pipeline (one round trip;
        each run is still atomic on its own): a reply or a :class:`redis.ResponseError` each."""
        if self.sha is None:
            self.sha = await client.script_load(self.source)
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, redis_errors.NoScriptError)]
        if missing:  # not run at all: Redis restarted and forgot the script
            self.sha = None
            for i, reply in zip(missing, await self.run_many(client, [calls[i] for i in missing])):
                replies[i] = reply
        return replies


class RedisStore:
    """A :class:`~signaling.store.Store` in one Redis database, shared by several instances.

    Acknowledged means applied in Redis: :meth:`append` returns after the
    script that wrote the entries returned. With ``appendonly yes`` and
    ``appendfsync always`` every acknowledged entry survives a SIGKILL of
    redis-server (tested); with ``appendfsync everysec`` a crash of the Redis
    host may lose up to a second of acknowledged entries. Redis errors reach
    the caller as :class:`RedisUnavailableError`.
    """

    def __init__(self, client: Redis, *, url: str, policy: LogPolicy = LogPolicy(),
                 clock: Callable[[], float] = time.time, prefix: str = "mlscall") -> None:
        self._client = client
        self._url = _redacted(url)
        self._policy = policy
        #: the limits of ``policy`` as the append script reads them
        self._limits = "".join(f"{_limit(getattr(policy, name))}," for name in (
            "epochs", "max_bytes", "max_age", "sender_bytes", "sender_entries", "room_bytes", "room_entries"))
        #: seconds (Unix time by default): when entries were appended, for ``policy.max_age``
        self._clock = clock
        self._prefix = prefix
        #: the Redis database number (the URL's path), part of the feed's channel names
        self._database = int(client.connection_pool.connection_kwargs.get("db") or 0)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        #: The feed's handler of each subscribed room, by channel; rooms by channel.
        self._handlers: dict[bytes, Callable[[FeedItem], None]] = {}
        self._rooms: dict[bytes, str] = {}
        #: subscriptions sent and not yet confirmed by Redis, by channel
        self._confirming: dict[bytes, asyncio.Future[None]] = {}
        self._append = _Script(_APPEND)
        #: appends waiting for the next pipeline, and the task sending them
        self._appends: list[tuple[list[str], list[Any], asyncio.Future[bytes]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._read_log_script = _Script(_READ_LOG)
        self._reset = _Script(_RESET)
        self._publish_kps = _Script(_PUBLISH_KEY_PACKAGES)
        self._drop_presence = _Script(_DROP_PRESENCE)
        self._claim_sfu_room = _Script(_CLAIM_SFU_ROOM)

    @classmethod
    def from_url(cls, url: str, *, policy: LogPolicy = LogPolicy(), clock: Callable[[], float] = time.time,
                 prefix: str = "mlscall") -> RedisStore:
        """A store on the Redis database at ``url`` (``redis://host:port/db``, ``rediss://`` or
        ``unix://``); nothing is connected before :meth:`open`. A URL this store cannot use
        raises :class:`RedisURLError` (its password left out)."""
        try:
            _check_url(url)
            client = Redis.from_url(url, decode_responses=False, retry=Retry(NoBackoff(), 0),
                                    socket_connect_timeout=5.0, socket_keepalive=True)
        except (ValueError, TypeError) as exc:
            raise RedisURLError(f"not a usable Redis URL: {_redacted(url)} ({exc})") from None
        return cls(client, url=url, policy=policy, clock=clock, prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisStore({self._url!r}, prefix={self._prefix!r})"

    # -- keys ------------------------------------------------------------------------------------

    def _key(self, room: str, name: str) -> str:
        return f"{self._prefix}:{{{room}}}:{name}"

    def _channel(self, room: str) -> bytes:
        """The room's feed channel. Pub/sub channels span a Redis server's databases, so the
        name carries the database number beside the key prefix: deployments in different
        databases (or under different prefixes) of one server never hear each other."""
        return f"{self._prefix}:db{self._database}:{{{room}}}:feed".encode()

    def _instance_key(self, instance: str) -> str:
        return f"{self._prefix}:instance:{{{instance}}}"

    def _room_keys(self, room: str) -> list[str]:
        return [self._key(room, name) for name in ("room", "log", "index")]

    async def _call(self, operation: Callable[[], Any]) -> Any:
        """Run one Redis operation; connection failures become :class:`RedisUnavailableError`."""
        try:
            return await operation()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise RedisUnavailableError(f"Redis at {self._url} did not answer: {exc}") from None

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (a command connection and the feed's pub/sub connection) and check that
        Redis answers; :class:`RedisUnavailableError` if it does not."""
        await self._call(self._client.ping)
        self._pubsub = self._client.pubsub()
        await self._call(self._pubsub.connect)
        self._reader = asyncio.create_task(self._read_feed(self._pubsub))

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        for waiter in self._confirming.values():
            waiter.cancel()
        self._confirming.clear()
        await self._client.aclose()

    # -- groups and the handshake log ----------------------------------------------------------

    async def group_state(self, room: str) -> RoomGroup:
        raw = await self._call(lambda: self._client.hmget(
            self._key(room, "room"), "group_id", "epoch", "last_seq", "pruned_seq", "pruned_epoch",
            "public_version"))
        group_id, epoch, last_seq, pruned_seq, pruned_epoch, version = raw
        return RoomGroup(group_id, None if epoch is None else int(epoch), int(last_seq or 0),
                         int(pruned_seq or 0), -1 if pruned_epoch is None else int(pruned_epoch),
                         int(version or 0))

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        requests = tuple(requests)
        args: list[Any] = [self._channel(room), origin, repr(self._clock()), self._limits,
                           *(_encode_request(request) for request in requests)]
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._appends.append((self._room_keys(room), args, waiter))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_appends())
        reply = await waiter
        return [_result(room, request, fields.split(b","))
                for request, fields in zip(requests, reply.split(b";"), strict=True)]

    async def _send_appends(self) -> None:
        """Send the waiting appends, every room's together in one pipeline (one round trip), until
        none wait: the appends that arrive while a pipeline is out go in the next one."""
        while self._appends:
            batch, self._appends = self._appends, []
            replies: list[Any]
            try:
                replies = await self._call(lambda: self._append.run_many(
                    self._client, [(keys, args) for keys, args, _ in batch]))
            except RedisStoreError as exc:  # lost with the connection: applied or not, unknown
                replies = [exc] * len(batch)
            for (_, _, waiter), reply in zip(batch, replies):
                if waiter.done():  # its caller was cancelled
                    continue
                if isinstance(reply, RedisStoreError):
                    waiter.set_exception(reply)
                elif isinstance(reply, redis_errors.ResponseError):  # e.g. out of memory: nothing written
                    waiter.set_exception(RedisStoreError(f"Redis at {self._url} refused the append: {reply}"))
                else:
                    waiter.set_result(reply)

    async def read_entries(self, room: str, *, after_seq: int, up_to_seq: int | None = None,
                           limit: int | None = None) -> list[LogEntry]:
        upper = "+inf" if up_to_seq is None else up_to_seq
        page = await self._call(lambda: self._client.zrangebyscore(
            self._key(room, "log"), f"({after_seq}", upper,
            **({} if limit is None else {"start": 0, "num": limit})))
        return [_decode_entry(room, m) for m in page]

    async def read_log(self, room: str, reader: str, *, after_seq: int = 0,
                       min_epoch: int | None = None, up_to_seq: int | None = None,
                       limit: int | None = None, max_bytes: int | None = None) -> list[LogEntry]:
        if limit is not None and limit <= 0:
            return []
        page = await self._call(lambda: self._read_log_script(self._client, [self._key(room, "log")], [
            after_seq, "+inf" if up_to_seq is None else up_to_seq, _limit(min_epoch), reader,
            _limit(limit), _limit(max_bytes), "read"]))
        return [_decode_entry(room, m) for m in page]

    async def count_log(self, room: str, reader: str, *, after_seq: int, up_to_seq: int,
                        min_epoch: int | None = None) -> int:
        return int(await self._call(lambda: self._read_log_script(
            self._client, [self._key(room, "log")],
            [after_seq, up_to_seq, _limit(min_epoch), reader, "", "", "count"])))

    async def latest_welcome_seq(self, room: str, recipient: str) -> int | None:
        seq = await self._call(lambda: self._client.hget(self._key(room, "index"), f"w{recipient}"))
        return None if seq is None else int(seq)

    async def public_group(self, room: str) -> tuple[bytes, int] | None:
        view, version = await self._call(lambda: self._client.hmget(
            self._key(room, "room"), "public_group", "public_version"))
        return None if view is None else (view, int(version or 0))

    async def reset_group(self, room: str) -> None:
        keys = [*self._room_keys(room), self._key(room, "admitted"), self._key(room, "kp-owners")]
        await self._call(lambda: self._reset(self._client, keys, [self._key(room, "kp:")]))

    # -- the feed ----------------------------------------------------------------------------------

    async def subscribe(self, room: str, handler: Callable[[FeedItem], None]) -> None:
        """Subscribe the feed's pub/sub connection to ``room``; returns once Redis confirmed the
        subscription, so every item published after this returns reaches ``handler``."""
        pubsub = self._require_pubsub()
        channel = self._channel(room)
        self._rooms[channel] = room
        self._handlers[channel] = handler
        waiter = asyncio.get_running_loop().create_future()
        self._confirming[channel] = waiter
        try:
            await self._call(lambda: pubsub.subscribe(channel))
        except RedisUnavailableError:  # not sent: nothing to resubscribe after a reconnect either
            self._handlers.pop(channel, None)
            self._confirming.pop(channel, None)
            raise
        await waiter

    async def unsubscribe(self, room: str) -> None:
        pubsub = self._require_pubsub()
        channel = self._channel(room)
        self._handlers.pop(channel, None)
        waiter = self._confirming.pop(channel, None)
        if waiter is not None:
            waiter.cancel()
        await self._call(lambda: pubsub.unsubscribe(channel))

    async def signal(self, room: str, message: dict[str, Any], origin: str) -> None:
        payload = b"".join((_FEED_SIGNAL, _LENGTH.pack(len(origin.encode())), origin.encode(),
                            json.dumps(message, separators=(",", ":")).encode()))
        await self._call(lambda: self._client.publish(self._channel(room), payload))

    def _require_pubsub(self) -> PubSub:
        if self._pubsub is None:
            raise RuntimeError("the store is not open")
        return self._pubsub

    async def _read_feed(self, pubsub: PubSub) -> None:
        """Deliver the feed's messages to the handlers, in the order Redis sent them. After a lost
        connection, reconnect (the client subscribes its channels again); what was published
        meanwhile is lost here: once Redis confirms a channel again, its handler gets a
        ``resync`` item, and the consumer reads the missing seqs with read_entries."""
        backoff = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                logger.warning("feed connection to Redis at %s lost (%s); reconnecting", self._url, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if message is None:
                continue
            channel, kind = message["channel"], message["type"]
            if kind == "subscribe":
                waiter = self._confirming.pop(channel, None)
                if waiter is not None:  # the first subscription
                    if not waiter.done():
                        waiter.set_result(None)
                    continue
            elif kind != "message":
                continue
            handler, room = self._handlers.get(channel), self._rooms.get(channel)
            if handler is None or room is None:
                continue
            try:  # a subscription confirmed again after a lost connection: resync
                item = FeedItem(resync=True) if kind == "subscribe" else _decode_feed(room, message["data"])
            except (ValueError, IndexError, struct.error):
                logger.error("undecodable feed message on %r", channel)
                continue
            try:
                handler(item)
            except Exception:
                logger.exception("feed handler of room %s failed", room)

    # -- admission and presence ------------------------------------------------------------------

    async def admit(self, room: str, identity: str) -> None:
        await self._call(lambda: self._client.sadd(self._key(room, "admitted"), identity))

    async def admitted(self, room: str) -> frozenset[str]:
        members = await self._call(lambda: self._client.smembers(self._key(room, "admitted")))
        return frozenset(m.decode() for m in members)

    async def set_presence(self, room: str, identity: str, instance: str, waiting: bool) -> None:
        await self._call(lambda: self._client.hset(self._key(room, "presence"), identity,
                                                   ("1" if waiting else "0") + instance))

    async def drop_presence(self, room: str, identity: str, instance: str) -> None:
        await self._call(lambda: self._drop_presence(self._client, [self._key(room, "presence")],
                                                     [identity, instance]))

    async def _held_presence(self, room: str) -> tuple[dict[str, Presence], set[str]]:
        """Every presence stored for ``room`` (the living instances' and the dead's), and the
        instances among their holders that are alive."""
        held = await self._call(lambda: self._client.hgetall(self._key(room, "presence")))
        found = {identity.decode(): Presence(value[1:].decode(), value[:1] == b"1")
                 for identity, value in held.items()}
        instances = sorted({p.instance for p in found.values()})
        if not instances:
            return found, set()

        async def alive() -> list[int]:
            async with self._client.pipeline(transaction=False) as pipe:
                for instance in instances:
                    pipe.exists(self._instance_key(instance))
                return await pipe.execute()

        return found, {instance for instance, exists in zip(instances, await self._call(alive)) if exists}

    async def presence(self, room: str) -> dict[str, Presence]:
        found, living = await self._held_presence(room)
        return {identity: p for identity, p in found.items() if p.instance in living}

    async def sweep_presence(self, room: str) -> list[str]:
        found, living = await self._held_presence(room)
        dead = [(identity, p.instance) for identity, p in found.items() if p.instance not in living]
        if not dead:
            return []
        key = [self._key(room, "presence")]
        dropped = await self._call(lambda: self._drop_presence.run_many(
            self._client, [(key, [identity, instance]) for identity, instance in dead]))
        return [identity for (identity, _), reply in zip(dead, dropped) if reply == 1]

    async def heartbeat(self, instance: str, ttl: float) -> None:
        await self._call(lambda: self._client.set(self._instance_key(instance), b"1",
                                                  px=max(1, round(ttl * 1000))))

    async def empty_since(self, room: str) -> float | None:
        when = await self._call(lambda: self._client.hget(self._key(room, "room"), "empty_since"))
        return None if when is None else float(when)

    async def set_empty_since(self, room: str, when: float | None) -> None:
        key = self._key(room, "room")
        if when is None:
            await self._call(lambda: self._client.hdel(key, "empty_since"))
        else:
            await self._call(lambda: self._client.hset(key, "empty_since", repr(float(when))))

    # -- the room's SFU state: hash <room>:sfu (janus_room, secret, generation, topology), ----
    # -- hash <room>:sfu-feeds (feed -> identity) -------------------------------------------------

    async def sfu_room(self, room: str) -> SfuRoomRecord | None:
        held = await self._call(lambda: self._client.hmget(self._key(room, "sfu"),
                                                           "janus_room", "secret", "generation"))
        return _sfu_record(held)

    async def claim_sfu_room(self, room: str, record: SfuRoomRecord) -> SfuRoomRecord:
        held = await self._call(lambda: self._claim_sfu_room(
            self._client, [self._key(room, "sfu"), self._key(room, "sfu-feeds")],
            [record.janus_room, record.secret, record.generation]))
        stored = _sfu_record(held)
        assert stored is not None  # the script stored one or found one
        return stored

    async def switch_to_sfu(self, room: str) -> bool:
        return bool(await self._call(lambda: self._client.hsetnx(self._key(room, "sfu"), "topology", "sfu")))

    async def sfu_switched(self, room: str) -> bool:
        return bool(await self._call(lambda: self._client.hexists(self._key(room, "sfu"), "topology")))

    async def set_sfu_feed(self, room: str, feed: int, identity: str) -> None:
        await self._call(lambda: self._client.hset(self._key(room, "sfu-feeds"), str(feed), identity))

    async def drop_sfu_feed(self, room: str, feed: int) -> bool:
        return bool(await self._call(lambda: self._client.hdel(self._key(room, "sfu-feeds"), str(feed))))

    async def sfu_feeds(self, room: str) -> dict[int, str]:
        held = await self._call(lambda: self._client.hgetall(self._key(room, "sfu-feeds")))
        return {int(feed): identity.decode() for feed, identity in held.items()}

    async def clear_sfu(self, room: str) -> None:
        await self._call(lambda: self._client.delete(self._key(room, "sfu"), self._key(room, "sfu-feeds")))

    # -- KeyPackage directory --------------------------------------------------------------------

    async def publish_key_packages(self, room: str, identity: str,
                                   key_packages: Sequence[bytes], limit: int) -> int | None:
        keys = [self._key(room, f"kp:{identity}"), self._key(room, "kp-owners")]
        count = await self._call(lambda: self._publish_kps(self._client, keys,
                                                           [identity, limit, *key_packages]))
        return None if count < 0 else int(count)

    async def claim_key_package(self, room: str, identity: str) -> bytes | None:
        return await self._call(lambda: self._client.lpop(self._key(room, f"kp:{identity}")))


def _sfu_record(held: Sequence[bytes | None]) -> SfuRoomRecord | None:
    """A room's SFU record from its hash fields (janus_room, secret, generation)."""
    janus_room, secret, generation = held
    if janus_room is None or secret is None or generation is None:
        return None
    return SfuRoomRecord(int(janus_room), secret.decode(), int(generation))


def _encode_request(request: AppendRequest) -> bytes:
    """One request as the append script reads it (:data:`_REQUEST`)."""
    if isinstance(request, ApplicationRequest):
        kind, group_id, body, public, version, welcomes = b"A", b"", request.ciphertext, None, None, ()
    elif isinstance(request, GroupCreateRequest):
        kind, group_id, body, public, version, welcomes = b"G", request.group_id, b"", request.public_group, None, ()
    elif isinstance(request, ProposalRequest):
        kind, group_id, body, public, version, welcomes = (b"P", request.group_id, request.proposal,
                                                           request.public_group, request.public_version, ())
    else:
        kind, group_id, body, public, version, welcomes = (b"C", request.group_id, request.commit,
                                                           request.public_group, request.public_version,
                                                           request.welcomes)
    epoch, sender, view = str(request.epoch).encode(), request.sender.encode(), public or b""
    parts = [_REQUEST.pack(kind, public is not None, -1 if version is None else version, len(welcomes),
                           len(epoch), len(sender), len(group_id), len(body), len(view)),
             epoch, sender, group_id, body, view]
    for welcome in welcomes:
        recipient = welcome.recipient.encode()
        parts += [_WELCOME.pack(len(recipient), len(welcome.body)), recipient, welcome.body]
    return b"".join(parts)


def _result(room: str, request: AppendRequest, reply: list[bytes]) -> AppendResult:
    """The AppendResult of one request's part of the script's reply: ``outcome, epoch, first
    seq, count`` when accepted, ``outcome, epoch, scope, unit, limit`` when over a quota."""
    outcome = Outcome(reply[0].decode())
    epoch = int(reply[1]) if reply[1] else None
    if outcome is Outcome.QUOTA_EXCEEDED:
        return AppendResult(outcome, epoch, quota=QuotaExceeded(reply[2].decode(), reply[3].decode(),
                                                                int(reply[4])))
    if outcome is not Outcome.ACCEPTED or isinstance(request, GroupCreateRequest):
        return AppendResult(outcome, epoch)
    first = int(reply[2])
    if isinstance(request, ApplicationRequest):
        entries = (LogEntry(room, first, EntryKind.APPLICATION, request.sender, request.epoch,
                            request.ciphertext),)
    elif isinstance(request, ProposalRequest):
        entries = (LogEntry(room, first, EntryKind.PROPOSAL, request.sender, request.epoch, request.proposal,
                            request.group_id),)
    else:
        assert isinstance(request, CommitRequest)
        entries = (LogEntry(room, first, EntryKind.COMMIT, request.sender, request.epoch, request.commit,
                            request.group_id),
                   *(LogEntry(room, first + 1 + i, EntryKind.WELCOME, request.sender, request.epoch + 1,
                              w.body, request.group_id, w.recipient) for i, w in enumerate(request.welcomes)))
    return AppendResult(outcome, epoch, entries)


def _decode_feed(room: str, data: bytes) -> FeedItem:
    """A FeedItem of one message of the room's channel (see the append script and signal)."""
    kind = data[:1]
    (origin_len,) = _LENGTH.unpack_from(data, 1)
    pos = 1 + _LENGTH.size
    origin = data[pos:pos + origin_len].decode()
    pos += origin_len
    if kind == _FEED_SIGNAL:
        message = json.loads(data[pos:])
        if not isinstance(message, dict):
            raise ValueError("a signal is a JSON object")
        return FeedItem((), message, origin)
    if kind != _FEED_ENTRIES:
        raise ValueError("unknown feed message kind")
    entries: list[LogEntry] = []
    while pos < len(data):
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        entries.append(_decode_entry(room, data[pos:pos + size]))
        pos += size
    return FeedItem(tuple(entries), None, origin)
