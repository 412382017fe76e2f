/*
 * main.c -- the axon command: `axon [serve] [-c FILE]`, `axon
 * generate-config`, `axon admin ...`, `--version`, `--help`.
 *
 * Start-up order matters: the config is validated and every listener bound
 * before anything is written to the data dir, so a bad config or a taken
 * port fails with one line and exit status 2 and leaves no trace.
 */
#include "core/push.h"
#include "server/admin.h"
#include "server/changes.h"
#include "server/cs/cs.h"
#include "server/handlers.h"
#include "server/outbound.h"
#include "server/pusher.h"
#include "server/typing.h"
#include "core/events.h"
#include "federation/federation.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* room changes kept for incremental /sync (16 bytes each): clients whose token is older
 * than the last 64k room changes get the slower look at every room */
#define ROOM_CHANGES_KEPT 65536

extern char **environ;

static void usage(FILE *fp)
{
    fprintf(fp, "usage: axon [serve] [-c FILE]     run the homeserver (default)\n"
                "       axon generate-config      print a commented configuration\n"
                "       axon admin COMMAND ...    manage accounts and tokens (axon admin --help)\n"
                "       axon --version | --help\n"
                "\n"
                "Without -c (or AXON_CONFIG) axon runs on an embedded default: server name\n"
                "localhost:8008, data in ./axon-data, listening on 127.0.0.1:8008.\n"
                "Every config key can be overridden by AXON_<KEY> in the environment.\n");
}

/* Creates 'path' (mode 0700) if missing. */
static int ensure_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "data_dir: cannot create '%s': %s", path, strerror(errno));
    return AX_EIO;
}

/* Loads the config for commands that take -c; exits 2 with a message on failure. */
static ax_config_t *load_config(const char *path)
{
    if (path == NULL)
        path = getenv("AXON_CONFIG");
    if (path != NULL && *path == '\0')
        path = NULL;
    char err[512];
    ax_config_t *cfg;
    if (ax_config_load(path, environ, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon: %s\n", err);
        exit(2);
    }
    return cfg;
}

/* Opens the data dir's database and signing key for 'srv'; exits 2 on failure. */
static void open_data(ax_server_t *srv)
{
    const ax_config_t *cfg = srv->cfg;
    char err[512];
    char *dbdir = ax_asprintf("%s/db", cfg->data_dir);
    char *keypath = ax_asprintf("%s/signing.key", cfg->data_dir);
    ax_db_options_t dbo = {.path = dbdir, .map_size = cfg->map_size, .sync = cfg->sync};
    if (ensure_dir(cfg->data_dir, err, sizeof(err)) != 0 || ensure_dir(dbdir, err, sizeof(err)) != 0 ||
        ax_db_open(&dbo, &srv->db, err, sizeof(err)) != 0 ||
        ax_signing_key_load_or_create(keypath, &srv->signing_key, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon: %s\n", err);
        exit(2);
    }
    free(dbdir);
    free(keypath);
}

/* Every second on one HTTP thread: typing notifications that ran out (other servers hear that our
 * users stopped; remote users' typing is theirs to expire). */
static void typing_expired(void *arg, const char *room_id, const char *const *users, size_t n)
{
    ax_server_t *srv = arg;
    ax_cs_typing_notify_room(srv, room_id);
    for (size_t i = 0; i < n; ++i)
        if (ax_streq(ax_id_domain(users[i]), srv->cfg->server_name))
            ax_fed_sender_typing(srv->fed, room_id, users[i], false);
}

/* A presence change the housekeeping decided: nobody waits for it. */
typedef struct st_bg_job_t {
    ax_wjob_t super;
    ax_apply_fn apply;
    void *data;
    void (*free_data)(void *);
} bg_job_t;

static int bg_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    bg_job_t *j = (bg_job_t *)job;
    return j->apply(txn, j->data);
}

static void bg_done(ax_task_t *task)
{
    bg_job_t *j = (bg_job_t *)task;
    j->free_data(j->data);
    free(j);
}

static void bg_post(ax_port_t *port, ax_task_t *chain)
{
    (void)port;
    while (chain != NULL) {
        ax_task_t *next = chain->_next;
        chain->done(chain);
        chain = next;
    }
}

static ax_port_t bg_port = {bg_post}; /* finishes background jobs on the writer thread */

static void submit_background(ax_server_t *srv, ax_apply_fn apply, void *data, void (*free_data)(void *))
{
    bg_job_t *j = ax_calloc(1, sizeof(*j));
    j->super.apply = bg_apply;
    j->super.super.done = bg_done;
    j->super.super.port = &bg_port;
    j->apply = apply;
    j->data = data;
    j->free_data = free_data;
    ax_writer_submit(srv->writer, &j->super);
}

static void housekeeping(ax_server_t *srv)
{
    ax_typing_expire(srv->typing, ax_now_ms(), typing_expired, srv);
    ax_presence_tick(srv, submit_background);
    ax_cs_media_tick(srv, submit_background);
}

/* SIGTERM: outbound federation requests end now, so the HTTP threads waiting on them can drain. */
static void stopping(ax_server_t *srv)
{
    ax_fed_shutdown(srv->fed);
}

/* The writer's commit hook: news for long-polls, for the push sender, and for the federation sender
 * ("%fed..." keys, which no long-poll waits on). */
static void notify_hook(void *arg, const ax_commit_info_t *info)
{
    ax_server_t *srv = arg;
    const char **mine = NULL;
    size_t nfed = 0;
    for (size_t i = 0; i < info->nkeys; ++i)
        nfed += strncmp(info->keys[i], "%fed", 4) == 0;
    ax_commit_info_t rest = *info;
    if (nfed != 0) {
        mine = ax_malloc((info->nkeys - nfed + 1) * sizeof(char *));
        rest.nkeys = 0;
        for (size_t i = 0; i < info->nkeys; ++i)
            if (strncmp(info->keys[i], "%fed", 4) != 0)
                mine[rest.nkeys++] = info->keys[i];
        rest.keys = mine;
        pthread_mutex_lock(&srv->fed_mutex); /* the federation loop may be stopping: see serve() */
        ax_fed_sender_notify(srv->fed, info->keys, info->nkeys);
        pthread_mutex_unlock(&srv->fed_mutex);
    }
    /* record before waking anyone: a woken /sync reads up to the recorded position */
    ax_changes_record(srv->changes, rest.stream_pos, rest.keys, rest.nkeys);
    ax_http_notify(srv, &rest);
    free(mine);
    if (ax_push_take_queued(srv->push))
        ax_pusher_wake(srv->pusher);
}

static int serve(const char *config_path)
{
    /* block SIGTERM/SIGINT before any thread exists (writer, workers, federation, DNS, libvips): every
     * thread inherits the mask, so only ax_http_run's sigwait receives them; a thread with
     * them unblocked would let the default action kill the process without a clean stop */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    ax_config_t *cfg = load_config(config_path);
    ax_log_setup((ax_log_level_t)cfg->log_level, (ax_log_format_t)cfg->log_format);

    ax_server_t srv;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = cfg;
    srv.nthreads = cfg->threads;
    srv.started_at_ms = ax_now_ms();
    pthread_mutex_init(&srv.key_mutex, NULL);
    pthread_mutex_init(&srv.nonce_mutex, NULL);
    pthread_mutex_init(&srv.fed_mutex, NULL);

    char err[512];
    if ((cfg->federation_enabled && ax_fed_check_config(cfg, err, sizeof(err)) != 0) ||
        ax_http_bind(&srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon: %s\n", err);
        ax_http_dispose(&srv);
        ax_config_free(cfg);
        return 2;
    }
    open_data(&srv);
    if (ax_media_store_open(&srv.media.store, cfg->data_dir, true, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon: %s\n", err);
        return 2;
    }
    srv.origin.server_name = cfg->server_name;
    srv.origin.key = &srv.signing_key;
    srv.push = ax_push_new(cfg->server_name);
    ax_outbound_opts_t oo = {.allow_private = cfg->outbound_allow_private,
                             .verify_tls = cfg->federation_verify_tls,
                             .ca_file = cfg->federation_ca_file,
                             .timeout_ms = 15000,
                             .max_per_host = 8};
    if ((srv.outbound = ax_outbound_new(&oo, err, sizeof(err))) == NULL) {
        fprintf(stderr, "axon: %s\n", err);
        return 2;
    }
    srv.pusher = ax_pusher_new(&srv, srv.outbound);
    srv.typing = ax_typing_new();
    srv.presence = ax_presence_new();
    srv.on_tick = housekeeping;

    if (cfg->allow_registration)
        ax_log(AX_LOG_INFO, "registration is open%s",
               ax_streq(cfg->source, "embedded default") ? " (embedded default config, loopback only)" : "");
    if (!cfg->sync)
        ax_log(AX_LOG_WARN, "sync = false: acknowledged writes can be lost on a crash");

    srv.writer = ax_writer_new(srv.db);
    ax_writer_set_commit_hook(srv.writer, notify_hook, &srv);
    ax_push_attach(srv.push, srv.writer);
    srv.search = ax_search_indexer_new(srv.writer);
    ax_db_notif_attach(srv.db, srv.writer);
    if (ax_writer_start(srv.writer) != 0) {
        fprintf(stderr, "axon: cannot start the database writer\n");
        return 2;
    }
    srv.changes = ax_changes_new(ax_writer_stream_pos(srv.writer), ROOM_CHANGES_KEPT);
    if (ax_outbound_start(srv.outbound) != 0) {
        fprintf(stderr, "axon: cannot start the outbound HTTP thread\n");
        return 2;
    }
    ax_pusher_start(srv.pusher);
    if (cfg->federation_enabled)
        srv.fed = ax_fed_start(cfg, &srv.signing_key, srv.db, srv.writer);
    if (srv.fed != NULL)
        srv.media.fetch = ax_fed_media_fetch; /* mxc:// of other servers, fetched over federation */
    srv.on_stopping = stopping;
    srv.workers = ax_workers_new(cfg->worker_threads);
    srv.router = ax_router_new(ax_routes, ax_routes_count);
    srv.limits.login = ax_ratelimit_new(cfg->rl_login_per_second, cfg->rl_login_burst);
    srv.limits.register_ = ax_ratelimit_new(cfg->rl_register_per_second, cfg->rl_register_burst);
    srv.limits.media = ax_ratelimit_new(cfg->rl_media_per_second, cfg->rl_media_burst);
    ax_cs_versions_prepare(&srv);

    ax_http_run(&srv);

    /* threads are joined: the push sender and the federation loop finish their own writes, then the
     * writer drains; the commit hook stops handing the federation loop wake-ups first (background
     * jobs may still commit) */
    ax_outbound_stop(srv.outbound);
    pthread_mutex_lock(&srv.fed_mutex);
    ax_fed_t *fed = srv.fed;
    srv.fed = NULL;
    pthread_mutex_unlock(&srv.fed_mutex);
    ax_fed_free(fed);
    ax_writer_stop(srv.writer);
    ax_search_indexer_free(srv.search);
    ax_pusher_free(srv.pusher);
    ax_outbound_free(srv.outbound);
    ax_push_free(srv.push);
    ax_workers_free(srv.workers);
    ax_http_dispose(&srv);
    ax_writer_free(srv.writer);
    ax_db_close(srv.db);
    ax_router_free(srv.router);
    ax_ratelimit_free(srv.limits.login);
    ax_ratelimit_free(srv.limits.register_);
    ax_ratelimit_free(srv.limits.media);
    ax_thumbnail_shutdown(); /* the workers that used libvips are joined */
    ax_media_store_dispose(&srv.media.store);
    ax_signing_key_dispose(&srv.signing_key);
    ax_typing_free(srv.typing);
    ax_changes_free(srv.changes);
    ax_presence_free(srv.presence);
    ax_auth_seen_dispose();
    free(srv.versions_body);
    free(srv.key_body);
    pthread_mutex_destroy(&srv.key_mutex);
    pthread_mutex_destroy(&srv.nonce_mutex);
    pthread_mutex_destroy(&srv.fed_mutex);
    ax_log(AX_LOG_INFO, "stopped");
    ax_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "axon: libsodium failed to initialise\n");
        return 1;
    }
    int i = 1;
    const char *cmd = "serve";
    if (i < argc && argv[i][0] != '-')
        cmd = argv[i++];

    if (strcmp(cmd, "serve") == 0) {
        const char *config = NULL;
        for (; i < argc; ++i) {
            if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
                config = argv[++i];
            } else if (strncmp(argv[i], "--config=", 9) == 0) {
                config = argv[i] + 9;
            } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
                printf("axon %s\n", AX_VERSION);
                return 0;
            } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                usage(stdout);
                return 0;
            } else {
                fprintf(stderr, "axon: unknown option '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
        }
        return serve(config);
    }
    if (strcmp(cmd, "admin") == 0)
        return ax_admin_main(argc - i, argv + i);
    if (strcmp(cmd, "generate-config") == 0) {
        if (i != argc) {
            usage(stderr);
            return 2;
        }
        ax_config_write_sample(stdout);
        return 0;
    }
    fprintf(stderr, "axon: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
