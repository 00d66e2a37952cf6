-- Lease up to `max` ready jobs of some queues and types to a consumer of this gateway.
-- ARGV: prefix, gateway, worker id, now (s), lease deadline (ms), max,
-- number of queues, the queues, then the accepted types (none: every type).
-- Paused queues (the paused set) are skipped.
-- Oldest first among the highest priority, across queues and types. Each job
-- taken is PROCESSING with its attempt counted, in leased:GATEWAY, and
-- returned as load() reads it after the change.
local gateway, worker, now, deadline = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max = tonumber(ARGV[6])
local nqueues = tonumber(ARGV[7])
local accepted = nil
if #ARGV > 7 + nqueues then
  accepted = {}
  for i = 8 + nqueues, #ARGV do accepted[ARGV[i]] = true end
end
local heads = {}
for i = 8, 7 + nqueues do
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
commit()
return taken
