/*
 * metrics.c -- GET /metrics (Prometheus text format 0.0.4) and GET /health.
 *
 * Request counters live per thread and per route (ax_route_metrics_t) and
 * are written only by their own thread, so recording costs no lock and no
 * contended atomic; a scrape sums the threads with relaxed loads.
 */
#include "server/server.h"
#include "server/handlers.h"
#include "server/http_internal.h"
#include "server/pusher.h"
#include "federation/federation.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const double ax_latency_bounds[AX_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   1e300};

static const int status_codes[AX_STATUS_SLOTS - 1] = {200, 201, 204, 301, 302, 304, 400, 401, 403, 404,
                                                      405, 409, 413, 429, 499, 500, 502, 503, 504};

static size_t status_slot(int status)
{
    for (size_t i = 0; i < AX_ARRAY_SIZE(status_codes); ++i)
        if (status_codes[i] == status)
            return i;
    return AX_STATUS_SLOTS - 1;
}

void ax_metrics_record(ax_thread_t *t, size_t route_index, int status, uint64_t latency_ns)
{
    ax_route_metrics_t *m = ax_thread_metrics(t, route_index);
    double secs = (double)latency_ns / 1e9;
    size_t b = 0;
    while (b < AX_LATENCY_BUCKETS - 1 && secs > ax_latency_bounds[b])
        ++b;
    /* single writer per counter: a relaxed load+store is enough */
    atomic_store_explicit(&m->status[status_slot(status)],
                          atomic_load_explicit(&m->status[status_slot(status)], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&m->latency[b], atomic_load_explicit(&m->latency[b], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&m->latency_ns_sum,
                          atomic_load_explicit(&m->latency_ns_sum, memory_order_relaxed) + latency_ns,
                          memory_order_relaxed);
}

uint64_t ax_process_rss(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp == NULL)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(fp, "%lu %lu", &size, &resident);
    fclose(fp);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void label_escape(ax_buf_t *b, const char *s)
{
    for (; *s; ++s) {
        if (*s == '\\' || *s == '"')
            ax_buf_putc(b, '\\');
        ax_buf_putc(b, *s);
    }
}

static void route_labels(ax_buf_t *b, size_t i)
{
    if (i == AX_ROUTE_UNMATCHED) {
        ax_buf_puts(b, "route=\"unmatched\",method=\"\"");
        return;
    }
    ax_buf_puts(b, "route=\"");
    label_escape(b, ax_routes[i].path);
    ax_buf_printf(b, "\",method=\"%s\"", ax_routes[i].method);
}

static void header(ax_buf_t *b, const char *name, const char *type, const char *help)
{
    ax_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_requests(ax_server_t *srv, ax_buf_t *b)
{
    size_t nroutes = ax_routes_count + 1;
    header(b, "axon_http_requests_total", "counter", "HTTP requests answered, by route template and status.");
    for (size_t i = 0; i < nroutes; ++i) {
        for (size_t s = 0; s < AX_STATUS_SLOTS; ++s) {
            uint64_t n = 0;
            for (unsigned t = 0; t < srv->nthreads; ++t)
                n += atomic_load_explicit(&ax_thread_metrics(srv->threads[t], i)->status[s], memory_order_relaxed);
            if (n == 0)
                continue;
            ax_buf_puts(b, "axon_http_requests_total{");
            route_labels(b, i);
            if (s < AX_STATUS_SLOTS - 1)
                ax_buf_printf(b, ",status=\"%d\"} %llu\n", status_codes[s], (unsigned long long)n);
            else
                ax_buf_printf(b, ",status=\"other\"} %llu\n", (unsigned long long)n);
        }
    }
    header(b, "axon_http_request_duration_seconds", "histogram", "Time from request to reply, by route template.");
    for (size_t i = 0; i < nroutes; ++i) {
        uint64_t counts[AX_LATENCY_BUCKETS] = {0}, total = 0, sum_ns = 0;
        for (unsigned t = 0; t < srv->nthreads; ++t) {
            ax_route_metrics_t *m = ax_thread_metrics(srv->threads[t], i);
            for (size_t k = 0; k < AX_LATENCY_BUCKETS; ++k)
                counts[k] += atomic_load_explicit(&m->latency[k], memory_order_relaxed);
            sum_ns += atomic_load_explicit(&m->latency_ns_sum, memory_order_relaxed);
        }
        for (size_t k = 0; k < AX_LATENCY_BUCKETS; ++k)
            total += counts[k];
        if (total == 0)
            continue;
        uint64_t cum = 0;
        for (size_t k = 0; k < AX_LATENCY_BUCKETS; ++k) {
            cum += counts[k];
            ax_buf_puts(b, "axon_http_request_duration_seconds_bucket{");
            route_labels(b, i);
            if (k == AX_LATENCY_BUCKETS - 1)
                ax_buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
            else
                ax_buf_printf(b, ",le=\"%g\"} %llu\n", ax_latency_bounds[k], (unsigned long long)cum);
        }
        ax_buf_puts(b, "axon_http_request_duration_seconds_sum{");
        route_labels(b, i);
        ax_buf_printf(b, "} %.6f\n", (double)sum_ns / 1e9);
        ax_buf_puts(b, "axon_http_request_duration_seconds_count{");
        route_labels(b, i);
        ax_buf_printf(b, "} %llu\n", (unsigned long long)total);
    }
}

static void write_writer(ax_server_t *srv, ax_buf_t *b)
{
    ax_writer_stats_t ws;
    ax_writer_stats(srv->writer, &ws);
    header(b, "axon_writer_batches_total", "counter", "Write transactions committed (group commits).");
    ax_buf_printf(b, "axon_writer_batches_total %llu\n", (unsigned long long)ws.batches);
    header(b, "axon_writer_jobs_total", "counter", "Write jobs applied.");
    ax_buf_printf(b, "axon_writer_jobs_total %llu\n", (unsigned long long)ws.jobs);
    header(b, "axon_writer_failed_jobs_total", "counter",
           "Write jobs that failed (the rest of their batch committed).");
    ax_buf_printf(b, "axon_writer_failed_jobs_total %llu\n", (unsigned long long)ws.failed_jobs);
    header(b, "axon_writer_commit_errors_total", "counter", "Batches whose commit failed as a whole.");
    ax_buf_printf(b, "axon_writer_commit_errors_total %llu\n", (unsigned long long)ws.commit_errors);
    header(b, "axon_writer_queue_depth", "gauge", "Write jobs waiting for the writer.");
    ax_buf_printf(b, "axon_writer_queue_depth %llu\n", (unsigned long long)ws.queue_depth);
    header(b, "axon_writer_batch_size", "histogram", "Jobs per group commit.");
    for (size_t i = 0; i < AX_WRITER_BATCH_BUCKETS; ++i) {
        if (i == AX_WRITER_BATCH_BUCKETS - 1)
            ax_buf_printf(b, "axon_writer_batch_size_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)ws.batch_size_buckets[i]);
        else
            ax_buf_printf(b, "axon_writer_batch_size_bucket{le=\"%u\"} %llu\n", 1u << i,
                          (unsigned long long)ws.batch_size_buckets[i]);
    }
    ax_buf_printf(b, "axon_writer_batch_size_sum %llu\naxon_writer_batch_size_count %llu\n",
                  (unsigned long long)ws.jobs, (unsigned long long)ws.batches);
    header(b, "axon_writer_commit_seconds", "histogram", "Time to apply and durably commit one batch.");
    for (size_t i = 0; i < AX_WRITER_COMMIT_BUCKETS; ++i) {
        if (i == AX_WRITER_COMMIT_BUCKETS - 1)
            ax_buf_printf(b, "axon_writer_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)ws.commit_buckets[i]);
        else
            ax_buf_printf(b, "axon_writer_commit_seconds_bucket{le=\"%g\"} %llu\n", ax_writer_commit_bounds[i],
                          (unsigned long long)ws.commit_buckets[i]);
    }
    ax_buf_printf(b, "axon_writer_commit_seconds_sum %.6f\naxon_writer_commit_seconds_count %llu\n",
                  ws.commit_seconds_sum, (unsigned long long)ws.batches);
    header(b, "axon_stream_position", "gauge", "Last committed stream position.");
    ax_buf_printf(b, "axon_stream_position %llu\n", (unsigned long long)ax_writer_stream_pos(srv->writer));
    header(b, "axon_notifications_staged", "gauge",
           "Notifications written but not yet moved into their users' lists (moved in batches).");
    ax_buf_printf(b, "axon_notifications_staged %llu\n", (unsigned long long)ax_db_notif_staged(srv->db));
    uint64_t kept, used;
    ax_cs_sync_shared_stats(&kept, &used);
    header(b, "axon_sync_timelines_kept_total", "counter",
           "New timelines of /sync answers written out once and kept for the room's other woken members.");
    ax_buf_printf(b, "axon_sync_timelines_kept_total %llu\n", (unsigned long long)kept);
    header(b, "axon_sync_timelines_shared_total", "counter",
           "/sync answers that copied a kept timeline instead of loading and writing out its events.");
    ax_buf_printf(b, "axon_sync_timelines_shared_total %llu\n", (unsigned long long)used);
    if (srv->search != NULL) {
        header(b, "axon_search_index_position", "gauge",
               "Stream position up to which the full-text index is complete (search reads the timeline after it).");
        ax_buf_printf(b, "axon_search_index_position %llu\n", (unsigned long long)ax_search_indexer_pos(srv->search));
    }
}

static void write_push(ax_server_t *srv, ax_buf_t *b)
{
    if (srv->pusher == NULL)
        return;
    ax_pusher_stats_t ps;
    ax_pusher_stats(srv->pusher, &ps);
    header(b, "axon_push_sent_total", "counter", "Notifications a push gateway accepted.");
    ax_buf_printf(b, "axon_push_sent_total %llu\n", (unsigned long long)ps.sent);
    header(b, "axon_push_failed_total", "counter",
           "Push attempts that failed and will be retried (gateway down, 5xx).");
    ax_buf_printf(b, "axon_push_failed_total %llu\n", (unsigned long long)ps.failed);
    header(b, "axon_push_dropped_total", "counter",
           "Queued notifications given up on (refused by the gateway or the address policy, over a day old, "
           "pusher gone).");
    ax_buf_printf(b, "axon_push_dropped_total %llu\n", (unsigned long long)ps.dropped);
    header(b, "axon_push_rejected_pushkeys_total", "counter",
           "Pushers deleted because their gateway rejected the pushkey.");
    ax_buf_printf(b, "axon_push_rejected_pushkeys_total %llu\n", (unsigned long long)ps.rejected);
    header(b, "axon_push_queued", "gauge", "Notifications waiting in the push queue.");
    ax_buf_printf(b, "axon_push_queued %llu\n", (unsigned long long)ps.queued);
}

typedef struct st_dest_scan_t {
    ax_buf_t *b;
    ax_txn_t *txn;
    uint64_t now;
    uint64_t ok, backoff;
    uint64_t queued_ready, queued_backoff;
} dest_scan_t;

/* Queue depths: per destination (those with something queued), and summed by the destination's state. */
static int queue_metric_cb(void *arg, const char *server, const ax_fedq_state_t *st)
{
    dest_scan_t *d = arg;
    if (st->depth == 0)
        return 0;
    json_t *rec = NULL;
    bool backoff = false;
    if (ax_db_destination_get(d->txn, server, &rec) == 0) {
        json_int_t failures = json_integer_value(json_object_get(rec, "failures"));
        json_int_t retry_at = json_integer_value(json_object_get(rec, "retry_at_ms"));
        backoff = failures > 0 && retry_at > (json_int_t)d->now;
        json_decref(rec);
    }
    if (backoff)
        d->queued_backoff += st->depth;
    else
        d->queued_ready += st->depth;
    ax_buf_puts(d->b, "axon_federation_destination_queue_depth{destination=\"");
    label_escape(d->b, server);
    ax_buf_printf(d->b, "\"} %llu\n", (unsigned long long)st->depth);
    return 0;
}

static int dest_metric_cb(void *arg, const char *server, json_t *rec)
{
    dest_scan_t *d = arg;
    json_int_t failures = json_integer_value(json_object_get(rec, "failures"));
    json_int_t retry_at = json_integer_value(json_object_get(rec, "retry_at_ms"));
    if (failures <= 0) {
        d->ok++;
        return 0;
    }
    if (retry_at > (json_int_t)d->now)
        d->backoff++;
    else
        d->ok++;
    ax_buf_puts(d->b, "axon_federation_destination_failures{destination=\"");
    label_escape(d->b, server);
    ax_buf_printf(d->b, "\"} %lld\n", (long long)failures);
    return 0;
}

static void write_federation(ax_server_t *srv, ax_buf_t *b)
{
    if (srv->fed != NULL) {
        ax_fed_stats_t fs;
        ax_fed_stats(srv->fed, &fs);
        header(b, "axon_federation_requests_total", "counter",
               "Outbound federation requests, by outcome (ok: any answer below 500).");
        for (size_t i = 0; i < AX_FED_RESULT__COUNT; ++i)
            ax_buf_printf(b, "axon_federation_requests_total{result=\"%s\"} %llu\n",
                          ax_fed_result_name((ax_fed_result_t)i), (unsigned long long)fs.requests[i]);
        header(b, "axon_federation_requests_in_flight", "gauge", "Outbound federation requests in progress.");
        ax_buf_printf(b, "axon_federation_requests_in_flight %llu\n", (unsigned long long)fs.in_flight);
        header(b, "axon_federation_key_fetches_total", "counter",
               "Fetches of other servers' signing keys (direct, then notaries), by outcome.");
        ax_buf_printf(b, "axon_federation_key_fetches_total{result=\"ok\"} %llu\n",
                      (unsigned long long)fs.key_fetches_ok);
        ax_buf_printf(b, "axon_federation_key_fetches_total{result=\"failed\"} %llu\n",
                      (unsigned long long)fs.key_fetches_failed);
        header(b, "axon_federation_transactions_total", "counter",
               "Outbound transactions (PUT /send), by outcome: ok (answered 200), failed (retried later with the "
               "same ID), rejected (refused as a whole for good: dropped and logged).");
        ax_buf_printf(b, "axon_federation_transactions_total{result=\"ok\"} %llu\n", (unsigned long long)fs.txns_ok);
        ax_buf_printf(b, "axon_federation_transactions_total{result=\"failed\"} %llu\n",
                      (unsigned long long)fs.txns_failed);
        ax_buf_printf(b, "axon_federation_transactions_total{result=\"rejected\"} %llu\n",
                      (unsigned long long)fs.txns_rejected);
        header(b, "axon_federation_transactions_in_flight", "gauge", "Outbound transactions on their way.");
        ax_buf_printf(b, "axon_federation_transactions_in_flight %llu\n", (unsigned long long)fs.txns_in_flight);
        header(b, "axon_federation_pdus_sent_total", "counter", "PDUs in outbound transactions answered 200.");
        ax_buf_printf(b, "axon_federation_pdus_sent_total %llu\n", (unsigned long long)fs.pdus_sent);
        header(b, "axon_federation_edus_sent_total", "counter", "EDUs in outbound transactions answered 200.");
        ax_buf_printf(b, "axon_federation_edus_sent_total %llu\n", (unsigned long long)fs.edus_sent);
        header(b, "axon_federation_pdu_errors_total", "counter",
               "PDUs a remote server answered with an error (logged, not retried).");
        ax_buf_printf(b, "axon_federation_pdu_errors_total %llu\n", (unsigned long long)fs.pdu_errors);
        header(b, "axon_federation_dropped_total", "counter",
               "Queued PDUs and EDUs never delivered: in transactions refused for good, or unsendable (logged).");
        ax_buf_printf(b, "axon_federation_dropped_total %llu\n", (unsigned long long)fs.items_dropped);
        header(b, "axon_federation_catchup_skipped_total", "counter",
               "PDUs not sent after an outage because their room's latest events were sent instead "
               "(the remote fetches the gap).");
        ax_buf_printf(b, "axon_federation_catchup_skipped_total %llu\n", (unsigned long long)fs.catchup_skipped);
    }
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0)
        return;
    header(b, "axon_federation_destination_failures", "gauge",
           "Consecutive failed requests to each remote server that is failing now (0 are not listed).");
    dest_scan_t d = {.b = b, .txn = txn, .now = ax_now_ms()};
    ax_db_destinations_foreach(txn, dest_metric_cb, &d);
    header(b, "axon_federation_destination_queue_depth", "gauge",
           "PDUs and EDUs queued for each remote server (empty queues are not listed).");
    ax_db_fedq_destinations_foreach(txn, queue_metric_cb, &d);
    ax_db_read_end(txn);
    header(b, "axon_federation_destinations", "gauge", "Remote servers contacted, by state.");
    ax_buf_printf(b, "axon_federation_destinations{state=\"ok\"} %llu\n", (unsigned long long)d.ok);
    ax_buf_printf(b, "axon_federation_destinations{state=\"backoff\"} %llu\n", (unsigned long long)d.backoff);
    header(b, "axon_federation_queue_depth", "gauge",
           "PDUs and EDUs queued for other servers, by the destination's state (ready: being sent; backoff: "
           "waiting to retry an unreachable server).");
    ax_buf_printf(b, "axon_federation_queue_depth{state=\"ready\"} %llu\n", (unsigned long long)d.queued_ready);
    ax_buf_printf(b, "axon_federation_queue_depth{state=\"backoff\"} %llu\n", (unsigned long long)d.queued_backoff);
}

/* GET /metrics */
int ax_ops_metrics(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    ax_buf_t b = AX_BUF_INIT;
    ax_buf_reserve(&b, 16384);
    header(&b, "axon_build_info", "gauge", "Always 1; labels say which axon this is.");
    ax_buf_printf(&b, "axon_build_info{version=\"%s\"} 1\n", AX_VERSION);
    write_requests(srv, &b);
    header(&b, "axon_http_requests_in_flight", "gauge", "Requests being processed now.");
    ax_buf_printf(&b, "axon_http_requests_in_flight %lld\n", (long long)atomic_load(&srv->inflight));
    header(&b, "axon_http_connections", "gauge", "Open client connections.");
    ax_buf_printf(&b, "axon_http_connections %lld\n", (long long)atomic_load(&srv->connections));
    write_writer(srv, &b);
    write_push(srv, &b);
    write_federation(srv, &b);
    ax_db_stats_t ds;
    if (ax_db_stats(srv->db, &ds) == 0) {
        header(&b, "axon_db_map_size_bytes", "gauge", "LMDB map size (map_size): the most the database can grow to.");
        ax_buf_printf(&b, "axon_db_map_size_bytes %llu\n", (unsigned long long)ds.map_size);
        header(&b, "axon_db_used_bytes", "gauge", "LMDB pages in use times page size.");
        ax_buf_printf(&b, "axon_db_used_bytes %llu\n", (unsigned long long)ds.used_bytes);
        header(&b, "axon_db_readers", "gauge", "LMDB reader slots in use.");
        ax_buf_printf(&b, "axon_db_readers %u\n", ds.readers_used);
    }
    header(&b, "process_resident_memory_bytes", "gauge", "Resident set size of the axon process.");
    ax_buf_printf(&b, "process_resident_memory_bytes %llu\n", (unsigned long long)ax_process_rss());
    header(&b, "process_start_time_seconds", "gauge", "When the process started, seconds since the epoch.");
    ax_buf_printf(&b, "process_start_time_seconds %.3f\n", (double)srv->started_at_ms / 1000.0);
    int rc = ax_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.base, b.len);
    ax_buf_dispose(&b);
    return rc;
}

/* GET /health */
int ax_ops_health(ax_req_t *r)
{
    if (ax_db_ping(r->srv->db) != 0)
        return ax_reply_raw(r, 503, "text/plain; charset=utf-8", AX_STRLIT("database unavailable\n"));
    return ax_reply_raw(r, 200, "text/plain; charset=utf-8", AX_STRLIT("ok\n"));
}
