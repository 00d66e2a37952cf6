-- Make due scheduled and failed jobs ready.
-- ARGV: prefix, now (ms), time (s), most jobs to move.
-- Answers the ids moved, then the next due time (ms) as the last item ('' if none).
local now, limit = ARGV[2], tonumber(ARGV[4])
local key = P .. 'delayed'
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
local moved = {}
for _, id in ipairs(due) do
  local job = jkey(id)
  local f = redis.call('HMGET', job, 's', 'q', 't', 'p')
  if f[1] == SCHEDULED or f[1] == FAILED then
    redis.call('HSET', job, 's', PENDING, 'u', ARGV[3])
    count(f[2], f[1], PENDING)
    push_ready(id, f[2], f[3], f[4])
    moved[#moved + 1] = id
  end
end
bulk('ZREM', key, due)
commit()
local next_due = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
moved[#moved + 1] = next_due[2] or ''
return moved
