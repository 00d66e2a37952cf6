-- Put jobs leased ahead for a stream that did not take them back in their
-- queue, as if never leased: PENDING, attempt as before the claim.
-- ARGV: prefix, gateway, now (s), then per job: id, attempt it was leased in.
-- A job is put back only if it is still PROCESSING in that attempt and leased
-- by this gateway. Answers how many were.
local gateway, now = ARGV[2], ARGV[3]
local unleased = {}
for i = 4, #ARGV - 1, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local job = jkey(id)
  local f = redis.call('HMGET', job, 's', 'a', 'gw', 'q', 't', 'p', 'k')
  if f[1] == PROCESSING and f[2] == attempt and f[3] == gateway then
    release(id, f[4], f[7])
    redis.call('HSET', job, 's', PENDING, 'a', tostring(tonumber(attempt) - 1), 'u', now,
      'gw', '', 'w', '')
    unleased[#unleased + 1] = id
    count(f[4], PROCESSING, PENDING)
    push_ready(id, f[4], f[5], f[6])
  end
end
bulk('ZREM', P .. 'leased:' .. gateway, unleased)
commit()
return #unleased
