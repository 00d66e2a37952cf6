-- Counts of queues for GetQueueStats, in one round trip.
-- ARGV: prefix, then the queues (none: every known or paused queue).
-- Answers per queue: name, counts hash (flat), types with ready jobs, the
-- update time of the oldest head of its ready sets ('' when none is ready),
-- and 1 if the queue is paused, else 0.
local queues = {}
for i = 2, #ARGV do queues[#queues + 1] = ARGV[i] end
if #queues == 0 then queues = redis.call('SUNION', P .. 'queues', P .. 'paused') end
local out = {}
for _, queue in ipairs(queues) do
  local ready, oldest = {}, nil
  for _, jtype in ipairs(redis.call('SMEMBERS', P .. 'types:' .. queue)) do
    local head = redis.call('ZRANGE', P .. 'ready:' .. queue .. '/' .. jtype, 0, 0)
    if head[1] then
      ready[#ready + 1] = jtype
      local since = tonumber(redis.call('HGET', jkey(head[1]), 'u'))
      if since and (oldest == nil or since < oldest) then oldest = since end
    end
  end
  out[#out + 1] = queue
  out[#out + 1] = redis.call('HGETALL', P .. 'counts:' .. queue)
  out[#out + 1] = ready
  out[#out + 1] = oldest and tostring(oldest) or ''
  out[#out + 1] = redis.call('SISMEMBER', P .. 'paused', queue)
end
return out
