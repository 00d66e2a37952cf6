-- Store a queue's flow control (QueueLimits.as_json; '' for none) for every gateway.
-- ARGV: prefix, queue, limits JSON, now (ms), 1 if the limits hold jobs back.
-- The rate's bucket keeps the tokens it has, up to the new burst (full when the
-- queue had no rate). Limits that hold jobs back put the queue under flow
-- control (lib.lua); the claims waiting on it look again.
local queue, text, now_ms = ARGV[2], ARGV[3], tonumber(ARGV[4])
local flow = P .. 'flow:' .. queue
local old = redis.call('HMGET', flow, 'limits', 'tokens', 'refilled')
local new, before = limits_of(text), limits_of(old[1])
local tokens = 0
if new.rate then
  tokens = tonumber(new.rate[3])
  if before.rate then
    local _, exact = bucket(before.rate, old[2], old[3], now_ms)
    tokens = math.min(tokens, exact)
  end
end
redis.call('HSET', flow, 'limits', text, 'tokens', tostring(tokens), 'refilled', tostring(now_ms))
if text ~= '' then
  redis.call('HSET', P .. 'limits', queue, text)
else
  redis.call('HDEL', P .. 'limits', queue)
end
if ARGV[5] == '1' then make_flowing(queue) end
woken[queue] = true
commit()
return 1
