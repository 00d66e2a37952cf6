-- Lease up to `max` ready jobs of some queues and types to a consumer of this
-- gateway (lease_jobs in lease.lua).
-- ARGV: prefix, gateway, worker id, now (s), lease deadline (ms), max,
-- number of queues, the queues, then the accepted types (none: every type).
-- Answers {the jobs leased (load()), the milliseconds until a rate that held
-- the claim back has a token ('' when none did)}.
local taken = lease_jobs(ARGV[2], 3)
commit()
return {taken, token_wait and tostring(token_wait) or ''}
