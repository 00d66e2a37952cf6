-- Forget finished jobs that ended before a time.
-- ARGV: prefix, cutoff (ms), most jobs to forget. Answers how many were.
local old = redis.call('ZRANGEBYSCORE', P .. 'history', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(old) do
  forget(id)
  redis.call('ZREM', P .. 'history', id)
end
return #old
