"""Scenarios planned but not implemented: each needs an endpoint axon does not
have yet.  bench/run --list prints them, `bench/run --scenarios NAME` reports
them as "not implemented yet: needs ...", and docs/benchmarks.md lists them.

Entries are dicts: {"name", "title", "needs": [endpoints], "measures": text}.
When an endpoint lands, write bench/scenarios/<name>.py (see README.md in this
folder) and delete its entry here.  Do not fake a scenario with a stub.

Empty today: media_upload, media_download, keys_claim, to_device_fanout,
fed_send_ingest and remote_join, the last ones planned, are implemented.
"""

PLANNED = []
