-- summary.lua -- wrk's done() hook: prints the run's numbers as "AXB key=value"
-- lines that bench/lib/axbench/tools.py parses.  Latencies are in microseconds
-- (wrk's histogram resolution); err_status counts responses with status >= 400.
--
-- A scenario with its own wrk script (custom request(), headers, bodies) keeps
-- these numbers by loading this file first:
--     dofile(os.getenv("AXB_WRK_SUMMARY"))
-- bench/run sets AXB_WRK_SUMMARY to this file's path for every wrk it starts.

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("AXB requests=%d duration_us=%d bytes=%d\n",
                          summary.requests, summary.duration, summary.bytes))
   io.write(string.format("AXB err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
                          e.connect, e.read, e.write, e.status, e.timeout))
   io.write(string.format("AXB lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_max_us=%d lat_mean_us=%.1f\n",
                          latency:percentile(50), latency:percentile(90), latency:percentile(99),
                          latency.max, latency.mean))
end
