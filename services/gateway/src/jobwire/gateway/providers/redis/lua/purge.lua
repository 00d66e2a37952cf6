-- Delete jobs that are as the caller read them (state and attempt).
-- ARGV: prefix, then per job: id, state read, attempt read.
-- A job leaves its ready, delayed or leased set or the history, and its
-- hash, counts and deduplication key go (forget). The gateway that leased a
-- processing one is told on its cancel channel, as for a cancellation. A job
-- that changed since it was read is left alone.
-- Answers the number deleted, then the ids of the processing ones among them.
local out = {0}
for i = 2, #ARGV, 3 do
  local id, state = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jkey(id), 's', 'a', 'q', 't', 'gw', 'k')
  if f[1] == state and f[2] == ARGV[i + 2] then
    if state == PENDING then
      unready(id, f[3], f[4], f[6])
    elseif state == PROCESSING then
      redis.call('ZREM', P .. 'leased:' .. f[5], id)
      redis.call('PUBLISH', P .. 'cancel:' .. f[5], id)
      release(id, f[3], f[6])
      out[#out + 1] = id
    elseif state == SCHEDULED or state == FAILED then
      redis.call('ZREM', P .. 'delayed', id)
    else
      redis.call('ZREM', P .. 'history', id)
    end
    forget(id)
    out[1] = out[1] + 1
  end
end
commit()
return out
