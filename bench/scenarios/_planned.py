"""Scenarios planned but not implemented: each needs an endpoint axon does not
have yet.  bench/run --list prints them, `bench/run --scenarios NAME` reports
them as "not implemented yet: needs ...", and docs/benchmarks.md lists them.

When an endpoint lands, write bench/scenarios/<name>.py (see README.md in this
folder) and delete its entry here.  Do not fake a scenario with a stub.
"""

PLANNED = [
    {"name": "media_upload", "title": "POST /_matrix/media/v3/upload",
     "needs": ["POST /_matrix/client/v3/register", "POST /_matrix/media/v3/upload"],
     "measures": "uploads/s and MB/s for 10 KB, 1 MB and 10 MB bodies (durable), and peak RSS "
                 "(h2o 2.2.5 buffers whole request bodies in memory)"},
    {"name": "media_download", "title": "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}",
     "needs": ["POST /_matrix/media/v3/upload", "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}"],
     "measures": "downloads/s and MB/s for 10 KB and 1 MB files; baseline nginx serving the same file "
                 "from disk"},
    {"name": "keys_claim", "title": "POST /_matrix/client/v3/keys/claim",
     "needs": ["POST /_matrix/client/v3/register", "POST /_matrix/client/v3/keys/upload",
               "POST /_matrix/client/v3/keys/claim"],
     "measures": "one-time-key claims/s (each a durable delete) after uploading 10,000 keys"},
    {"name": "to_device_fanout", "title": "PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} to many devices",
     "needs": ["POST /_matrix/client/v3/register", "PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}",
               "GET /_matrix/client/v3/sync"],
     "measures": "to-device messages/s to 100 devices of 10 users, and delivery latency via /sync"},
    {"name": "fed_send_ingest", "title": "PUT /_matrix/federation/v1/send/{txnId} (inbound PDUs)",
     "needs": ["PUT /_matrix/federation/v1/send/{txnId}", "X-Matrix request authentication",
               "GET /_matrix/key/v2/server on the fake remote (served by the bench itself)",
               "a room the fake remote is joined to (make_join/send_join)"],
     "measures": "inbound PDUs/s (signature + hash check, auth rules, persist); the bench acts as a remote "
                 "server with its own ed25519 key (needs python3-nacl, a Debian package)"},
    {"name": "remote_join", "title": "joining a room on another server (two axons on loopback)",
     "needs": ["POST /_matrix/client/v3/join/{roomIdOrAlias}", "GET /_matrix/federation/v1/make_join/...",
               "PUT /_matrix/federation/v2/send_join/...", "outbound federation to 127.0.0.1 "
               "(outbound_allow_private = true, federation_verify_tls = false)"],
     "measures": "time to join a remote room of 100 and 1,000 members, and the joining server's RSS"},
]
