-- Replay dead, failed or cancelled jobs that are as the caller read them.
-- ARGV: prefix, now (s), request key ('' for none), its ttl (s), 1 if this is
-- the request's last call, then per job: id, state read, attempt read, new body
-- ('' keeps it).
-- Each job goes pending as a new series of attempts (attempt 0; result,
-- progress, worker, end and schedule cleared; its errors kept), leaves the
-- history and the delayed set, and is ready at once; it takes its
-- deduplication key back unless another stored job holds it. A job that
-- changed since it was read is left alone. With a request, the number
-- replayed is added to replays:ID (n), marked done on the last call.
-- Answers the ids replayed, then the request's total so far ('' without one).
local now, request = ARGV[2], ARGV[3]
local replayable = {[DEAD] = true, [FAILED] = true, [CANCELLED] = true}
local replayed = {}
for i = 6, #ARGV, 4 do
  local id, state = ARGV[i], ARGV[i + 1]
  local job = jkey(id)
  local f = redis.call('HMGET', job, 's', 'a', 'q', 't', 'p', 'dk')
  if f[1] == state and f[2] == ARGV[i + 2] and replayable[state] then
    redis.call('ZREM', P .. 'history', id)
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('HSET', job, 's', PENDING, 'a', 0, 'u', now)
    redis.call('HDEL', job, 'st', 'e', 'r', 'rct', 'pg', 'w', 'gw')
    if ARGV[i + 3] ~= '' then redis.call('HSET', job, 'body', ARGV[i + 3]) end
    local dk = f[6]
    if dk and dk ~= '' then
      local holder = redis.call('GET', P .. 'dedup:' .. dk)
      if not holder or redis.call('EXISTS', jkey(holder)) == 0 then
        redis.call('SET', P .. 'dedup:' .. dk, id)
      end
    end
    count(f[3], state, PENDING)
    push_ready(id, f[3], f[4], f[5])
    replayed[#replayed + 1] = id
  end
end
commit()
local total = ''
if request ~= '' then
  total = tostring(redis.call('HINCRBY', request, 'n', #replayed))
  if ARGV[5] == '1' then redis.call('HSET', request, 'done', 1) end
  redis.call('EXPIRE', request, tonumber(ARGV[4]))
end
replayed[#replayed + 1] = total
return replayed
