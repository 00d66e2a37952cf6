-- Forget finished jobs that ended before a time, oldest first.
-- ARGV: prefix, cutoff (s), most jobs to forget. Answers how many were.
local key = P .. 'history'
local cutoff, n = tonumber(ARGV[2]), 0
for _, id in ipairs(redis.call('ZRANGE', key, 0, tonumber(ARGV[3]) - 1)) do
  local ended = tonumber(redis.call('HGET', jkey(id), 'e'))
  if ended and ended > cutoff then break end
  forget(id)
  redis.call('ZREM', key, id)
  n = n + 1
end
commit()
return n
