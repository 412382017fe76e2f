-- requests.lua -- wrk requests from a table a scenario writes, for requests a
-- plain GET cannot express: bodies, access tokens, unique txn IDs.
--
-- A scenario writes a small wrapper script (axbench/wrkscript.py does it):
--     dofile("<path>/summary.lua")
--     AXB_NONCE = "5f3a9c"                   -- overridden by $AXB_WRK_NONCE
--     AXB_REQUESTS = { {method = "PUT", path = "/...send/m.room.message/{n}",
--                       body = "{...}", token = "..."}, ... }
--     dofile("<path>/requests.lua")
-- Every request takes the next entry of AXB_REQUESTS (each wrk thread starts
-- at its own offset) and replaces "{n}" in its path and body by a string
-- unique within the run and across threads: NONCE-THREAD-COUNTER.  So txn IDs
-- (unique per access token), usernames and the like never repeat.

-- bench/run gives every wrk run a fresh AXB_WRK_NONCE, so a script reused for
-- several runs still never repeats a txn ID or a username
AXB_NONCE = os.getenv("AXB_WRK_NONCE") or AXB_NONCE

local threads = 0
setup = function(thread)
   thread:set("axb_tid", threads)
   threads = threads + 1
end

local n = 0
request = function()
   n = n + 1
   local reqs = AXB_REQUESTS
   local tid = axb_tid or 0
   local r = reqs[(tid * 7919 + n - 1) % #reqs + 1]
   local uniq = AXB_NONCE .. "-" .. tid .. "-" .. n
   local headers = {}
   if r.token then
      headers["Authorization"] = "Bearer " .. r.token
   end
   local body = nil
   if r.body then
      headers["Content-Type"] = "application/json"
      body = string.gsub(r.body, "{n}", uniq)
   end
   local path = string.gsub(r.path, "{n}", uniq)
   return wrk.format(r.method, path, headers, body)
end
