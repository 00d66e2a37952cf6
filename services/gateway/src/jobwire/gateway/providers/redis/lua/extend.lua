-- Move the deadlines of leases of this gateway (how late another gateway waits
-- before it takes a lease back whose owner never ended it).
-- ARGV: prefix, gateway, then per lease: id, attempt, deadline (ms).
-- Answers 1 per lease still held, 0 per lease taken back.
local gateway = ARGV[2]
local leased = P .. 'leased:' .. gateway
local held = {}
for i = 3, #ARGV - 2, 3 do
  local id = ARGV[i]
  local f = redis.call('HMGET', jkey(id), 's', 'a', 'gw')
  if f[1] == PROCESSING and f[2] == ARGV[i + 1] and f[3] == gateway then
    redis.call('ZADD', leased, ARGV[i + 2], id)
    held[#held + 1] = 1
  else
    held[#held + 1] = 0
  end
end
return held
