-- Lease up to `max` ready jobs of some queues and types to a consumer of this
-- gateway (lease_jobs in lib.lua).
-- ARGV: prefix, gateway, worker id, now (s), lease deadline (ms), max,
-- number of queues, the queues, then the accepted types (none: every type).
local taken = lease_jobs(ARGV[2], 3)
commit()
return taken
