/*
 * test_config_config.c -- the config file, AXON_* overrides, validation
 * messages, the embedded default and the generated sample.
 */
#include "testutil.h"

#include "config/config.h"

static char *dir;

static char *write_file(const char *name, const char *text)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* Loads 'text' as a config file with 'env'; returns the config or NULL with 'err'. */
static ax_config_t *load_text(const char *text, char *const *env, char *err, size_t errlen)
{
    char *path = write_file("axon.conf", text);
    ax_config_t *cfg = NULL;
    ax_config_load(path, env, &cfg, err, errlen);
    free(path);
    return cfg;
}

static char *datadir_line(void)
{
    char *l = NULL;
    assert_true(asprintf(&l, "data_dir = %s/data\n", dir) > 0);
    return l;
}

static void test_file_values_and_defaults(void **state)
{
    (void)state;
    char *dd = datadir_line();
    char *text = NULL;
    assert_true(asprintf(&text,
                         "# comment\nserver_name = example.org\n%slisten = 0.0.0.0:8008, [::]:8009\n"
                         "max_request_size = 10M\nallow_registration = yes\nlog_level = debug\n"
                         "trusted_key_servers = \"matrix.org, example.com\"\nthreads = 3\n",
                         dd) > 0);
    char err[512];
    ax_config_t *cfg = load_text(text, NULL, err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->server_name, "example.org");
    assert_int_equal(cfg->listen.count, 2);
    assert_string_equal(cfg->listen.items[0].host, "0.0.0.0");
    assert_int_equal(cfg->listen.items[0].port, 8008);
    assert_string_equal(cfg->listen.items[1].host, "::");
    assert_int_equal(cfg->listen.items[1].port, 8009);
    assert_int_equal(cfg->max_request_size, 10 << 20);
    assert_int_equal(cfg->max_upload_size, 50 << 20);
    assert_true(cfg->allow_registration);
    assert_int_equal(cfg->log_level, AX_LOG_DEBUG);
    assert_int_equal(cfg->trusted_key_servers.count, 2);
    assert_string_equal(cfg->trusted_key_servers.items[1], "example.com");
    assert_int_equal(cfg->threads, 3);
    assert_true(cfg->sync);
    assert_true(cfg->federation_verify_tls);
    assert_false(cfg->outbound_allow_private);
    assert_string_equal(cfg->default_room_version, "12");
    assert_false(ax_config_is_loopback_only(cfg));
    ax_config_free(cfg);
    free(text);
    free(dd);
}

static void test_env_overrides(void **state)
{
    (void)state;
    char *dd = datadir_line();
    char *text = NULL;
    assert_true(asprintf(&text, "server_name = example.org\n%sallow_registration = false\n", dd) > 0);
    char *env[] = {"AXON_SERVER_NAME=other.example:8448",
                   "AXON_ALLOW_REGISTRATION=true",
                   "AXON_LISTEN=127.0.0.1:9001",
                   "AXON_MAX_REQUEST_SIZE=2048",
                   "AXON_MAX_UPLOAD_SIZE=1M",
                   "AXON_OUTBOUND_ALLOW_PRIVATE=on",
                   "AXON_UNKNOWN_THING=1",
                   "PATH=/bin",
                   NULL};
    char err[512];
    ax_config_t *cfg = load_text(text, env, err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->server_name, "other.example:8448");
    assert_true(cfg->allow_registration);
    assert_int_equal(cfg->listen.count, 1);
    assert_int_equal(cfg->listen.items[0].port, 9001);
    assert_int_equal(cfg->max_request_size, 2048);
    assert_int_equal(cfg->max_upload_size, 1 << 20);
    assert_true(cfg->outbound_allow_private);
    assert_true(ax_config_is_loopback_only(cfg));
    ax_config_free(cfg);
    free(text);
    free(dd);
}

/* Each bad config fails with a message naming the key. */
static void test_errors_name_the_key(void **state)
{
    (void)state;
    char *dd = datadir_line();
    struct {
        const char *text;
        const char *env;
        const char *expect;
    } cases[] = {
        {"bogus_key = 1\n", NULL, "unknown key 'bogus_key'"},
        {"threads = many\n", NULL, "threads: expected an integer"},
        {"threads = 9999\n", NULL, "threads: expected an integer"},
        {"allow_registration = perhaps\n", NULL, "allow_registration: expected true or false"},
        {"max_request_size = 12Q\n", NULL, "max_request_size: expected a size"},
        {"listen = 8008\n", NULL, "listen: expected addr:port"},
        {"listen = 1.2.3.4:99999\n", NULL, "listen: expected addr:port"},
        {"log_level = loud\n", NULL, "log_level: expected one of error|warn|info|debug"},
        {"tls_listen = 127.0.0.1:8448\n", NULL, "tls_listen: needs both tls_certificate and tls_private_key"},
        {"tls_certificate = /nonexistent/cert.pem\ntls_private_key = /nonexistent/key.pem\n", NULL,
         "tls_certificate: cannot read '/nonexistent/cert.pem'"},
        {"default_room_version = 9\n", NULL, "default_room_version: '9' is not one of"},
        {"well_known_client = matrix.example.org\n", NULL, "well_known_client"},
        {"registration_token = has spaces\n", NULL, "registration_token"},
        {"trusted_proxies = nginx\n", NULL, "trusted_proxies: 'nginx' is not an IP address"},
        {"[server]\nname = x\n", NULL, "unknown key 'name' in section [server]"},
        {"", "AXON_THREADS=lots", "AXON_THREADS: threads: expected an integer"},
        {"this line has no equals sign\n", NULL, "syntax error"},
        {"turn_uris = stun:stun.example.org\nturn_shared_secret = s\n", NULL,
         "turn_uris: 'stun:stun.example.org' is not a turn: or turns: URI"},
        {"turn_uris = turn:t.example.org\n", NULL, "turn_uris: set turn_shared_secret"},
        {"turn_shared_secret = s\n", NULL, "turn_shared_secret: set turn_uris too"},
        {"turn_uris = turn:t.example.org\nturn_username = u\n", NULL,
         "turn_username: set turn_username and turn_password together"},
        {"turn_uris = turn:t.example.org\nturn_password = p\n", NULL,
         "turn_password: set turn_username and turn_password together"},
        {"turn_uris = turn:t.example.org\nturn_shared_secret = s\nturn_username = u\nturn_password = p\n", NULL,
         "turn_shared_secret: set it or turn_username/turn_password, not both"},
        {"turn_user_lifetime = 1y\n", NULL, "turn_user_lifetime: expected a duration"},
        {"turn_user_lifetime = 59\n", NULL, "turn_user_lifetime: expected a duration"},
        {"turn_user_lifetime = h\n", NULL, "turn_user_lifetime: expected a duration"},
        {"turn_user_lifetime = -1h\n", NULL, "turn_user_lifetime: expected a duration"},
        {"turn_user_lifetime = 99999999999d\n", NULL, "turn_user_lifetime: expected a duration"},
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(cases); ++i) {
        char *text = NULL;
        assert_true(asprintf(&text, "server_name = example.org\n%s%s", dd, cases[i].text) > 0);
        char *env[] = {(char *)cases[i].env, NULL};
        char err[512] = "";
        ax_config_t *cfg = load_text(text, env, err, sizeof(err));
        if (cfg != NULL || strstr(err, cases[i].expect) == NULL)
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].expect, err);
        free(text);
    }
    free(dd);
}

/* TURN: no server by default; durations with units; either credential style. */
static void test_turn(void **state)
{
    (void)state;
    char *dd = datadir_line();
    char err[512];
    char *text = NULL;
    assert_true(asprintf(&text, "server_name = example.org\n%s", dd) > 0);
    ax_config_t *cfg = load_text(text, NULL, err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(cfg->turn_uris.count, 0);
    assert_null(cfg->turn_shared_secret);
    assert_int_equal(cfg->turn_user_lifetime, 3600);
    ax_config_free(cfg);
    free(text);

    static const struct {
        const char *lifetime;
        unsigned seconds;
    } durations[] = {{"90s", 90}, {"30m", 1800}, {"1h", 3600}, {"2d", 172800}, {"7200", 7200}, {"\"12h\"", 43200}};
    for (size_t i = 0; i < AX_ARRAY_SIZE(durations); ++i) {
        assert_true(asprintf(&text,
                             "server_name = example.org\n%sturn_uris = turn:t.example.org:3478?transport=udp, "
                             "turns:t.example.org:443?transport=tcp\nturn_shared_secret = s3cret\n"
                             "turn_user_lifetime = %s\n",
                             dd, durations[i].lifetime) > 0);
        cfg = load_text(text, NULL, err, sizeof(err));
        if (cfg == NULL)
            fail_msg("%s: %s", durations[i].lifetime, err);
        assert_int_equal(cfg->turn_user_lifetime, durations[i].seconds);
        assert_int_equal(cfg->turn_uris.count, 2);
        assert_string_equal(cfg->turn_uris.items[1], "turns:t.example.org:443?transport=tcp");
        assert_string_equal(cfg->turn_shared_secret, "s3cret");
        ax_config_free(cfg);
        free(text);
    }

    assert_true(asprintf(&text, "server_name = example.org\n%s", dd) > 0);
    char *env[] = {"AXON_TURN_URIS=turn:t.example.org", "AXON_TURN_USERNAME=fixed", "AXON_TURN_PASSWORD=pw", NULL};
    cfg = load_text(text, env, err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->turn_username, "fixed");
    assert_string_equal(cfg->turn_password, "pw");
    assert_null(cfg->turn_shared_secret);
    ax_config_free(cfg);
    free(text);
    free(dd);
}

static void test_missing_server_name_and_bad_data_dir(void **state)
{
    (void)state;
    char err[512];
    char *dd = datadir_line();
    ax_config_t *cfg = load_text(dd, NULL, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "server_name: missing"));
    free(dd);

    cfg = load_text("server_name = x.org\ndata_dir = /proc/forbidden/data\n", NULL, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "data_dir"));

    char *notdir = write_file("plainfile", "x");
    char *text = NULL;
    assert_true(asprintf(&text, "server_name = x.org\ndata_dir = %s\n", notdir) > 0);
    cfg = load_text(text, NULL, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "is not a directory"));
    free(text);
    free(notdir);

    cfg = load_text("server_name = bad name!\n", NULL, err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "server_name: 'bad name!' is not a valid server name"));

    assert_int_equal(ax_config_load("/nonexistent/axon.conf", NULL, &cfg, err, sizeof(err)), AX_EINVAL);
    assert_non_null(strstr(err, "cannot read '/nonexistent/axon.conf'"));
}

static void test_embedded_default(void **state)
{
    (void)state;
    char err[512];
    ax_config_t *cfg;
    /* run from the temp dir so ./axon-data is creatable */
    char *cwd = getcwd(NULL, 0);
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(ax_config_load(NULL, NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->server_name, "localhost:8008");
    assert_string_equal(cfg->data_dir, "./axon-data");
    assert_int_equal(cfg->listen.count, 1);
    assert_string_equal(cfg->listen.items[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen.items[0].port, 8008);
    assert_true(cfg->allow_registration); /* loopback only */
    ax_config_free(cfg);

    /* bound beyond loopback: registration stays off unless asked for */
    char *env1[] = {"AXON_LISTEN=0.0.0.0:8008", NULL};
    assert_int_equal(ax_config_load(NULL, env1, &cfg, err, sizeof(err)), 0);
    assert_false(cfg->allow_registration);
    ax_config_free(cfg);
    char *env2[] = {"AXON_LISTEN=0.0.0.0:8008", "AXON_ALLOW_REGISTRATION=true", NULL};
    assert_int_equal(ax_config_load(NULL, env2, &cfg, err, sizeof(err)), 0);
    assert_true(cfg->allow_registration);
    ax_config_free(cfg);
    char *env3[] = {"AXON_ALLOW_REGISTRATION=false", NULL};
    assert_int_equal(ax_config_load(NULL, env3, &cfg, err, sizeof(err)), 0);
    assert_false(cfg->allow_registration);
    ax_config_free(cfg);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);
}

static void test_sample_parses(void **state)
{
    (void)state;
    /* the generated sample is itself a valid config */
    char *path = NULL;
    assert_true(asprintf(&path, "%s/sample.conf", dir) > 0);
    FILE *fp = fopen(path, "w");
    ax_config_write_sample(fp);
    fclose(fp);
    char *dd = NULL;
    assert_true(asprintf(&dd, "AXON_DATA_DIR=%s/data", dir) > 0);
    char *env[] = {dd, NULL};
    char err[512];
    ax_config_t *cfg;
    assert_int_equal(ax_config_load(path, env, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->server_name, "example.org");
    ax_config_free(cfg);
    free(dd);
    free(path);
}

static void test_parse_helpers(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(ax_parse_size("50M", &v), 0);
    assert_int_equal(v, 50ULL << 20);
    assert_int_equal(ax_parse_size("50MiB", &v), 0);
    assert_int_equal(v, 50ULL << 20);
    assert_int_equal(ax_parse_size("1g", &v), 0);
    assert_int_equal(v, 1ULL << 30);
    assert_int_equal(ax_parse_size("123", &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(ax_parse_size("12MB", &v), 0);
    assert_int_equal(ax_parse_size("M", &v), AX_EINVAL);
    assert_int_equal(ax_parse_size("-1", &v), AX_EINVAL);
    assert_int_equal(ax_parse_size("99999999999999999999", &v), AX_EINVAL);
    assert_int_equal(ax_parse_size("17179869184T", &v), AX_EINVAL);
    assert_int_equal(ax_parse_u64("18446744073709551615", &v), 0);
    assert_int_equal(ax_parse_u64("18446744073709551616", &v), AX_EINVAL);
    ax_listen_t l;
    assert_int_equal(ax_config_parse_listen("[::1]:8448", &l), 0);
    assert_string_equal(l.host, "::1");
    free(l.host);
    assert_int_equal(ax_config_parse_listen("::1:8448", &l), AX_EINVAL);
    assert_int_equal(ax_config_parse_listen("host:0", &l), AX_EINVAL);
    assert_int_equal(ax_config_parse_listen(":80", &l), AX_EINVAL);
}

int main(void)
{
    ax_log_setup(AX_LOG_ERROR, AX_LOG_TEXT);
    dir = test_mkdtemp();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_values_and_defaults),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_errors_name_the_key),
        cmocka_unit_test(test_turn),
        cmocka_unit_test(test_missing_server_name_and_bad_data_dir),
        cmocka_unit_test(test_embedded_default),
        cmocka_unit_test(test_sample_parses),
        cmocka_unit_test(test_parse_helpers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_rm_rf(dir);
    free(dir);
    return rc;
}
