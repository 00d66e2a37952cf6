-- Shared by every script (prepended when loaded). ARGV[1] is the key prefix,
-- "{PREFIX}:", so every key lives in one hash slot. Keys (see _keys.py):
--   job:ID            hash: one job
--   jobs              zset: every stored job by creation order (ListJobs)
--   seq               counter: creation and ready order
--   queues            set: queue names seen
--   paused            set: paused queues (claim.lua takes nothing from them)
--   types:Q           set: types of queue Q that may have ready jobs
--   ready:Q/T         zset: ready jobs of queue Q and type T, by priority then order
--   delayed           zset: scheduled and failed jobs by due time (ms)
--   leased:G          zset: jobs leased by gateway G, by lease deadline (ms)
--   gateways          set: gateways that may hold leases
--   alive:G           string with a TTL: gateway G's heartbeat
--   counts:Q          hash: jobs of queue Q by state
--   history           zset: finished jobs in the order they finished
--   dedup:KEY, req:ID string: the job holding a deduplication key, a request id
--   replays:ID        hash: a RetryJobs request id: jobs replayed (n), finished (done)
--   workers:A         hash: worker streams gateway address A published, by session
--   drain:A           set: sessions of gateway A another gateway asked to drain
--   workergateways    zset: gateway addresses by when they last published
local P = ARGV[1]
local PENDING, SCHEDULED, PROCESSING = '1', '2', '3'
local COMPLETED, FAILED, DEAD, CANCELLED = '4', '5', '6', '7'
-- Higher priority first, then older first: priorities 0-255 above a 40-bit order.
local ORDER = 1099511627776

local function jkey(id) return P .. 'job:' .. id end

local function count(queue, old, new)
  local key = P .. 'counts:' .. queue
  if old then redis.call('HINCRBY', key, old, -1) end
  if new then redis.call('HINCRBY', key, new, 1) end
end

local woken = {}

local function push_ready(id, queue, jtype, priority)
  local order = redis.call('INCR', P .. 'seq')
  local score = (255 - tonumber(priority)) * ORDER + order
  redis.call('ZADD', P .. 'ready:' .. queue .. '/' .. jtype, score, id)
  redis.call('SADD', P .. 'types:' .. queue, jtype)
  woken[queue] = true
end

-- Tell the waiting claims of every gateway (pub/sub) that queues have jobs.
local function wake()
  for queue in pairs(woken) do
    redis.call('PUBLISH', P .. 'wake', queue)
  end
end

local function forget(id)
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'q', 's', 'dk')
  if f[1] then
    count(f[1], f[2], nil)
    if f[3] and f[3] ~= '' and redis.call('GET', P .. 'dedup:' .. f[3]) == id then
      redis.call('DEL', P .. 'dedup:' .. f[3])
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', P .. 'jobs', id)
end

-- A job reached a final state: into the history (in the order jobs finish, which
-- one settle call's shared end time would not give), the oldest beyond
-- max_history forgotten.
local function finished(id, max_history)
  local key = P .. 'history'
  redis.call('ZADD', key, redis.call('INCR', P .. 'seq'), id)
  local excess = redis.call('ZCARD', key) - max_history
  if excess > 0 then
    local old = redis.call('ZPOPMIN', key, excess)
    for i = 1, #old, 2 do forget(old[i]) end
  end
end
