-- upload.lua -- media_upload's wrk script: POST /_matrix/media/v3/upload with
-- a body of AXB_UPLOAD_SIZE bytes that no other request of the run shares.
--
-- The body is a 32-byte prefix unique to the request (the run's nonce, the
-- thread, a counter) followed by random bytes read once from AXB_UPLOAD_BLOB,
-- so every upload has its own SHA-256 and the content-addressed store
-- cannot deduplicate it.  AXB_UPLOAD_TOKEN is the uploader's access token.
dofile(os.getenv("AXB_WRK_SUMMARY"))

local size = tonumber(os.getenv("AXB_UPLOAD_SIZE"))
local f = assert(io.open(os.getenv("AXB_UPLOAD_BLOB"), "rb"))
local blob = f:read(size - 32)
f:close()
assert(#blob == size - 32, "the random file is too small")
local headers = {["Authorization"] = "Bearer " .. os.getenv("AXB_UPLOAD_TOKEN"),
                 ["Content-Type"] = "application/octet-stream"}
local nonce = os.getenv("AXB_WRK_NONCE") or "nonce"

local threads = 0
setup = function(thread)
   thread:set("axb_tid", threads)
   threads = threads + 1
end

local n = 0
request = function()
   n = n + 1
   local prefix = string.format("%-32.32s", nonce .. "-" .. (axb_tid or 0) .. "-" .. n)
   return wrk.format("POST", nil, headers, prefix .. blob)
end
