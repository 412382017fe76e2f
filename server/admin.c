/*
 * admin.c -- `axon admin ...`: account and registration-token
 * administration on the data dir of a config, safe while the server runs
 * (LMDB serialises writers across processes; axon keeps no account state
 * in memory).  Writes go through a writer of its own, the same path the
 * server uses.
 */
#include "server/admin.h"
#include "server/cs/cs.h"
#include "core/events.h"
#include "storage/schema.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct st_admin_t {
    ax_config_t *cfg;
    ax_db_t *db;
    ax_writer_t *writer;
} admin_t;

static void admin_usage(FILE *fp)
{
    fprintf(fp, "usage: axon admin [-c FILE] COMMAND ...\n"
                "  create-user NAME [--admin] [--password-stdin]   create an account (a password is generated\n"
                "                                                  and printed unless read from stdin)\n"
                "  reset-password USER [--password-stdin] [--keep-devices]\n"
                "  deactivate USER                                 log out everywhere, never log in again\n"
                "  list-users [--json]\n"
                "  registration-token create [--uses N] [--expires-in SECONDS] [--token TOKEN]\n"
                "  registration-token list [--json]\n"
                "  registration-token delete TOKEN\n"
                "  backup DIR                                      consistent online copy of the database,\n"
                "                                                  signing key and media into DIR (new or empty)\n"
                "  media list-user USER [--json]                   a user's uploads (and pending /create IDs)\n"
                "  media delete MXC                                delete mxc://server/id; its file goes when no\n"
                "                                                  other media ID has the same content\n"
                "  rotate-key                                      new signing key; the old one is kept under\n"
                "                                                  old_verify_keys (restart axon to use the new key)\n"
                "  federation destinations [--json]                each remote server's backoff state and queue\n"
                "  federation reset SERVER                         forget SERVER's failures: retry it (and send\n"
                "                                                  its queue) at once\n"
                "USER is @name:server or just name.  The data dir comes from the config (-c, AXON_CONFIG,\n"
                "AXON_DATA_DIR, or the embedded default ./axon-data).\n");
}

static int fail(const char *fmt, ...) AX_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("axon admin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* A write job running a function with an argument, for ax_writer_run. */
typedef struct st_admin_job_t {
    ax_wjob_t super;
    int (*fn)(ax_txn_t *txn, void *arg);
    void *arg;
} admin_job_t;

static int admin_job_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    admin_job_t *j = (admin_job_t *)job;
    return j->fn(txn, j->arg);
}

static int run_write(admin_t *a, int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    admin_job_t j = {.super = {.apply = admin_job_apply}, .fn = fn, .arg = arg};
    return ax_writer_run(a->writer, &j.super);
}

/* "alice" or "@Alice:server" -> "@alice:server" (a new heap string), NULL when not ours. */
static char *resolve_user(admin_t *a, const char *s)
{
    char *id = s[0] == '@' ? ax_strdup(s) : ax_asprintf("@%s:%s", s, a->cfg->server_name);
    char *colon = strchr(id, ':');
    if (colon == NULL || strcmp(colon + 1, a->cfg->server_name) != 0 || !ax_id_is_valid_user_id(id)) {
        free(id);
        return NULL;
    }
    for (char *p = id + 1; p < colon; ++p)
        *p = (char)tolower((unsigned char)*p);
    return id;
}

static char *read_password(bool from_stdin, bool *generated)
{
    *generated = !from_stdin;
    if (!from_stdin) {
        char *pw = ax_malloc(21);
        ax_random_alnum(pw, 20);
        return pw;
    }
    char line[1024];
    if (fgets(line, sizeof(line), stdin) == NULL)
        return NULL;
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0')
        return NULL;
    return ax_strdup(line);
}

/* ---- create-user ---- */

typedef struct st_create_t {
    const char *user_id;
    const char *hash;
    bool admin;
} create_t;

static int create_apply(ax_txn_t *txn, void *arg)
{
    create_t *c = arg;
    json_t *existing = NULL;
    if (ax_db_account_get(txn, c->user_id, &existing) == 0) {
        json_decref(existing);
        return AX_EEXIST;
    }
    json_t *acct = json_pack("{s:s, s:b, s:b, s:I}", "password_hash", c->hash, "admin", c->admin, "deactivated", 0,
                             "created_ts", (json_int_t)ax_now_ms());
    int rc = ax_db_account_put(txn, c->user_id, acct);
    json_decref(acct);
    if (rc != 0)
        return rc;
    const char *colon = strchr(c->user_id, ':');
    char *lp = ax_strndup(c->user_id + 1, (size_t)(colon - c->user_id - 1));
    json_t *profile = json_pack("{s:s}", "displayname", lp);
    free(lp);
    rc = ax_db_profile_put(txn, c->user_id, profile);
    json_decref(profile);
    return rc;
}

static int cmd_create_user(admin_t *a, int argc, char **argv)
{
    const char *name = NULL;
    bool admin = false, from_stdin = false;
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "--admin") == 0)
            admin = true;
        else if (strcmp(argv[i], "--password-stdin") == 0)
            from_stdin = true;
        else if (argv[i][0] != '-' && name == NULL)
            name = argv[i];
        else
            return admin_usage(stderr), 2;
    }
    if (name == NULL)
        return admin_usage(stderr), 2;
    char *uid = resolve_user(a, name);
    if (uid == NULL || !ax_id_is_compliant_user_id(uid)) {
        free(uid);
        return fail("'%s' is not a valid user name (a-z, 0-9, ._=-/+) of %s", name, a->cfg->server_name);
    }
    bool generated;
    char *pw = read_password(from_stdin, &generated);
    if (pw == NULL) {
        free(uid);
        return fail("no password on stdin");
    }
    char hash[AX_PASSWORD_HASH_MAX];
    if (ax_password_hash(pw, hash) != 0) {
        free(uid);
        free(pw);
        return fail("cannot hash the password");
    }
    create_t c = {uid, hash, admin};
    int rc = run_write(a, create_apply, &c);
    if (rc == AX_EEXIST)
        rc = fail("%s already exists", uid);
    else if (rc != 0)
        rc = fail("cannot create %s: %s", uid, ax_strerror(rc));
    else if (generated)
        printf("%s\npassword: %s\n", uid, pw);
    else
        printf("%s\n", uid);
    sodium_memzero(pw, strlen(pw));
    free(pw);
    free(uid);
    return rc;
}

/* ---- reset-password ---- */

typedef struct st_reset_t {
    const char *user_id;
    const char *hash;
    bool keep_devices;
} reset_t;

static int reset_apply(ax_txn_t *txn, void *arg)
{
    reset_t *r = arg;
    json_t *acct = NULL;
    int rc = ax_db_account_get(txn, r->user_id, &acct);
    if (rc != 0)
        return rc;
    if (json_is_true(json_object_get(acct, "deactivated"))) {
        json_decref(acct);
        return AX_EFORBIDDEN;
    }
    json_object_set_new(acct, "password_hash", json_string(r->hash));
    rc = ax_db_account_put(txn, r->user_id, acct);
    json_decref(acct);
    if (rc == 0 && !r->keep_devices)
        rc = ax_cs_logout_devices(txn, r->user_id, NULL);
    return rc;
}

static int cmd_reset_password(admin_t *a, int argc, char **argv)
{
    const char *name = NULL;
    bool from_stdin = false, keep = false;
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "--password-stdin") == 0)
            from_stdin = true;
        else if (strcmp(argv[i], "--keep-devices") == 0)
            keep = true;
        else if (argv[i][0] != '-' && name == NULL)
            name = argv[i];
        else
            return admin_usage(stderr), 2;
    }
    char *uid = name ? resolve_user(a, name) : NULL;
    if (uid == NULL)
        return name ? fail("'%s' is not a user of %s", name, a->cfg->server_name) : (admin_usage(stderr), 2);
    bool generated;
    char *pw = read_password(from_stdin, &generated);
    char hash[AX_PASSWORD_HASH_MAX];
    int rc;
    if (pw == NULL) {
        rc = fail("no password on stdin");
    } else if (ax_password_hash(pw, hash) != 0) {
        rc = fail("cannot hash the password");
    } else {
        reset_t r = {uid, hash, keep};
        rc = run_write(a, reset_apply, &r);
        if (rc == AX_ENOTFOUND)
            rc = fail("no such user %s", uid);
        else if (rc == AX_EFORBIDDEN)
            rc = fail("%s is deactivated", uid);
        else if (rc != 0)
            rc = fail("cannot reset the password: %s", ax_strerror(rc));
        else if (generated)
            printf("password: %s\n", pw);
    }
    if (pw != NULL) {
        sodium_memzero(pw, strlen(pw));
        free(pw);
    }
    free(uid);
    return rc;
}

/* ---- deactivate ---- */

static int cmd_deactivate(admin_t *a, int argc, char **argv)
{
    if (argc != 1)
        return admin_usage(stderr), 2;
    char *uid = resolve_user(a, argv[0]);
    if (uid == NULL)
        return fail("'%s' is not a user of %s", argv[0], a->cfg->server_name);
    /* leaving the user's rooms means signing events as this server */
    char err[512];
    char *keypath = ax_asprintf("%s/signing.key", a->cfg->data_dir);
    ax_signing_key_t key;
    if (ax_signing_key_load_or_create(keypath, &key, err, sizeof(err)) != 0) {
        free(keypath);
        free(uid);
        return fail("%s", err);
    }
    free(keypath);
    ax_origin_t origin = {a->cfg->server_name, &key};
    ax_cs_deactivate_t d = {.origin = &origin};
    snprintf(d.user_id, sizeof(d.user_id), "%s", uid);
    int rc = run_write(a, ax_cs_deactivate_apply, &d);
    if (rc == AX_ENOTFOUND)
        rc = fail("no such user %s", uid);
    else if (rc != 0)
        rc = fail("cannot deactivate %s: %s", uid, ax_strerror(rc));
    else
        printf("deactivated %s (left %u rooms)\n", uid, d.rooms_left);
    ax_signing_key_dispose(&key);
    free(uid);
    return rc;
}

/* ---- list-users ---- */

static int list_user_cb(void *arg, const char *user_id, json_t *acct)
{
    json_t *out = arg;
    if (out != NULL) {
        json_t *row = json_pack("{s:s, s:O, s:O, s:O}", "user_id", user_id, "admin", json_object_get(acct, "admin"),
                                "deactivated", json_object_get(acct, "deactivated"), "created_ts",
                                json_object_get(acct, "created_ts"));
        json_array_append_new(out, row);
        return 0;
    }
    time_t t = (time_t)(json_integer_value(json_object_get(acct, "created_ts")) / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-40s %s%s created %s\n", user_id, json_is_true(json_object_get(acct, "admin")) ? "admin " : "",
           json_is_true(json_object_get(acct, "deactivated")) ? "deactivated " : "", when);
    return 0;
}

static int cmd_list_users(admin_t *a, int argc, char **argv)
{
    bool as_json = argc == 1 && strcmp(argv[0], "--json") == 0;
    if (argc > 1 || (argc == 1 && !as_json))
        return admin_usage(stderr), 2;
    ax_txn_t *txn;
    if (ax_db_read_begin(a->db, &txn) != 0)
        return fail("cannot read the database");
    json_t *out = as_json ? json_array() : NULL;
    ax_db_account_foreach(txn, NULL, list_user_cb, out);
    ax_db_read_end(txn);
    if (out != NULL) {
        char *s = json_dumps(out, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(out);
    }
    return 0;
}

/* ---- registration tokens ---- */

typedef struct st_token_op_t {
    const char *token;
    json_t *value; /* NULL: delete */
} token_op_t;

static int token_apply(ax_txn_t *txn, void *arg)
{
    token_op_t *t = arg;
    if (t->value == NULL)
        return ax_db_regtoken_del(txn, t->token);
    json_t *existing = NULL;
    if (ax_db_regtoken_get(txn, t->token, &existing) == 0) {
        json_decref(existing);
        return AX_EEXIST;
    }
    return ax_db_regtoken_put(txn, t->token, t->value);
}

static int token_list_cb(void *arg, const char *token, json_t *value)
{
    json_t *out = arg;
    if (out != NULL) {
        json_t *row = json_deep_copy(value);
        json_object_set_new(row, "token", json_string(token));
        json_array_append_new(out, row);
        return 0;
    }
    json_t *uses = json_object_get(value, "uses_allowed"), *exp = json_object_get(value, "expiry_time");
    printf("%-24s used %lld of %s", token, (long long)json_integer_value(json_object_get(value, "completed")),
           json_is_integer(uses) ? "" : "unlimited");
    if (json_is_integer(uses))
        printf("%lld", (long long)json_integer_value(uses));
    if (json_is_integer(exp)) {
        time_t t = (time_t)(json_integer_value(exp) / 1000);
        struct tm tm;
        char when[32];
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf(", expires %s", when);
    }
    putchar('\n');
    return 0;
}

static int cmd_registration_token(admin_t *a, int argc, char **argv)
{
    if (argc < 1)
        return admin_usage(stderr), 2;
    if (strcmp(argv[0], "list") == 0) {
        bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
        if (argc > 2 || (argc == 2 && !as_json))
            return admin_usage(stderr), 2;
        ax_txn_t *txn;
        if (ax_db_read_begin(a->db, &txn) != 0)
            return fail("cannot read the database");
        json_t *out = as_json ? json_array() : NULL;
        ax_db_regtoken_foreach(txn, token_list_cb, out);
        ax_db_read_end(txn);
        if (out != NULL) {
            char *s = json_dumps(out, JSON_INDENT(2));
            puts(s);
            free(s);
            json_decref(out);
        }
        return 0;
    }
    if (strcmp(argv[0], "delete") == 0) {
        if (argc != 2)
            return admin_usage(stderr), 2;
        token_op_t t = {argv[1], NULL};
        int rc = run_write(a, token_apply, &t);
        if (rc == AX_ENOTFOUND)
            return fail("no such token %s", argv[1]);
        if (rc != 0)
            return fail("cannot delete the token: %s", ax_strerror(rc));
        printf("deleted %s\n", argv[1]);
        return 0;
    }
    if (strcmp(argv[0], "create") != 0)
        return admin_usage(stderr), 2;
    json_t *uses = json_null(), *expiry = json_null();
    const char *token = NULL;
    char generated[17];
    for (int i = 1; i < argc; ++i) {
        uint64_t n;
        if (strcmp(argv[i], "--uses") == 0 && i + 1 < argc && ax_parse_u64(argv[i + 1], &n) == 0 && n > 0) {
            uses = json_integer((json_int_t)n);
            ++i;
        } else if (strcmp(argv[i], "--expires-in") == 0 && i + 1 < argc && ax_parse_u64(argv[i + 1], &n) == 0) {
            expiry = json_integer((json_int_t)(ax_now_ms() + n * 1000));
            ++i;
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else {
            return admin_usage(stderr), 2;
        }
    }
    if (token == NULL) {
        ax_random_alnum(generated, 16);
        token = generated;
    }
    size_t len = strlen(token);
    bool ok = len > 0 && len <= 64;
    for (const char *p = token; *p; ++p)
        ok = ok && (isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '~' || *p == '-');
    if (!ok)
        return fail("tokens are 1-64 characters from A-Z a-z 0-9 . _ ~ -");
    token_op_t t = {token, json_pack("{s:o, s:i, s:i, s:o}", "uses_allowed", uses, "pending", 0, "completed", 0,
                                     "expiry_time", expiry)};
    int rc = run_write(a, token_apply, &t);
    json_decref(t.value);
    if (rc == AX_EEXIST)
        return fail("token %s already exists", token);
    if (rc != 0)
        return fail("cannot create the token: %s", ax_strerror(rc));
    printf("%s\n", token);
    return 0;
}

/* ---- backup ---- */

/* Copies one regular file to a new file 'dst' with 'mode', then fsyncs it. */
static int copy_file(const char *src, const char *dst, mode_t mode, uint64_t *bytes)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return fail("cannot read %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) {
        int e = errno;
        close(in);
        return fail("cannot create %s: %s", dst, strerror(e));
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = fail("reading %s: %s", src, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = fail("writing %s: %s", dst, strerror(errno));
                goto done;
            }
            off += w;
        }
        *bytes += (uint64_t)n;
    }
    if (rc == 0 && fsync(out) != 0)
        rc = fail("writing %s: %s", dst, strerror(errno));
done:
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = fail("writing %s: %s", dst, strerror(errno));
    return rc;
}

/* Copies the tree 'src' (directories and regular files) into a new 'dst'. */
static int copy_tree(const char *src, const char *dst, uint64_t *files, uint64_t *bytes)
{
    if (mkdir(dst, 0700) != 0)
        return fail("cannot create %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (d == NULL)
        return fail("cannot read %s: %s", src, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *s = ax_asprintf("%s/%s", src, e->d_name), *t = ax_asprintf("%s/%s", dst, e->d_name);
        struct stat st;
        if (lstat(s, &st) != 0) {
            /* removed since readdir: a file the database snapshot no longer needs */
            if (errno != ENOENT)
                rc = fail("cannot read %s: %s", s, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = copy_tree(s, t, files, bytes);
        } else if (S_ISREG(st.st_mode)) {
            rc = copy_file(s, t, st.st_mode & 0777, bytes);
            *files += rc == 0;
        }
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The target must not exist yet or be an empty directory, so that nothing is overwritten. */
static int prepare_backup_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return fail("cannot create %s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (d == NULL)
        return fail("%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rc = fail("%s is not empty; back up into a new directory", dir);
    closedir(d);
    return rc;
}

/*
 * The database first, from one read snapshot (the server keeps writing
 * meanwhile), then the signing key and the media files.  Media files are
 * content-addressed and never change, so every file the snapshot refers to
 * is still there unless it was purged while the copy ran.
 */
static int cmd_backup(admin_t *a, int argc, char **argv)
{
    if (argc != 1)
        return admin_usage(stderr), 2;
    const char *dir = argv[0];
    if (prepare_backup_dir(dir) != 0)
        return 1;
    char err[512];
    uint64_t key_bytes = 0, media_files = 0, media_bytes = 0;
    char *dbdir = ax_asprintf("%s/db", dir), *dbfile = ax_asprintf("%s/db/data.mdb", dir);
    char *key_src = ax_asprintf("%s/signing.key", a->cfg->data_dir), *key_dst = ax_asprintf("%s/signing.key", dir);
    char *media_src = ax_asprintf("%s/media", a->cfg->data_dir), *media_dst = ax_asprintf("%s/media", dir);
    char *manifest = ax_asprintf("%s/axon-backup.json", dir);
    struct stat st;
    int rc = 0;
    if (mkdir(dbdir, 0700) != 0)
        rc = fail("cannot create %s: %s", dbdir, strerror(errno));
    else if (ax_db_copy(a->db, dbdir, err, sizeof(err)) != 0)
        rc = fail("%s", err);
    else if (fsync_path(dbfile, O_RDONLY) != 0)
        rc = fail("cannot sync %s: %s", dbfile, strerror(errno));
    if (rc == 0)
        rc = copy_file(key_src, key_dst, 0600, &key_bytes);
    if (rc == 0 && stat(media_src, &st) == 0 && S_ISDIR(st.st_mode))
        rc = copy_tree(media_src, media_dst, &media_files, &media_bytes);
    if (rc == 0) {
        json_t *m = json_pack("{s:s, s:s, s:i, s:I}", "server_name", a->cfg->server_name, "axon_version", AX_VERSION,
                              "schema_version", AX_SCHEMA_VERSION, "created_ts", (json_int_t)ax_now_ms());
        if (json_dump_file(m, manifest, JSON_INDENT(2)) != 0 || fsync_path(manifest, O_RDONLY) != 0)
            rc = fail("cannot write %s", manifest);
        json_decref(m);
    }
    if (rc == 0 && fsync_path(dir, O_RDONLY | O_DIRECTORY) != 0)
        rc = fail("cannot sync %s: %s", dir, strerror(errno));
    if (rc == 0) {
        stat(dbfile, &st);
        printf("backed up %s to %s: database %.1f MB, signing key, %" PRIu64 " media files (%.1f MB)\n",
               a->cfg->server_name, dir, (double)st.st_size / 1e6, media_files, (double)media_bytes / 1e6);
    }
    free(dbdir);
    free(dbfile);
    free(key_src);
    free(key_dst);
    free(media_src);
    free(media_dst);
    free(manifest);
    return rc;
}

/* ---- media ---- */

static void print_time(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

typedef struct st_media_list_t {
    admin_t *a;
    json_t *out; /* NULL: text */
} media_list_t;

static int media_list_cb(void *arg, const char *media_id, json_t *rec)
{
    media_list_t *l = arg;
    char *mxc = ax_asprintf("mxc://%s/%s", l->a->cfg->server_name, media_id);
    if (l->out != NULL) {
        json_t *row = json_deep_copy(rec);
        json_object_set_new(row, "content_uri", json_string(mxc));
        json_array_append_new(l->out, row);
        free(mxc);
        return 0;
    }
    char when[32];
    print_time((uint64_t)json_integer_value(json_object_get(rec, "created_ts")), when, sizeof(when));
    if (json_is_true(json_object_get(rec, "pending"))) {
        char until[32];
        print_time((uint64_t)json_integer_value(json_object_get(rec, "expires_ts")), until, sizeof(until));
        printf("%s  pending (created %s, expires %s)\n", mxc, when, until);
    } else {
        const char *name = json_string_value(json_object_get(rec, "filename"));
        printf("%s  %lld bytes  %s  %s%s%s\n", mxc, (long long)json_integer_value(json_object_get(rec, "size")),
               json_string_value(json_object_get(rec, "content_type")), when, name != NULL ? "  " : "",
               name != NULL ? name : "");
    }
    free(mxc);
    return 0;
}

typedef struct st_media_del_t {
    const char *key;
    const ax_media_store_t *store;
    uint8_t sha[AX_MEDIA_HASH_BYTES];
    uint64_t refs_left;
    bool removed;
} media_del_t;

static int media_delete_apply(ax_txn_t *txn, void *arg)
{
    media_del_t *d = arg;
    return ax_db_media_delete(txn, d->key, d->sha, &d->refs_left);
}

/* The second step, once the deletion is durable: the file goes if nothing refers to it any more. */
static int media_gc_apply(ax_txn_t *txn, void *arg)
{
    media_del_t *d = arg;
    return ax_media_gc_apply(txn, d->store, d->sha, &d->removed);
}

static int cmd_media(admin_t *a, int argc, char **argv)
{
    if (argc < 2)
        return admin_usage(stderr), 2;
    if (strcmp(argv[0], "list-user") == 0) {
        bool as_json = argc == 3 && strcmp(argv[2], "--json") == 0;
        if (argc > 3 || (argc == 3 && !as_json))
            return admin_usage(stderr), 2;
        char *uid = resolve_user(a, argv[1]);
        if (uid == NULL)
            return fail("'%s' is not a user of %s", argv[1], a->cfg->server_name);
        ax_txn_t *txn;
        if (ax_db_read_begin(a->db, &txn) != 0) {
            free(uid);
            return fail("cannot read the database");
        }
        media_list_t l = {a, as_json ? json_array() : NULL};
        int rc = ax_db_media_user_foreach(txn, uid, media_list_cb, &l);
        ax_db_read_end(txn);
        free(uid);
        if (l.out != NULL) {
            char *s = json_dumps(l.out, JSON_INDENT(2));
            puts(s);
            free(s);
            json_decref(l.out);
        }
        return rc == 0 ? 0 : fail("cannot list media: %s", ax_strerror(rc));
    }
    if (strcmp(argv[0], "delete") != 0 || argc != 2)
        return admin_usage(stderr), 2;
    /* mxc://server/id: our own media by ID, a cached remote one as "server/id" */
    const char *mxc = argv[1];
    if (strncmp(mxc, "mxc://", 6) != 0 || strchr(mxc + 6, '/') == NULL)
        return fail("'%s' is not an mxc:// URI", mxc);
    const char *slash = strchr(mxc + 6, '/');
    char *server = ax_strndup(mxc + 6, (size_t)(slash - mxc - 6));
    const char *id = slash + 1;
    bool ok = *id != '\0' && strlen(id) <= 255;
    for (const char *p = id; *p; ++p)
        ok = ok && (isalnum((unsigned char)*p) || *p == '_' || *p == '-');
    if (!ok || *server == '\0') {
        free(server);
        return fail("'%s' is not an mxc:// URI", mxc);
    }
    char *key = strcmp(server, a->cfg->server_name) == 0 ? ax_strdup(id) : ax_asprintf("%s/%s", server, id);
    free(server);
    char err[512];
    ax_media_store_t store;
    if (ax_media_store_open(&store, a->cfg->data_dir, false, err, sizeof(err)) != 0) {
        free(key);
        return fail("%s", err);
    }
    media_del_t d = {.key = key, .store = &store};
    int rc = run_write(a, media_delete_apply, &d);
    if (rc == AX_ENOTFOUND) {
        rc = fail("no such media %s", mxc);
    } else if (rc != 0) {
        rc = fail("cannot delete %s: %s", mxc, ax_strerror(rc));
    } else {
        if (d.refs_left == 0 && (rc = run_write(a, media_gc_apply, &d)) != 0)
            rc = fail("deleted %s, but its file could not be removed: %s", mxc, ax_strerror(rc));
        else if (d.removed)
            printf("deleted %s and its file\n", mxc);
        else
            printf("deleted %s%s\n", mxc,
                   d.refs_left == UINT64_MAX ? " (it had no content yet)" : " (other media IDs share its file)");
    }
    ax_media_store_dispose(&store);
    free(key);
    return rc;
}

/* ---- rotate-key ---- */

typedef struct st_old_key_op_t {
    const char *key_id;
    json_t *rec;
} old_key_op_t;

static int old_key_apply(ax_txn_t *txn, void *arg)
{
    old_key_op_t *o = arg;
    return ax_db_old_key_put(txn, o->key_id, o->rec);
}

static int cmd_rotate_key(admin_t *a, int argc, char **argv)
{
    AX_UNUSED(argv);
    if (argc != 0)
        return admin_usage(stderr), 2;
    char *path = ax_asprintf("%s/signing.key", a->cfg->data_dir);
    char err[512];
    ax_signing_key_t old, fresh;
    int rc = 0;
    if (access(path, F_OK) != 0 || ax_signing_key_load_or_create(path, &old, err, sizeof(err)) != 0) {
        rc = fail("cannot read the signing key %s", path);
        goto out;
    }
    /* 1. the old key becomes old_verify_keys, durably, before the file changes */
    char pk[AX_B64_LEN(crypto_sign_PUBLICKEYBYTES) + 1];
    ax_b64_encode(pk, old.public_key, sizeof(old.public_key), false);
    old_key_op_t op = {old.key_id, json_pack("{s:s, s:I}", "key", pk, "expired_ts", (json_int_t)ax_now_ms())};
    rc = run_write(a, old_key_apply, &op);
    json_decref(op.rec);
    if (rc != 0) {
        ax_signing_key_dispose(&old);
        rc = fail("cannot record the old key: %s", ax_strerror(rc));
        goto out;
    }
    /* 2. keep the old secret next to it (same 0600 file, a second name), then write the new key */
    char *keep = ax_asprintf("%s.%s.retired", path, old.key_id + 8);
    if (link(path, keep) != 0 && errno != EEXIST)
        fprintf(stderr, "axon admin: warning: cannot keep a copy of the old key as %s: %s\n", keep, strerror(errno));
    if (ax_signing_key_generate(path, &fresh, err, sizeof(err)) != 0) {
        rc = fail("%s", err);
    } else {
        printf("rotated %s -> %s (old key kept as %s); restart axon to sign with the new key\n", old.key_id,
               fresh.key_id, keep);
        ax_signing_key_dispose(&fresh);
    }
    free(keep);
    ax_signing_key_dispose(&old);
out:
    free(path);
    return rc;
}

/* ---- federation destinations ---- */

static void print_ts(const char *label, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return;
    time_t t = (time_t)(json_integer_value(v) / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf(" %s %s", label, when);
}

/* Every destination with backoff state or a queue: {server: row}, rows with the queue merged in. */
static int dest_row_cb(void *arg, const char *server, json_t *rec)
{
    json_t *row = json_deep_copy(rec);
    json_object_set_new(row, "destination", json_string(server));
    json_object_set_new(arg, server, row);
    return 0;
}

static int dest_queue_cb(void *arg, const char *server, const ax_fedq_state_t *st)
{
    json_t *row = json_object_get(arg, server);
    if (row == NULL)
        json_object_set_new(arg, server, row = json_pack("{s:s, s:i}", "destination", server, "failures", 0));
    json_object_set_new(row, "queued", json_integer((json_int_t)st->depth));
    json_object_set_new(row, "acknowledged_seq", json_integer((json_int_t)st->acked));
    if (st->txn_id[0] != '\0')
        json_object_set_new(row, "txn_in_flight", json_string(st->txn_id));
    return 0;
}

static void dest_print(const char *server, json_t *rec)
{
    json_int_t failures = json_integer_value(json_object_get(rec, "failures"));
    json_int_t retry_at = json_integer_value(json_object_get(rec, "retry_at_ms"));
    uint64_t now = ax_now_ms();
    printf("%-40s queued %lld failures %lld", server, (long long)json_integer_value(json_object_get(rec, "queued")),
           (long long)failures);
    if (failures > 0 && retry_at > (json_int_t)now)
        printf(" backing off %llus", (unsigned long long)(((uint64_t)retry_at - now + 999) / 1000));
    else if (failures > 0)
        printf(" retrying");
    print_ts("last-success", json_object_get(rec, "last_success_ts"));
    print_ts("last-failure", json_object_get(rec, "last_failure_ts"));
    const char *e = json_string_value(json_object_get(rec, "last_error"));
    if (failures > 0 && e != NULL && *e != '\0')
        printf(" error \"%s\"", e);
    printf("\n");
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct st_dest_reset_t {
    const char *server;
    bool found;
} dest_reset_t;

static int dest_reset_apply(ax_txn_t *txn, void *arg)
{
    dest_reset_t *d = arg;
    json_t *rec = NULL;
    ax_fedq_state_t st;
    int rc = ax_db_destination_get(txn, d->server, &rec);
    d->found = rc == 0 || ax_db_fedq_state(txn, d->server, &st) == 0;
    if (rc == AX_ENOTFOUND && d->found)
        rec = json_pack("{s:I}", "first_seen_ts", (json_int_t)ax_now_ms());
    else if (rc == AX_ENOTFOUND)
        return 0;
    else if (rc != 0)
        return rc;
    json_object_set_new(rec, "failures", json_integer(0));
    json_object_set_new(rec, "retry_at_ms", json_integer(0));
    /* the running server's sender sees it within a second and sends what waits at once */
    json_object_set_new(rec, "reset_ts", json_integer((json_int_t)ax_now_ms()));
    rc = ax_db_destination_put(txn, d->server, rec);
    json_decref(rec);
    return rc;
}

static int cmd_federation(admin_t *a, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "destinations") == 0) {
        bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
        if (argc > 2 || (argc == 2 && !as_json))
            return admin_usage(stderr), 2;
        ax_txn_t *txn;
        if (ax_db_read_begin(a->db, &txn) != 0)
            return fail("cannot read the database");
        json_t *rows = json_object();
        ax_db_destinations_foreach(txn, dest_row_cb, rows);
        ax_db_fedq_destinations_foreach(txn, dest_queue_cb, rows);
        ax_db_read_end(txn);
        /* in server name order (both tables are) */
        const char **names = ax_malloc((json_object_size(rows) + 1) * sizeof(char *));
        size_t n = 0;
        const char *name;
        json_t *row;
        json_object_foreach(rows, name, row)
        {
            if (json_object_get(row, "queued") == NULL)
                json_object_set_new(row, "queued", json_integer(0));
            names[n++] = name;
        }
        qsort(names, n, sizeof(char *), cmp_names);
        json_t *out = json_array();
        for (size_t i = 0; i < n; ++i) {
            if (as_json)
                json_array_append(out, json_object_get(rows, names[i]));
            else
                dest_print(names[i], json_object_get(rows, names[i]));
        }
        if (as_json) {
            char *text = json_dumps(out, JSON_INDENT(2));
            puts(text);
            free(text);
        }
        free(names);
        json_decref(out);
        json_decref(rows);
        return 0;
    }
    if (argc == 2 && strcmp(argv[0], "reset") == 0) {
        dest_reset_t d = {argv[1], false};
        int rc = run_write(a, dest_reset_apply, &d);
        if (rc != 0)
            return fail("cannot reset %s: %s", argv[1], ax_strerror(rc));
        if (!d.found)
            return fail("unknown destination %s", argv[1]);
        printf("reset %s: it will be retried at once\n", argv[1]);
        return 0;
    }
    return admin_usage(stderr), 2;
}

int ax_admin_main(int argc, char **argv)
{
    const char *config = NULL;
    int i = 0;
    while (i < argc && argv[i][0] == '-') {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            config = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            admin_usage(stdout);
            return 0;
        } else {
            admin_usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        admin_usage(stderr);
        return 2;
    }
    static const struct {
        const char *name;
        int (*fn)(admin_t *, int, char **);
    } cmds[] = {{"create-user", cmd_create_user},
                {"reset-password", cmd_reset_password},
                {"deactivate", cmd_deactivate},
                {"list-users", cmd_list_users},
                {"registration-token", cmd_registration_token},
                {"backup", cmd_backup},
                {"media", cmd_media},
                {"rotate-key", cmd_rotate_key},
                {"federation", cmd_federation}};
    int (*fn)(admin_t *, int, char **) = NULL;
    for (size_t k = 0; k < AX_ARRAY_SIZE(cmds); ++k)
        if (strcmp(argv[i], cmds[k].name) == 0)
            fn = cmds[k].fn;
    if (fn == NULL) {
        fprintf(stderr, "axon admin: unknown command '%s'\n", argv[i]);
        admin_usage(stderr);
        return 2;
    }

    if (config == NULL)
        config = getenv("AXON_CONFIG");
    if (config != NULL && *config == '\0')
        config = NULL;
    admin_t a = {0};
    char err[512];
    ax_log_setup(AX_LOG_WARN, AX_LOG_TEXT);
    if (ax_config_load(config, environ, &a.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon: %s\n", err);
        return 2;
    }
    char *dbdir = ax_asprintf("%s/db", a.cfg->data_dir);
    ax_db_options_t o = {.path = dbdir, .map_size = a.cfg->map_size, .sync = true};
    if (access(dbdir, F_OK) != 0) {
        fprintf(stderr, "axon admin: no database in %s (start the server once first): %s\n", a.cfg->data_dir,
                strerror(errno));
        free(dbdir);
        ax_config_free(a.cfg);
        return 2;
    }
    if (ax_db_open(&o, &a.db, err, sizeof(err)) != 0) {
        fprintf(stderr, "axon admin: %s\n", err);
        free(dbdir);
        ax_config_free(a.cfg);
        return 2;
    }
    a.writer = ax_writer_new(a.db);
    int rc = ax_writer_start(a.writer) == 0 ? fn(&a, argc - i - 1, argv + i + 1) : fail("cannot start the writer");
    ax_writer_stop(a.writer);
    ax_writer_free(a.writer);
    ax_db_close(a.db);
    free(dbdir);
    ax_config_free(a.cfg);
    return rc;
}
