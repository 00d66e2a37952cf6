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

-- The fields a job is read back from, in the order _codec.py's FIELDS has them.
local FIELDS = {'id', 'q', 't', 'dk', 'body', 's', 'a', 'c', 'u', 'p',
  'st', 'e', 'err', 'errs', 'r', 'rct', 'pg', 'w'}

-- A job as the gateway reads it back: its FIELDS' values (HMGET), no names.
local function load(job) return redis.call('HMGET', job, unpack(FIELDS)) end

-- What a script changes beyond the hashes it writes is gathered while it runs
-- and written once at its end by commit(): the counts (one HINCRBY per queue
-- and state, not two per job), the ready sets (one ZADD per set), the history
-- (one ZADD) and the wake-ups (one PUBLISH per queue). Every script that calls
-- count, push_ready, finished or forget ends with commit().
local tallies, readies, finishes, history_max, woken = {}, {}, {}, 0, {}

-- Append two items to a list (a field and its value, a score and its member).
local function append(list, a, b)
  list[#list + 1] = a
  list[#list + 1] = b
end

-- Many members (of key, or many keys if key is nil) in one command, in chunks
-- that stay well inside Lua's stack.
local function bulk(command, key, items)
  for i = 1, #items, 512 do
    local j = math.min(i + 511, #items)
    if key then
      redis.call(command, key, unpack(items, i, j))
    else
      redis.call(command, unpack(items, i, j))
    end
  end
end

local function count(queue, old, new)
  local t = tallies[queue]
  if not t then
    t = {}
    tallies[queue] = t
  end
  if old then t[old] = (t[old] or 0) - 1 end
  if new then t[new] = (t[new] or 0) + 1 end
end

-- Ready in arrival order (the order push_ready is called in), by priority.
local function push_ready(id, queue, jtype, priority)
  readies[#readies + 1] = {id, queue, jtype, tonumber(priority)}
end

-- Delete jobs: their hashes, listing entries, counts and deduplication keys.
local function forget_all(ids)
  local keys = {}
  for _, id in ipairs(ids) do
    local key = jkey(id)
    local f = redis.call('HMGET', key, 'q', 's', 'dk')
    if f[1] then
      count(f[1], f[2], nil)
      if f[3] and f[3] ~= '' and redis.call('GET', P .. 'dedup:' .. f[3]) == id then
        redis.call('DEL', P .. 'dedup:' .. f[3])
      end
    end
    keys[#keys + 1] = key
  end
  bulk('DEL', nil, keys)
  bulk('ZREM', P .. 'jobs', ids)
end

local function forget(id) forget_all({id}) end

-- A job reached a final state: into the history (in the order jobs finish, which
-- one settle call's shared end time would not give), the oldest beyond
-- max_history forgotten (at commit()).
local function finished(id, max_history)
  finishes[#finishes + 1] = id
  history_max = max_history
end

-- Lease up to `max` ready jobs of some queues and types to a consumer of this
-- gateway; the consumer's arguments are ARGV[first] on: worker id, now (s),
-- lease deadline (ms), max, number of queues, the queues, then the accepted
-- types to the end (none: every type). Paused queues (the paused set) are
-- skipped. Oldest first among the highest priority, across queues and types.
-- Each job taken is PROCESSING with its attempt counted, in leased:GATEWAY;
-- answers them as load() reads them after the change.
local function lease_jobs(gateway, first)
  local worker, now, deadline = ARGV[first], ARGV[first + 1], ARGV[first + 2]
  local max = tonumber(ARGV[first + 3])
  local nqueues = tonumber(ARGV[first + 4])
  local qfirst = first + 5
  local accepted = nil
  if #ARGV >= qfirst + nqueues then
    accepted = {}
    for i = qfirst + nqueues, #ARGV do accepted[ARGV[i]] = true end
  end
  local heads = {}
  for i = qfirst, qfirst + nqueues - 1 do
    local queue = ARGV[i]
    local types_key = P .. 'types:' .. queue
    local jtypes = {}
    if redis.call('SISMEMBER', P .. 'paused', queue) == 0 then
      jtypes = redis.call('SMEMBERS', types_key)
    end
    for _, jtype in ipairs(jtypes) do
      if accepted == nil or accepted[jtype] then
        local key = P .. 'ready:' .. queue .. '/' .. jtype
        local items = redis.call('ZRANGE', key, 0, max - 1, 'WITHSCORES')
        if #items == 0 then
          redis.call('SREM', types_key, jtype)
        end
        for j = 1, #items, 2 do
          heads[#heads + 1] = {tonumber(items[j + 1]), items[j], key}
        end
      end
    end
  end
  table.sort(heads, function(a, b) return a[1] < b[1] end)
  local leased = P .. 'leased:' .. gateway
  local taken, leases, gone = {}, {}, {}
  for i = 1, math.min(max, #heads) do
    local id, key = heads[i][2], heads[i][3]
    local ids = gone[key]
    if not ids then
      ids = {}
      gone[key] = ids
    end
    ids[#ids + 1] = id
    local job = jkey(id)
    local f = redis.call('HMGET', job, 's', 'q', 'a', 'st')
    if f[1] == PENDING then
      redis.call('HSET', job, 's', PROCESSING, 'a', tostring(tonumber(f[3]) + 1), 'w', worker,
        'gw', gateway, 'u', now)
      if f[4] then redis.call('HDEL', job, 'st') end
      append(leases, deadline, id)
      count(f[2], PENDING, PROCESSING)
      taken[#taken + 1] = load(job)
    end
  end
  for key, ids in pairs(gone) do bulk('ZREM', key, ids) end
  bulk('ZADD', leased, leases)
  if #heads > 0 then redis.call('SADD', P .. 'gateways', gateway) end
  return taken
end

local function commit()
  if #readies > 0 then
    local first = redis.call('INCRBY', P .. 'seq', #readies) - #readies
    local sets, types = {}, {}
    for n, r in ipairs(readies) do
      local key = P .. 'ready:' .. r[2] .. '/' .. r[3]
      local items = sets[key]
      if not items then
        items = {}
        sets[key] = items
        types[#types + 1] = {r[2], r[3]}
      end
      append(items, (255 - r[4]) * ORDER + first + n, r[1])
      woken[r[2]] = true
    end
    for key, items in pairs(sets) do bulk('ZADD', key, items) end
    for _, qt in ipairs(types) do redis.call('SADD', P .. 'types:' .. qt[1], qt[2]) end
    readies = {}
  end
  if #finishes > 0 then
    local key = P .. 'history'
    local first = redis.call('INCRBY', P .. 'seq', #finishes) - #finishes
    local items = {}
    for n, id in ipairs(finishes) do append(items, first + n, id) end
    bulk('ZADD', key, items)
    finishes = {}
    local excess = redis.call('ZCARD', key) - history_max
    if excess > 0 then
      local old, ids = redis.call('ZPOPMIN', key, excess), {}
      for i = 1, #old, 2 do ids[#ids + 1] = old[i] end
      forget_all(ids)
    end
  end
  for queue, t in pairs(tallies) do
    local key = P .. 'counts:' .. queue
    for state, n in pairs(t) do
      if n ~= 0 then redis.call('HINCRBY', key, state, n) end
    end
  end
  tallies = {}
  -- Tell the waiting claims of every gateway (pub/sub) that queues have jobs.
  for queue in pairs(woken) do
    redis.call('PUBLISH', P .. 'wake', queue)
  end
  woken = {}
end
