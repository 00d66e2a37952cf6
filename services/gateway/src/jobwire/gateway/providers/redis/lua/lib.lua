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
-- Flow control (see _flow.py), per queue Q in the set `flowing` (it has limits,
-- or jobs with a concurrency key; a queue stays in it once there):
--   limits            hash: queue -> its QueueLimits as JSON (as_json)
--   flow:Q            hash: limits (JSON), tokens, refilled (ms), turn (key served
--                     last), served (jobs it got in that turn)
--   lane:Q/K          zset: ready jobs of key K ('' for none), scored as ready:Q/T
--                     (a flowing queue's ready jobs are there, not in ready:Q/T)
--   lanes:Q           zset, every score 0: the keys with ready jobs, in key order
--   run:Q/K           set: the jobs of key K (not '') processing now
--   running:Q         set: the keys with jobs processing now
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

-- Whether a queue's claims go through its lanes (asked once per script call).
local flowing_seen = {}
local function is_flowing(queue)
  local seen = flowing_seen[queue]
  if seen == nil then
    seen = redis.call('SISMEMBER', P .. 'flowing', queue) == 1
    flowing_seen[queue] = seen
  end
  return seen
end

local function lane_key(queue, key) return P .. 'lane:' .. queue .. '/' .. key end
local function run_key(queue, key) return P .. 'run:' .. queue .. '/' .. key end

-- Put a queue under flow control: its ready jobs move from ready:Q/T into the
-- lanes of their keys (once; a queue never leaves).
local function make_flowing(queue)
  if redis.call('SADD', P .. 'flowing', queue) == 0 then return end
  flowing_seen[queue] = true
  local types_key = P .. 'types:' .. queue
  for _, jtype in ipairs(redis.call('SMEMBERS', types_key)) do
    local ready = P .. 'ready:' .. queue .. '/' .. jtype
    local items = redis.call('ZRANGE', ready, 0, -1, 'WITHSCORES')
    for j = 1, #items, 2 do
      local key = redis.call('HGET', jkey(items[j]), 'k') or ''
      redis.call('ZADD', lane_key(queue, key), items[j + 1], items[j])
      redis.call('ZADD', P .. 'lanes:' .. queue, 0, key)
    end
    redis.call('DEL', ready)
  end
  redis.call('DEL', types_key)
end

-- A pending job leaves the ready set or lane it waits in.
local function unready(id, queue, jtype, key)
  if is_flowing(queue) then
    local lane = lane_key(queue, key or '')
    redis.call('ZREM', lane, id)
    if redis.call('EXISTS', lane) == 0 then redis.call('ZREM', P .. 'lanes:' .. queue, key or '') end
  else
    redis.call('ZREM', P .. 'ready:' .. queue .. '/' .. jtype, id)
  end
end

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

-- A job of a flowing queue stopped processing: its key's slot is free, and the
-- claims of every gateway waiting on the queue look again (at commit()).
local function release(id, queue, key)
  if not is_flowing(queue) then return end
  if key and key ~= '' then
    local run = run_key(queue, key)
    redis.call('SREM', run, id)
    if redis.call('EXISTS', run) == 0 then redis.call('SREM', P .. 'running:' .. queue, key) end
  end
  woken[queue] = true
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

local function commit()
  if #readies > 0 then
    local first = redis.call('INCRBY', P .. 'seq', #readies) - #readies
    local sets, types, lanes = {}, {}, {}
    for n, r in ipairs(readies) do
      local key
      if is_flowing(r[2]) then
        local ck = redis.call('HGET', jkey(r[1]), 'k') or ''
        key = lane_key(r[2], ck)
        if not sets[key] then lanes[#lanes + 1] = {r[2], ck} end
      else
        key = P .. 'ready:' .. r[2] .. '/' .. r[3]
        if not sets[key] then types[#types + 1] = {r[2], r[3]} end
      end
      local items = sets[key]
      if not items then
        items = {}
        sets[key] = items
      end
      append(items, (255 - r[4]) * ORDER + first + n, r[1])
      woken[r[2]] = true
    end
    for key, items in pairs(sets) do bulk('ZADD', key, items) end
    for _, qt in ipairs(types) do redis.call('SADD', P .. 'types:' .. qt[1], qt[2]) end
    for _, qk in ipairs(lanes) do redis.call('ZADD', P .. 'lanes:' .. qk[1], 0, qk[2]) end
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
