-- Leasing jobs to a consumer (prepended after lib.lua to every script):
-- lease_jobs takes from the queues without flow control by priority and age,
-- then from the flowing queues' lanes by their limits and turns (lease_flow).

local MAX_LANES = 1000  -- most keys one claim of a flowing queue looks at
local TYPE_SCAN = 64    -- most jobs of a lane looked at for a consumer of some types

-- A flowing queue's limits as stored: the fields of QueueLimits.as_json.
local function limits_of(text)
  local limits = {}
  if text and text ~= '' then limits = cjson.decode(text) end
  if type(limits.rate) ~= 'table' then limits.rate = nil end
  if type(limits.key_weights) ~= 'table' then limits.key_weights = {} end
  return limits
end

-- The whole tokens of a stored bucket at now_ms, and the exact amount.
local function bucket(rate, tokens, refilled, now_ms)
  local burst = tonumber(rate[3])
  local amount = tonumber(tokens) or burst
  local since = tonumber(refilled) or now_ms
  if now_ms > since then
    amount = math.min(burst, amount + (now_ms - since) * tonumber(rate[1]) / (tonumber(rate[2]) * 1000))
  end
  return math.floor(amount + 1e-9), amount
end

-- The keys of a flowing queue's lanes in turn order: `turn` first when its
-- turn goes on (`first`), the keys after it, then around again up to it. Read
-- a page at a time, from the last key read on (the lanes a claim empties
-- leave the set meanwhile), so a claim reads only the keys it gets to.
local LANE_PAGE = 32
local function turn_order(lanes, turn, first)
  local ranges = {{'(' .. turn, '+'}, {'-', (first and '(' or '[') .. turn}}
  local r, from, page, i, read = 1, ranges[1][1], {}, 0, 0
  if first then page = {turn} end
  return function()
    while true do
      i = i + 1
      if i <= #page then return page[i] end
      if r > 2 then return nil end
      if read > 0 and (#page < LANE_PAGE or read >= MAX_LANES) then
        r, read = r + 1, 0
        if r > 2 then return nil end
        from = ranges[r][1]
      end
      page = redis.call('ZRANGEBYLEX', lanes, from, ranges[r][2], 'LIMIT', 0, LANE_PAGE)
      i, read = 0, read + LANE_PAGE
      if #page > 0 then from = '(' .. page[#page] end
    end
  end
end

-- The milliseconds until the bucket of a queue a claim found out of tokens
-- holds one (the soonest of them; nil when no rate held a claim back).
local token_wait = nil

-- Lease up to `want` jobs of a flowing queue as its limits admit (see
-- providers/_flow.py and sql/_lanes.py, whose rules these are): the queue's
-- room is its max_concurrency less the jobs processing and the whole tokens
-- of its rate's bucket; the keys with ready jobs take turns in key order after
-- the key served last (`weight` jobs a turn; a key at max_concurrency_per_key
-- is skipped), or with fifo_across_keys the oldest ready jobs of keys with a
-- free slot go first. take(id) leases one job. Answers how many were leased.
local function lease_flow(queue, want, accepted, now, take)
  local now_ms = tonumber(now) * 1000
  local flow = P .. 'flow:' .. queue
  local f = redis.call('HMGET', flow, 'limits', 'tokens', 'refilled', 'turn', 'served')
  local limits = limits_of(f[1])
  local per_key = tonumber(limits.max_concurrency_per_key) or 0
  local most = tonumber(limits.max_concurrency) or 0
  local weights = limits.key_weights
  local room, exact = want, nil
  if most > 0 then
    local processing = tonumber(redis.call('HGET', P .. 'counts:' .. queue, PROCESSING) or '0')
    room = math.min(room, most - processing)
  end
  if limits.rate then
    local tokens
    tokens, exact = bucket(limits.rate, f[2], f[3], now_ms)
    room = math.min(room, tokens)
    if tokens < 1 then
      local rate = limits.rate
      local wait = (1 - exact) * tonumber(rate[2]) * 1000 / tonumber(rate[1])
      token_wait = math.min(token_wait or wait, wait)
    end
  end
  if room <= 0 then return 0 end
  local lanes = P .. 'lanes:' .. queue
  local function weight(key) return tonumber(weights[key]) or 1 end
  local function free(key)
    if key == '' or per_key <= 0 then return room end
    return per_key - redis.call('SCARD', run_key(queue, key))
  end
  -- Take up to n jobs of a key's lane (of the accepted types), best first.
  local function from_lane(key, n)
    local lane = lane_key(queue, key)
    local ids = redis.call('ZRANGE', lane, 0, (accepted and TYPE_SCAN or n) - 1)
    local got, gone = 0, {}
    for _, id in ipairs(ids) do
      if got >= n then break end
      local jtype = accepted and redis.call('HGET', jkey(id), 't')
      if not accepted or accepted[jtype] then
        gone[#gone + 1] = id
        if take(id) then got = got + 1 end
      end
    end
    bulk('ZREM', lane, gone)
    if redis.call('EXISTS', lane) == 0 then
      redis.call('ZREM', lanes, key)
      return got, false
    end
    return got, true
  end
  local got = 0
  local turn, served = f[4] or '', tonumber(f[5]) or 0
  if limits.fifo_across_keys == true then
    -- The oldest ready jobs (best score) of the keys with a free slot.
    local left, heads = {}, {}
    local function head(key)
      local lane = lane_key(queue, key)
      local items = redis.call('ZRANGE', lane, 0, (accepted and TYPE_SCAN or 1) - 1, 'WITHSCORES')
      for j = 1, #items, 2 do
        if not accepted or accepted[redis.call('HGET', jkey(items[j]), 't')] then
          return {tonumber(items[j + 1]), items[j]}
        end
      end
      return nil
    end
    for _, key in ipairs(redis.call('ZRANGEBYLEX', lanes, '-', '+', 'LIMIT', 0, MAX_LANES)) do
      left[key] = free(key)
      if left[key] > 0 then heads[key] = head(key) end
    end
    while got < room do
      local best, best_key = nil, nil
      for key, item in pairs(heads) do
        if best == nil or item[1] < best[1] or (item[1] == best[1] and item[2] < best[2]) then
          best, best_key = item, key
        end
      end
      if best == nil then break end
      local lane = lane_key(queue, best_key)
      redis.call('ZREM', lane, best[2])
      if take(best[2]) then
        got = got + 1
        left[best_key] = left[best_key] - 1
      end
      heads[best_key] = left[best_key] > 0 and head(best_key) or nil
      if redis.call('EXISTS', lane) == 0 then redis.call('ZREM', lanes, best_key) end
    end
  else
    -- Keys after the one served last, then around again; that key first if
    -- its turn is not over.
    local rest = {}
    local first = served < weight(turn) and redis.call('ZSCORE', lanes, turn) ~= false
    if first then rest[turn] = weight(turn) - served end
    local left, going_on, still = {}, first, {}
    local function visit(key)
      if left[key] == nil then left[key] = free(key) end
      local n = math.min(rest[key] or weight(key), left[key], room - got)
      local continuing = going_on and key == turn and rest[key] ~= nil
      rest[key] = nil
      if n > 0 then
        local took, more = from_lane(key, n)
        if took > 0 then
          got = got + took
          left[key] = left[key] - took
          served = (continuing and served or 0) + took
          turn = key
        end
        if took == n and left[key] > 0 and more then still[#still + 1] = key end
      end
    end
    for key in turn_order(lanes, turn, first) do
      if got >= room then break end
      visit(key)
    end
    going_on = false
    while got < room and #still > 0 do
      local active = still
      still = {}
      for _, key in ipairs(active) do
        if got >= room then break end
        visit(key)
      end
    end
  end
  local fields = {'turn', turn, 'served', served}
  if exact then
    append(fields, 'tokens', tostring(exact - got))
    append(fields, 'refilled', tostring(now_ms))
  end
  redis.call('HSET', flow, unpack(fields))
  return got
end

-- Lease up to `max` ready jobs of some queues and types to a consumer of this
-- gateway; the consumer's arguments are ARGV[first] on: worker id, now (s),
-- lease deadline (ms), max, number of queues, the queues, then the accepted
-- types to the end (none: every type). Paused queues (the paused set) are
-- skipped. Oldest first among the highest priority, across the queues without
-- flow control and types; then the flowing queues' lanes (lease_flow).
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
  local taken, leases = {}, {}
  -- Lease one job if it is still pending; true if it was.
  local function take(id)
    local job = jkey(id)
    local f = redis.call('HMGET', job, 's', 'q', 'a', 'st', 'k')
    if f[1] ~= PENDING then return false end
    redis.call('HSET', job, 's', PROCESSING, 'a', tostring(tonumber(f[3]) + 1), 'w', worker,
      'gw', gateway, 'u', now)
    if f[4] then redis.call('HDEL', job, 'st') end
    if f[5] and f[5] ~= '' and is_flowing(f[2]) then
      redis.call('SADD', run_key(f[2], f[5]), id)
      redis.call('SADD', P .. 'running:' .. f[2], f[5])
    end
    append(leases, deadline, id)
    count(f[2], PENDING, PROCESSING)
    taken[#taken + 1] = load(job)
    return true
  end
  local heads, flows = {}, {}
  for i = qfirst, qfirst + nqueues - 1 do
    local queue = ARGV[i]
    if redis.call('SISMEMBER', P .. 'paused', queue) == 1 then
      -- paused: nothing from it
    elseif is_flowing(queue) then
      flows[#flows + 1] = queue
    else
      local types_key = P .. 'types:' .. queue
      for _, jtype in ipairs(redis.call('SMEMBERS', types_key)) do
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
  end
  table.sort(heads, function(a, b) return a[1] < b[1] end)
  local gone = {}
  for i = 1, math.min(max, #heads) do
    local id, key = heads[i][2], heads[i][3]
    local ids = gone[key]
    if not ids then
      ids = {}
      gone[key] = ids
    end
    ids[#ids + 1] = id
    take(id)
  end
  for key, ids in pairs(gone) do bulk('ZREM', key, ids) end
  for _, queue in ipairs(flows) do
    if #taken >= max then break end
    lease_flow(queue, max - #taken, accepted, now, take)
  end
  bulk('ZADD', P .. 'leased:' .. gateway, leases)
  if #leases > 0 then redis.call('SADD', P .. 'gateways', gateway) end
  return taken
end
