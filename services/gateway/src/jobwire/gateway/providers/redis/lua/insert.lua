-- Store a batch of new jobs, all or none.
-- ARGV: prefix, request-id ttl (s), then per job: one line
-- "id,state,priority,due (ms, '' when ready now),time,schedule time,K,R,C", its
-- queue, type and body, then if K is 1 its deduplication key and the job id
-- that key was seen to map to ('' for none), then if R is 1 its request id and
-- the job id that was seen to map to, then if C is 1 its concurrency key (its
-- queue then goes under flow control: lib.lua).
-- The caller decided duplicates (DedupRule) from what it read; if a key or a
-- request id maps elsewhere now (another gateway enqueued), nothing is stored
-- and the answer is 0: read again and decide again. Otherwise 1.
local ttl = tonumber(ARGV[2])
local jobs = {}
local i = 3
while i <= #ARGV do
  local id, state, priority, due, now, scheduled, has_key, has_request, has_ck = string.match(
    ARGV[i], '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([01]),([01]),([01])$')
  local job = {id = id, state = state, priority = priority, due = due, now = now,
    scheduled = scheduled, queue = ARGV[i + 1], jtype = ARGV[i + 2], body = ARGV[i + 3]}
  i = i + 4
  if has_key == '1' then
    job.key = ARGV[i]
    if (redis.call('GET', P .. 'dedup:' .. job.key) or '') ~= ARGV[i + 1] then return 0 end
    i = i + 2
  end
  if has_request == '1' then
    job.request = ARGV[i]
    if (redis.call('GET', P .. 'req:' .. job.request) or '') ~= ARGV[i + 1] then return 0 end
    i = i + 2
  end
  if has_ck == '1' then
    job.ck = ARGV[i]
    i = i + 1
  end
  jobs[#jobs + 1] = job
end
local created, delayed, queues = {}, {}, {}
local first = redis.call('INCRBY', P .. 'seq', #jobs) - #jobs
for n, job in ipairs(jobs) do
  local key = jkey(job.id)
  local fields = {'id', job.id, 'q', job.queue, 't', job.jtype, 'dk', job.key or '',
    'body', job.body, 's', job.state, 'a', 0, 'c', job.now, 'u', job.now, 'p', job.priority}
  if job.scheduled ~= '' then append(fields, 'st', job.scheduled) end
  if job.ck then
    append(fields, 'k', job.ck)
    make_flowing(job.queue)
  end
  redis.call('HSET', key, unpack(fields))
  append(created, first + n, job.id)
  queues[job.queue] = true
  count(job.queue, nil, job.state)
  if job.key then redis.call('SET', P .. 'dedup:' .. job.key, job.id) end
  if job.request then redis.call('SET', P .. 'req:' .. job.request, job.id, 'EX', ttl) end
  if job.due ~= '' then
    append(delayed, job.due, job.id)
  else
    push_ready(job.id, job.queue, job.jtype, job.priority)
  end
end
bulk('ZADD', P .. 'jobs', created)
bulk('ZADD', P .. 'delayed', delayed)
for queue in pairs(queues) do redis.call('SADD', P .. 'queues', queue) end
commit()
return 1
