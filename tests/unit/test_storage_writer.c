/*
 * test_storage_writer.c -- the single writer with group commit: many
 * concurrent jobs, per-submitter ordering, stream positions, a failing job
 * that does not poison its batch, MDB_MAP_FULL on a tiny map, durability
 * across a restart, jobs after stop, the parsed events the writer keeps
 * (ax_db_event_get_shared) forgetting what a rolled-back job read, and the
 * writer's own task (ax_writer_add_task): when it runs, rolled back alone.
 */
#include "testutil.h"

#include "storage/storage_internal.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct st_put_job_t {
    ax_wjob_t super;
    char key[32];
    size_t vlen;   /* value length (filled with 'x') */
    int fail_mode; /* 0 ok, 1 fail before writing, 2 fail after writing */
    uint64_t pos;  /* stream position handed out */
} put_job_t;

static int apply_put(ax_wjob_t *job, ax_txn_t *txn)
{
    put_job_t *j = (put_job_t *)job;
    if (j->fail_mode == 1)
        return AX_EINVAL;
    char *val = malloc(j->vlen);
    memset(val, 'x', j->vlen);
    int rc = ax_kv_put(txn, AX_DBI_meta, j->key, strlen(j->key), val, j->vlen, 0);
    free(val);
    if (rc != 0)
        return rc;
    j->pos = ax_txn_next_stream_pos(txn);
    return j->fail_mode == 2 ? AX_ECONFLICT : 0;
}

/* A port that completes tasks on the posting thread and counts them. */
typedef struct st_count_port_t {
    ax_port_t super;
    atomic_int done;
} count_port_t;

static void count_post(ax_port_t *port, ax_task_t *chain)
{
    count_port_t *cp = (count_port_t *)port;
    for (ax_task_t *t = chain, *next; t != NULL; t = next) {
        next = t->_next;
        atomic_fetch_add(&cp->done, 1);
    }
}

static put_job_t *job_new(const char *key, size_t vlen, int fail_mode, ax_port_t *port)
{
    put_job_t *j = calloc(1, sizeof(*j));
    snprintf(j->key, sizeof(j->key), "%s", key);
    j->vlen = vlen;
    j->fail_mode = fail_mode;
    j->super.apply = apply_put;
    j->super.super.port = port;
    return j;
}

static bool key_exists(ax_db_t *db, const char *key)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(t, AX_DBI_meta, key, strlen(key), &v, &vlen);
    ax_db_read_end(t);
    return rc == 0;
}

static ax_db_t *open_db(const char *dir, uint64_t map_size)
{
    ax_db_t *db;
    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = map_size, .sync = true};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
    return db;
}

#define SUBMITTERS    8
#define PER_SUBMITTER 400

typedef struct st_submitter_t {
    ax_writer_t *w;
    int id;
    count_port_t port;
    put_job_t *jobs[PER_SUBMITTER];
} submitter_t;

static void *submit_many(void *arg)
{
    submitter_t *s = arg;
    s->port.super.post = count_post;
    for (int i = 0; i < PER_SUBMITTER; ++i) {
        char key[32];
        snprintf(key, sizeof(key), "t%d:%04d", s->id, i);
        /* every 50th job fails after writing, every 70th before */
        int mode = (i % 50 == 49) ? 2 : (i % 70 == 69) ? 1 : 0;
        s->jobs[i] = job_new(key, 16, mode, &s->port.super);
        ax_writer_submit(s->w, &s->jobs[i]->super);
    }
    while (atomic_load(&s->port.done) < PER_SUBMITTER)
        usleep(1000);
    return NULL;
}

static void test_concurrent_jobs_ordering_and_failures(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 64 << 20);
    ax_writer_t *w = ax_writer_new(db);
    assert_int_equal(ax_writer_start(w), 0);

    static submitter_t subs[SUBMITTERS];
    pthread_t th[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; ++i) {
        memset(&subs[i], 0, sizeof(subs[i]));
        subs[i].w = w;
        subs[i].id = i;
        pthread_create(&th[i], NULL, submit_many, &subs[i]);
    }
    for (int i = 0; i < SUBMITTERS; ++i)
        pthread_join(th[i], NULL);

    uint64_t maxpos = 0;
    for (int s = 0; s < SUBMITTERS; ++s) {
        uint64_t last = 0;
        for (int i = 0; i < PER_SUBMITTER; ++i) {
            put_job_t *j = subs[s].jobs[i];
            int mode = j->fail_mode;
            if (mode == 0) {
                assert_int_equal(j->super.super.result, 0);
                assert_true(key_exists(db, j->key));
                /* a submitter's jobs commit in the order it submitted them */
                assert_true(j->pos > last);
                last = j->pos;
                if (j->pos > maxpos)
                    maxpos = j->pos;
            } else {
                assert_int_equal(j->super.super.result, mode == 1 ? AX_EINVAL : AX_ECONFLICT);
                /* its partial write was undone; the batch around it committed */
                assert_false(key_exists(db, j->key));
            }
            free(j);
        }
    }
    assert_int_equal(ax_writer_stream_pos(w), maxpos);

    ax_writer_stats_t st;
    ax_writer_stats(w, &st);
    assert_int_equal(st.jobs, SUBMITTERS * PER_SUBMITTER);
    assert_true(st.batches < st.jobs); /* group commit actually grouped */
    assert_true(st.replays > 0);
    assert_int_equal(st.commit_errors, 0);

    ax_writer_stop(w);
    ax_writer_free(w);
    ax_db_close(db);

    /* durable across a restart, stream position included */
    db = open_db(dir, 64 << 20);
    assert_true(key_exists(db, "t0:0000"));
    assert_true(key_exists(db, "t7:0398"));
    assert_false(key_exists(db, "t3:0049"));
    w = ax_writer_new(db);
    assert_int_equal(ax_writer_start(w), 0);
    assert_int_equal(ax_writer_stream_pos(w), maxpos);
    put_job_t *j = job_new("after-restart", 8, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), 0);
    assert_int_equal(j->pos, maxpos + 1);
    free(j);
    ax_writer_stop(w);

    /* after stop, jobs complete at once with AX_ESHUTDOWN */
    j = job_new("too-late", 8, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), AX_ESHUTDOWN);
    free(j);
    assert_false(key_exists(db, "too-late"));

    ax_writer_free(w);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

static void test_map_full(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 1 << 20); /* 1 MiB map */
    ax_writer_t *w = ax_writer_new(db);
    assert_int_equal(ax_writer_start(w), 0);

    put_job_t *small = job_new("small", 100, 0, NULL);
    assert_int_equal(ax_writer_run(w, &small->super), 0);
    put_job_t *huge = job_new("huge", 4 << 20, 0, NULL);
    assert_int_equal(ax_writer_run(w, &huge->super), AX_EMAPFULL);
    assert_false(key_exists(db, "huge"));
    /* the writer carries on after the failure */
    put_job_t *again = job_new("again", 100, 0, NULL);
    assert_int_equal(ax_writer_run(w, &again->super), 0);
    assert_true(key_exists(db, "small"));
    assert_true(key_exists(db, "again"));
    free(small);
    free(huge);
    free(again);

    ax_writer_stop(w);
    ax_writer_free(w);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

/* ---- notification keys reach the commit hook, deduplicated, and not those of failed writes ---- */

typedef struct st_notify_job_t {
    ax_wjob_t super;
    const char *keys[3];
    bool fail_after_write;
} notify_job_t;

static int apply_notify(ax_wjob_t *job, ax_txn_t *txn)
{
    notify_job_t *j = (notify_job_t *)job;
    for (int i = 0; i < 3 && j->keys[i] != NULL; ++i)
        ax_txn_notify(txn, j->keys[i]);
    if (j->fail_after_write) {
        ax_kv_put(txn, AX_DBI_meta, "x", 1, "y", 1, 0);
        return AX_ECONFLICT;
    }
    return 0;
}

typedef struct st_hook_seen_t {
    pthread_mutex_t mutex;
    char keys[16][32];
    size_t n;
    size_t commits;
} hook_seen_t;

static void hook(void *arg, const ax_commit_info_t *info)
{
    hook_seen_t *h = arg;
    pthread_mutex_lock(&h->mutex);
    h->commits++;
    for (size_t i = 0; i < info->nkeys && h->n < 16; ++i)
        snprintf(h->keys[h->n++], 32, "%s", info->keys[i]);
    pthread_mutex_unlock(&h->mutex);
}

static bool seen(hook_seen_t *h, const char *key)
{
    for (size_t i = 0; i < h->n; ++i)
        if (strcmp(h->keys[i], key) == 0)
            return true;
    return false;
}

static void test_notify_keys(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    ax_writer_t *w = ax_writer_new(db);
    hook_seen_t h = {.mutex = PTHREAD_MUTEX_INITIALIZER};
    ax_writer_set_commit_hook(w, hook, &h);
    assert_int_equal(ax_writer_start(w), 0);

    notify_job_t a = {.super = {.apply = apply_notify}, .keys = {"@a:x", "@b:x", "@a:x"}};
    assert_int_equal(ax_writer_run(w, &a.super), 0);
    assert_true(seen(&h, "@a:x"));
    assert_true(seen(&h, "@b:x"));
    assert_int_equal(h.n, 2); /* deduplicated */

    notify_job_t bad = {.super = {.apply = apply_notify}, .keys = {"@c:x"}, .fail_after_write = true};
    assert_int_equal(ax_writer_run(w, &bad.super), AX_ECONFLICT);
    assert_false(seen(&h, "@c:x")); /* rolled back with its writes */

    ax_writer_stop(w);
    ax_writer_free(w);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

typedef struct st_event_job_t {
    ax_wjob_t super;
    bool put, fail_after_write;
    int got; /* ax_db_event_get_shared's result */
    char body[32];
} event_job_t;

static int apply_event(ax_wjob_t *job, ax_txn_t *txn)
{
    event_job_t *j = (event_job_t *)job;
    if (j->put) {
        json_t *ev = json_pack("{s:s}", "body", j->body);
        int rc = ax_db_event_put(txn, "$e", "!r:x", 1, 0, ev);
        json_decref(ev);
        if (rc != 0)
            return rc;
    }
    json_t *ev = NULL;
    j->got = ax_db_event_get_shared(txn, "$e", &ev);
    if (j->got == 0)
        snprintf(j->body, sizeof(j->body), "%s", json_string_value(json_object_get(ev, "body")));
    json_decref(ev);
    return j->fail_after_write ? AX_ECONFLICT : 0;
}

static void test_kept_events_follow_rollbacks_and_rewrites(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    ax_writer_t *w = ax_writer_new(db);
    assert_int_equal(ax_writer_start(w), 0);

    /* read (and kept) inside a job that is rolled back: gone afterwards */
    event_job_t bad = {.super = {.apply = apply_event}, .put = true, .fail_after_write = true, .body = "ghost"};
    assert_int_equal(ax_writer_run(w, &bad.super), AX_ECONFLICT);
    assert_int_equal(bad.got, 0);
    event_job_t look = {.super = {.apply = apply_event}};
    assert_int_equal(ax_writer_run(w, &look.super), 0);
    assert_int_equal(look.got, AX_ENOTFOUND);

    /* stored, read (kept), stored again: the next read sees the new version */
    event_job_t v1 = {.super = {.apply = apply_event}, .put = true, .body = "one"};
    assert_int_equal(ax_writer_run(w, &v1.super), 0);
    event_job_t v2 = {.super = {.apply = apply_event}, .put = true, .body = "two"};
    assert_int_equal(ax_writer_run(w, &v2.super), 0);
    memset(&look, 0, sizeof(look));
    look.super.apply = apply_event;
    assert_int_equal(ax_writer_run(w, &look.super), 0);
    assert_int_equal(look.got, 0);
    assert_string_equal(look.body, "two");

    ax_writer_stop(w);
    ax_writer_free(w);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

static void test_schema_version_guard(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    /* pretend a newer axon wrote this database */
    ax_writer_t *w = ax_writer_new(db);
    assert_int_equal(ax_writer_start(w), 0);
    ax_writer_stop(w);
    ax_writer_free(w);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    uint64_t v;
    assert_int_equal(ax_db_meta_get_u64(t, "schema_version", &v), 0);
    assert_int_equal(v, AX_SCHEMA_VERSION);
    ax_db_read_end(t);
    ax_db_close(db);

    /* write a future version directly, then reopen */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "meta", 0, &dbi);
    uint8_t be[8];
    ax_be64_put(be, AX_SCHEMA_VERSION + 1);
    MDB_val k = {14, "schema_version"}, val = {8, be};
    mdb_put(txn, dbi, &k, &val, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);

    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = 8 << 20, .sync = true};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), AX_EINVAL);
    assert_non_null(strstr(err, "newer"));
    test_rm_rf(dir);
    free(dir);
}

static void test_read_txn_reuse(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    ax_txn_t *a, *b;
    assert_int_equal(ax_db_read_begin(db, &a), 0);
    /* nested read on the same thread gets its own txn */
    assert_int_equal(ax_db_read_begin(db, &b), 0);
    assert_ptr_not_equal(a, b);
    ax_db_read_end(b);
    ax_db_read_end(a);
    /* the cached one comes back */
    ax_txn_t *c;
    assert_int_equal(ax_db_read_begin(db, &c), 0);
    assert_ptr_equal(a, c);
    ax_db_read_end(c);
    assert_int_equal(ax_db_ping(db), 0);
    ax_db_stats_t st;
    assert_int_equal(ax_db_stats(db, &st), 0);
    assert_int_equal(st.map_size, 8 << 20);
    assert_true(st.used_bytes > 0);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

/* ---- the writer's own task (ax_writer_add_task) ---- */

typedef struct st_task_t {
    atomic_int want; /* 0: never due; 1: due when asked; 2: due when idle */
    atomic_int fail; /* the step writes, then fails */
    atomic_int steps, committed, aborted, idle_asks;
} task_t;

static bool task_due(void *arg, uint64_t stream_pos, bool idle)
{
    (void)stream_pos;
    task_t *t = arg;
    if (idle)
        atomic_fetch_add(&t->idle_asks, 1);
    int want = atomic_load(&t->want);
    return want == 1 || (want == 2 && idle);
}

static int task_step(void *arg, ax_txn_t *txn)
{
    task_t *t = arg;
    char key[32];
    snprintf(key, sizeof(key), "step%d", atomic_fetch_add(&t->steps, 1) + 1);
    atomic_store(&t->want, 0);
    int rc = ax_kv_put(txn, AX_DBI_meta, key, strlen(key), "x", 1, 0);
    assert_int_equal(ax_txn_writer_state(txn), NULL);
    return rc == 0 && atomic_load(&t->fail) ? AX_EIO : rc;
}

static void task_done(void *arg, bool committed)
{
    task_t *t = arg;
    atomic_fetch_add(committed ? &t->committed : &t->aborted, 1);
}

static void wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 5000 && atomic_load(v) < want; ++i)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

static void test_task(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    ax_writer_t *w = ax_writer_new(db);
    task_t t = {0};
    ax_writer_task_t task = {.due = task_due, .step = task_step, .done = task_done, .arg = &t, .idle_ms = 20};
    ax_writer_add_task(w, &task);
    assert_int_equal(ax_writer_start(w), 0);

    /* not due: asked once the writer has been idle for idle_ms, then it sleeps until a job comes */
    put_job_t *j = job_new("a", 4, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), 0);
    wait_for(&t.idle_asks, 1);
    int asks = atomic_load(&t.idle_asks);
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&t.idle_asks), asks);
    assert_int_equal(atomic_load(&t.steps), 0);

    /* due when idle: a job wakes the writer, idle_ms later the step runs and commits */
    atomic_store(&t.want, 2);
    free(j);
    j = job_new("b", 4, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), 0);
    wait_for(&t.committed, 1);
    assert_true(key_exists(db, "step1"));

    /* due at once: the step runs after the batch; one that fails is rolled back alone */
    atomic_store(&t.fail, 1);
    atomic_store(&t.want, 1);
    free(j);
    j = job_new("c", 4, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), 0);
    wait_for(&t.aborted, 1);
    assert_false(key_exists(db, "step2"));
    assert_true(key_exists(db, "c"));
    assert_int_equal(atomic_load(&t.committed), 1);

    /* a stopping writer runs no step */
    atomic_store(&t.want, 1);
    ax_writer_stop(w);
    assert_int_equal(atomic_load(&t.steps), 2);
    ax_writer_free(w);
    free(j);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

/* Two tasks: each runs when due, neither starves the other. */
static void test_two_tasks(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    ax_db_t *db = open_db(dir, 8 << 20);
    ax_writer_t *w = ax_writer_new(db);
    task_t a = {0}, b = {0};
    ax_writer_task_t ta = {.due = task_due, .step = task_step, .done = task_done, .arg = &a, .idle_ms = 50};
    ax_writer_task_t tb = {.due = task_due, .step = task_step, .done = task_done, .arg = &b, .idle_ms = 10};
    ax_writer_add_task(w, &ta);
    ax_writer_add_task(w, &tb);
    assert_int_equal(ax_writer_start(w), 0);
    atomic_store(&a.want, 2);
    atomic_store(&b.want, 2);
    put_job_t *j = job_new("x", 4, 0, NULL);
    assert_int_equal(ax_writer_run(w, &j->super), 0);
    wait_for(&a.committed, 1);
    wait_for(&b.committed, 1);
    /* both due at once, again and again: they take turns */
    for (int i = 2; i <= 5; ++i) {
        atomic_store(&a.want, 1);
        atomic_store(&b.want, 1);
        free(j);
        j = job_new("y", 4, 0, NULL);
        assert_int_equal(ax_writer_run(w, &j->super), 0);
        wait_for(&a.committed, i);
        wait_for(&b.committed, i);
    }
    ax_writer_stop(w);
    ax_writer_free(w);
    free(j);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_jobs_ordering_and_failures),
        cmocka_unit_test(test_map_full),
        cmocka_unit_test(test_notify_keys),
        cmocka_unit_test(test_schema_version_guard),
        cmocka_unit_test(test_read_txn_reuse),
        cmocka_unit_test(test_kept_events_follow_rollbacks_and_rewrites),
        cmocka_unit_test(test_task),
        cmocka_unit_test(test_two_tasks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
