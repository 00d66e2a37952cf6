-- Counts of queues for GetQueueStats, in one round trip.
-- ARGV: prefix, then the queues (none: every known or paused queue).
-- Answers per queue: name, counts hash (flat), types with ready jobs, the
-- update time of the oldest head of its ready sets ('' when none is ready),
-- and 1 if the queue is paused, else 0. Of a flowing queue, the heads of its
-- first 100 lanes tell the types and the oldest.
local queues = {}
for i = 2, #ARGV do queues[#queues + 1] = ARGV[i] end
if #queues == 0 then queues = redis.call('SUNION', P .. 'queues', P .. 'paused') end
local out = {}
for _, queue in ipairs(queues) do
  local ready, oldest = {}, nil
  local heads = {}
  if is_flowing(queue) then
    for _, key in ipairs(redis.call('ZRANGE', P .. 'lanes:' .. queue, 0, 99)) do
      heads[#heads + 1] = redis.call('ZRANGE', lane_key(queue, key), 0, 0)[1]
    end
  else
    for _, jtype in ipairs(redis.call('SMEMBERS', P .. 'types:' .. queue)) do
      heads[#heads + 1] = redis.call('ZRANGE', P .. 'ready:' .. queue .. '/' .. jtype, 0, 0)[1]
    end
  end
  local seen = {}
  for _, id in ipairs(heads) do
    local f = redis.call('HMGET', jkey(id), 't', 'u')
    if f[1] and not seen[f[1]] then
      seen[f[1]] = true
      ready[#ready + 1] = f[1]
    end
    local since = tonumber(f[2])
    if since and (oldest == nil or since < oldest) then oldest = since end
  end
  out[#out + 1] = queue
  out[#out + 1] = redis.call('HGETALL', P .. 'counts:' .. queue)
  out[#out + 1] = ready
  out[#out + 1] = oldest and tostring(oldest) or ''
  out[#out + 1] = redis.call('SISMEMBER', P .. 'paused', queue)
end
return out
