-- Take back the leases no live gateway will end.
-- ARGV: prefix, this gateway, now (ms), grace (ms).
-- A gateway whose heartbeat key (alive:G) lapsed is dead: all its leases are
-- taken. A live gateway's lease whose deadline passed more than `grace` ago
-- was never ended (its gateway could not reach Redis then): taken too. Another
-- gateway's leases are moved to this gateway (it ends them next, as lost
-- attempts; if it dies first, the next gateway takes them from it). This
-- gateway's own are only named: it knows whether it still holds them.
-- Answers {from gateway, job as load() reads it} pairs, flat.
local me, now, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = P .. 'leased:' .. me
local out = {}
for _, gateway in ipairs(redis.call('SMEMBERS', P .. 'gateways')) do
  local key = P .. 'leased:' .. gateway
  local dead = gateway ~= me and redis.call('EXISTS', P .. 'alive:' .. gateway) == 0
  local ids
  if dead then
    ids = redis.call('ZRANGE', key, 0, -1)
  else
    ids = redis.call('ZRANGEBYSCORE', key, '-inf', now - grace)
  end
  for _, id in ipairs(ids) do
    local job = jkey(id)
    local f = redis.call('HMGET', job, 's', 'gw')
    if f[1] ~= PROCESSING or f[2] ~= gateway then
      redis.call('ZREM', key, id)
    elseif gateway == me then
      out[#out + 1] = gateway
      out[#out + 1] = load(job)
    else
      redis.call('ZREM', key, id)
      redis.call('ZADD', mine, now + grace, id)
      redis.call('HSET', job, 'gw', me)
      out[#out + 1] = gateway
      out[#out + 1] = load(job)
    end
  end
  if dead then
    redis.call('DEL', key)
    redis.call('SREM', P .. 'gateways', gateway)
  end
end
return out
