-- Replace the worker streams one gateway published; say which it must drain.
-- ARGV: prefix, gateway address, now (s), stale before (s), then per stream:
-- its session id and JSON.
-- Answers the sessions among them another gateway asked to drain (drain:A);
-- asks for sessions that are gone are dropped. No streams: the gateway leaves
-- the listing. Gateways that published nothing since `stale before` (they
-- died without saying so) are dropped too.
local gateway, now = ARGV[2], ARGV[3]
local gateways = P .. 'workergateways'
for _, old in ipairs(redis.call('ZRANGEBYSCORE', gateways, '-inf', '(' .. ARGV[4])) do
  redis.call('DEL', P .. 'workers:' .. old, P .. 'drain:' .. old)
  redis.call('ZREM', gateways, old)
end
local workers, drain = P .. 'workers:' .. gateway, P .. 'drain:' .. gateway
local asked = {}
redis.call('DEL', workers)
for i = 5, #ARGV, 2 do
  redis.call('HSET', workers, ARGV[i], ARGV[i + 1])
  if redis.call('SISMEMBER', drain, ARGV[i]) == 1 then asked[#asked + 1] = ARGV[i] end
end
redis.call('DEL', drain)
if #asked > 0 then redis.call('SADD', drain, unpack(asked)) end
if #ARGV > 4 then
  redis.call('ZADD', gateways, now, gateway)
else
  redis.call('ZREM', gateways, gateway)
end
return asked
