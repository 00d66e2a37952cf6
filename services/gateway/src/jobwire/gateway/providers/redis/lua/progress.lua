-- Store a leased job's progress, if the lease is still this gateway's.
-- ARGV: prefix, gateway, id, attempt, progress, time.
local job = jkey(ARGV[3])
local f = redis.call('HMGET', job, 's', 'a', 'gw')
if f[1] == PROCESSING and f[2] == ARGV[4] and f[3] == ARGV[2] then
  redis.call('HSET', job, 'pg', ARGV[5], 'u', ARGV[6])
  return 1
end
return 0
