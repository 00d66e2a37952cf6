-- Record how leases of this gateway ended (the lease state machine decided how).
-- ARGV: prefix, gateway, max history, then per ending 11 values: id, attempt,
-- state, time, end time ('' for none), due (ms, FAILED only), schedule time,
-- last error, has result ('1' or '0'), result, result content type.
-- A lease is applied only if the job is still PROCESSING in that attempt and
-- leased by this gateway (another may have taken it back since); the answer is
-- 1 or 0 per ending.
local gateway, max_history = ARGV[2], tonumber(ARGV[3])
local leased = P .. 'leased:' .. gateway
local applied = {}
for i = 4, #ARGV - 10, 11 do
  local id, attempt, state, now = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local job = jkey(id)
  local f = redis.call('HMGET', job, 's', 'a', 'gw', 'q', 't', 'p')
  if f[1] == PROCESSING and f[2] == attempt and f[3] == gateway then
    redis.call('ZREM', leased, id)
    redis.call('HSET', job, 's', state, 'u', now, 'gw', '')
    if ARGV[i + 7] ~= '' then redis.call('HSET', job, 'err', ARGV[i + 7]) end
    count(f[4], PROCESSING, state)
    if state == FAILED then
      redis.call('HSET', job, 'st', ARGV[i + 6])
      redis.call('ZADD', P .. 'delayed', ARGV[i + 5], id)
    elseif state == PENDING then
      push_ready(id, f[4], f[5], f[6])
    else
      redis.call('HSET', job, 'e', ARGV[i + 4])
      if ARGV[i + 8] == '1' then
        redis.call('HSET', job, 'r', ARGV[i + 9], 'rct', ARGV[i + 10])
      end
      finished(id, max_history)
    end
    applied[#applied + 1] = 1
  else
    applied[#applied + 1] = 0
  end
end
wake()
return applied
