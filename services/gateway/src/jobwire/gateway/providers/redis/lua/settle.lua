-- Record how leases of this gateway ended (the lease state machine decided how).
-- ARGV: prefix, gateway, max history, then per ending one line
-- "id,attempt,state,time,end time,due (ms, FAILED only),schedule time,E,R"
-- ('' for a value it has none of), followed by the last error and every
-- attempt's error if E is 1, and by the result and its content type if R is 1. (One text argument for what
-- most endings carry: each argument costs the client more than the script.)
-- A lease is applied only if the job is still PROCESSING in that attempt and
-- leased by this gateway (another may have taken it back since).
-- Then, if an empty argument follows the endings, jobs are leased to the
-- consumer whose leases ended, in the same call (claim ahead): the arguments
-- after it are lease_jobs's (lease.lua) from the worker id on.
-- Answers {1 or 0 per ending, the jobs leased (load())}.
local gateway, max_history = ARGV[2], tonumber(ARGV[3])
local applied, unleased, delayed = {}, {}, {}
local i = 4
while i <= #ARGV and ARGV[i] ~= '' do
  local id, attempt, state, now, ended, due, scheduled, has_error, has_result = string.match(
    ARGV[i], '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([01]),([01])$')
  i = i + 1
  local fields = {'s', state, 'u', now, 'gw', ''}
  if has_error == '1' then
    append(fields, 'err', ARGV[i])
    append(fields, 'errs', ARGV[i + 1])
    i = i + 2
  end
  local result, result_type = nil, nil
  if has_result == '1' then result, result_type = ARGV[i], ARGV[i + 1]; i = i + 2 end
  local job = jkey(id)
  local f = redis.call('HMGET', job, 's', 'a', 'gw', 'q', 't', 'p', 'k')
  if f[1] == PROCESSING and f[2] == attempt and f[3] == gateway then
    unleased[#unleased + 1] = id
    count(f[4], PROCESSING, state)
    release(id, f[4], f[7])
    if state == FAILED then
      append(fields, 'st', scheduled)
      append(delayed, due, id)
    elseif state == PENDING then
      push_ready(id, f[4], f[5], f[6])
    else
      append(fields, 'e', ended)
      if result then
        append(fields, 'r', result)
        append(fields, 'rct', result_type)
      end
      finished(id, max_history)
    end
    redis.call('HSET', job, unpack(fields))
    applied[#applied + 1] = 1
  else
    applied[#applied + 1] = 0
  end
end
bulk('ZREM', P .. 'leased:' .. gateway, unleased)
bulk('ZADD', P .. 'delayed', delayed)
local taken = {}
if i < #ARGV then taken = lease_jobs(gateway, i + 1) end
commit()
return {applied, taken}
