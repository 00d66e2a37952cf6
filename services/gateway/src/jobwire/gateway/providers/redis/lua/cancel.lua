-- Cancel a job that is as the caller read it (state and attempt); 0 if it changed.
-- ARGV: prefix, id, state read, attempt read, time, last error, max history.
-- The job leaves the ready, delayed or leased set it is in; the
-- gateway that leased it is told on its channel (cancel:GATEWAY) with the job id.
local id, state = ARGV[2], ARGV[3]
local job = jkey(id)
local f = redis.call('HMGET', job, 's', 'a', 'q', 't', 'gw', 'k')
if f[1] ~= state or f[2] ~= ARGV[4] then return 0 end
if state == PENDING then
  unready(id, f[3], f[4], f[6])
elseif state == PROCESSING then
  redis.call('ZREM', P .. 'leased:' .. f[5], id)
  redis.call('PUBLISH', P .. 'cancel:' .. f[5], id)
  release(id, f[3], f[6])
else
  redis.call('ZREM', P .. 'delayed', id)
end
redis.call('HSET', job, 's', CANCELLED, 'u', ARGV[5], 'e', ARGV[5], 'err', ARGV[6], 'gw', '')
count(f[3], state, CANCELLED)
finished(id, tonumber(ARGV[7]))
commit()
return 1
