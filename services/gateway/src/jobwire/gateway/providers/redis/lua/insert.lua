-- Store a batch of new jobs, all or none.
-- ARGV: prefix, request-id ttl (s), then per job 13 values: id, queue, type,
-- state, priority, due (ms, '' when ready now), deduplication key, the job id
-- that key was seen to map to ('' for none), request id, body, time,
-- schedule time ('' for none), the job id the request id was seen to map to.
-- The caller decided duplicates (DedupRule) from what it read; if a key or a
-- request id changed since (another gateway enqueued), nothing is stored and
-- the answer is 0: read again and decide again. Otherwise 1.
local ttl = tonumber(ARGV[2])
local N = 13
local first = 3
local last = #ARGV - N + 1
for i = first, last, N do
  local dk, seen, rid = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  if dk ~= '' then
    local holder = redis.call('GET', P .. 'dedup:' .. dk)
    if (holder or '') ~= seen then return 0 end
  end
  if rid ~= '' and (redis.call('GET', P .. 'req:' .. rid) or '') ~= ARGV[i + 12] then
    return 0
  end
end
for i = first, last, N do
  local id, queue, jtype, state, priority = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local due, dk, rid, body, now = ARGV[i + 5], ARGV[i + 6], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
  redis.call('HSET', jkey(id), 'id', id, 'q', queue, 't', jtype, 'dk', dk, 'body', body,
    's', state, 'a', 0, 'c', now, 'u', now, 'p', priority)
  redis.call('ZADD', P .. 'jobs', redis.call('INCR', P .. 'seq'), id)
  redis.call('SADD', P .. 'queues', queue)
  count(queue, nil, state)
  if dk ~= '' then redis.call('SET', P .. 'dedup:' .. dk, id) end
  if rid ~= '' then redis.call('SET', P .. 'req:' .. rid, id, 'EX', ttl) end
  if ARGV[i + 11] ~= '' then redis.call('HSET', jkey(id), 'st', ARGV[i + 11]) end
  if due ~= '' then
    redis.call('ZADD', P .. 'delayed', due, id)
  else
    push_ready(id, queue, jtype, priority)
  end
end
wake()
return 1
