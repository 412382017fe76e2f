/*
 * auth.c -- X-Matrix request authentication (spec: Server-Server API,
 * "Request Authentication"): parsing the Authorization header, the signed
 * request object, signing outbound requests and checking inbound ones.
 *
 * ax_fed_auth_run() is the guard server/http.c applies to every route
 * flagged AX_ROUTE_FED: it checks the header, finds the origin's key (from
 * the database, or through the keyring while the request waits in a
 * continuation) and runs the handler only once the signature verified.
 */
#include "federation/federation.h"
#include "core/events.h"
#include "server/server.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Parsing (RFC 9110 11.4 credentials; fuzz-friendly: bounded by 'len', no NUL assumed) ---- */

static bool is_tchar(unsigned char c)
{
    /* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
     */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Stores 'n' bytes of a value into 'dst' (cap bytes); false when it does not fit or was already set. */
static bool store(char *dst, size_t cap, bool *seen, const char *val, size_t n)
{
    if (*seen || n >= cap)
        return false;
    memcpy(dst, val, n);
    dst[n] = '\0';
    *seen = true;
    return true;
}

int ax_xmatrix_parse(const char *v, size_t len, ax_xmatrix_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len && is_ows(v[i]))
        ++i;
    static const char scheme[] = "X-Matrix";
    size_t slen = sizeof(scheme) - 1;
    if (len - i < slen + 1 || strncasecmp(v + i, scheme, slen) != 0 || v[i + slen] != ' ')
        return AX_EINVAL;
    i += slen;
    bool seen_origin = false, seen_dest = false, seen_key = false, seen_sig = false;
    char val[512];
    for (;;) {
        /* list separators: OWS "," OWS, empty elements allowed */
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            ++i;
        if (i == len)
            break;
        size_t name = i;
        while (i < len && is_tchar((unsigned char)v[i]))
            ++i;
        size_t nlen = i - name;
        if (nlen == 0)
            return AX_EINVAL;
        while (i < len && is_ows(v[i])) /* BWS */
            ++i;
        if (i == len || v[i] != '=')
            return AX_EINVAL;
        ++i;
        while (i < len && is_ows(v[i]))
            ++i;
        size_t vlen = 0;
        if (i < len && v[i] == '"') {
            /* quoted-string: qdtext / quoted-pair */
            ++i;
            bool closed = false;
            while (i < len) {
                unsigned char c = (unsigned char)v[i];
                if (c == '"') {
                    closed = true;
                    ++i;
                    break;
                }
                if (c == '\\') {
                    if (i + 1 == len)
                        return AX_EINVAL;
                    c = (unsigned char)v[i + 1];
                    i += 2;
                } else {
                    ++i;
                }
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                    return AX_EINVAL;
                if (vlen == sizeof(val))
                    return AX_EINVAL;
                val[vlen++] = (char)c;
            }
            if (!closed)
                return AX_EINVAL;
        } else {
            /* a token, with colons allowed for older senders' unquoted server names */
            while (i < len && (is_tchar((unsigned char)v[i]) || v[i] == ':')) {
                if (vlen == sizeof(val))
                    return AX_EINVAL;
                val[vlen++] = v[i++];
            }
            if (vlen == 0)
                return AX_EINVAL;
        }
        while (i < len && is_ows(v[i]))
            ++i;
        if (i < len && v[i] != ',')
            return AX_EINVAL;
        const char *n = v + name;
        bool ok = true;
        if (nlen == 6 && strncasecmp(n, "origin", 6) == 0)
            ok = store(out->origin, sizeof(out->origin), &seen_origin, val, vlen);
        else if (nlen == 11 && strncasecmp(n, "destination", 11) == 0)
            ok = store(out->destination, sizeof(out->destination), &seen_dest, val, vlen);
        else if (nlen == 3 && strncasecmp(n, "key", 3) == 0)
            ok = store(out->key, sizeof(out->key), &seen_key, val, vlen);
        else if (nlen == 3 && strncasecmp(n, "sig", 3) == 0)
            ok = store(out->sig, sizeof(out->sig), &seen_sig, val, vlen);
        if (!ok)
            return AX_EINVAL;
    }
    if (out->origin[0] == '\0' || out->key[0] == '\0' || out->sig[0] == '\0')
        return AX_EINVAL;
    return 0;
}

/* ---- Signing and verifying ---- */

json_t *ax_xmatrix_request_json(const char *method, const char *uri, const char *origin, const char *destination,
                                const json_t *content)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s}", "method", method, "uri", uri, "origin", origin, "destination", destination);
    if (j != NULL && content != NULL)
        json_object_set(j, "content", (json_t *)content);
    return j;
}

/* Appends 's' as a quoted-string (escaping '"' and '\', which server names and key IDs never hold). */
static void put_quoted(ax_buf_t *out, const char *s)
{
    ax_buf_putc(out, '"');
    for (; *s != '\0'; ++s) {
        if (*s == '"' || *s == '\\')
            ax_buf_putc(out, '\\');
        ax_buf_putc(out, *s);
    }
    ax_buf_putc(out, '"');
}

int ax_xmatrix_sign(ax_buf_t *out, const char *method, const char *uri, const char *origin, const char *destination,
                    const json_t *content, const ax_signing_key_t *key)
{
    json_t *j = ax_xmatrix_request_json(method, uri, origin, destination, content);
    int rc = j != NULL ? ax_sign_json(j, origin, key) : AX_EINVAL;
    const char *sig =
        json_string_value(json_object_get(json_object_get(json_object_get(j, "signatures"), origin), key->key_id));
    if (rc == 0 && sig != NULL) {
        /* the compatible form: one space after X-Matrix, lower-case names, no spaces around commas */
        ax_buf_puts(out, "X-Matrix origin=");
        put_quoted(out, origin);
        ax_buf_puts(out, ",destination=");
        put_quoted(out, destination);
        ax_buf_puts(out, ",key=");
        put_quoted(out, key->key_id);
        ax_buf_puts(out, ",sig=");
        put_quoted(out, sig);
    } else if (rc == 0) {
        rc = AX_EINVAL;
    }
    json_decref(j);
    return rc;
}

int ax_xmatrix_verify(const ax_xmatrix_t *x, const char *method, const char *uri, const char *our_name,
                      const json_t *content, const uint8_t public_key[crypto_sign_PUBLICKEYBYTES])
{
    const char *dest = x->destination[0] != '\0' ? x->destination : our_name;
    json_t *j = ax_xmatrix_request_json(method, uri, x->origin, dest, content);
    if (j == NULL)
        return AX_EBADSIG;
    json_object_set_new(j, "signatures", json_pack("{s:{s:s}}", x->origin, x->key, x->sig));
    int rc = ax_verify_json(j, x->origin, x->key, public_key);
    json_decref(j);
    return rc == 0 ? 0 : AX_EBADSIG;
}

/* ---- The inbound guard ---- */

typedef struct st_auth_state_t {
    ax_xmatrix_t x;
    json_t *content; /* held by the request */
} auth_state_t;

static int unauthorized(ax_req_t *r, const char *origin, const char *why)
{
    ax_log(AX_LOG_INFO, "federation: rejected %s %s from %s: %s", ax_req_method(r), r->route->path,
           origin != NULL && origin[0] != '\0' ? origin : "an unauthenticated peer", why);
    return ax_reply_error(r, AX_M_UNAUTHORIZED, why);
}

/* Verifies with 'pk' and runs the handler, or replies 401. */
static int verify_and_run(ax_req_t *r, auth_state_t *st, const uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
    if (ax_xmatrix_verify(&st->x, ax_req_method(r), ax_req_uri(r), r->srv->cfg->server_name, st->content, pk) != 0)
        return unauthorized(r, st->x.origin, "Invalid X-Matrix signature");
    r->auth.server = ax_pstrdup(r, st->x.origin);
    return r->route->handler(r);
}

static void key_found(ax_req_t *r, ax_task_t *task)
{
    ax_key_lookup_t *lk = (ax_key_lookup_t *)task;
    if (r != NULL) {
        auth_state_t *st = r->route_data;
        r->route_data = NULL;
        if (task->result != 0 || lk->want[0].result != 0)
            unauthorized(r, st->x.origin,
                         lk->want[0].result == AX_EUNREACHABLE || lk->want[0].result == AX_ESHUTDOWN
                             ? "Could not fetch the origin's signing key"
                             : "Unknown or expired signing key");
        else
            verify_and_run(r, st, lk->want[0].public_key);
    }
    free(lk);
}

int ax_fed_auth_run(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    if (!srv->cfg->federation_enabled || srv->fed == NULL)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Federation is disabled on this server");
    auth_state_t *st = ax_palloc(r, sizeof(*st));
    memset(st, 0, sizeof(*st));
    /* a request may carry one X-Matrix header per signing key: the first one that parses is used */
    bool found = false;
    for (size_t i = 0; !found; ++i) {
        size_t len;
        const char *h = ax_req_header_n(r, "authorization", i, &len);
        if (h == NULL)
            break;
        found = ax_xmatrix_parse(h, len, &st->x) == 0;
    }
    if (!found)
        return unauthorized(r, NULL, "Missing or malformed X-Matrix Authorization header");
    if (st->x.destination[0] != '\0' && strcmp(st->x.destination, srv->cfg->server_name) != 0)
        return unauthorized(r, st->x.origin, "The request is meant for another server");
    if (!ax_id_is_valid_server_name(st->x.origin) || strcmp(st->x.origin, srv->cfg->server_name) == 0)
        return unauthorized(r, st->x.origin, "Invalid origin");
    if (strncmp(st->x.key, "ed25519:", 8) != 0)
        return unauthorized(r, st->x.origin, "Unsupported key algorithm");

    const char *base;
    size_t len;
    ax_req_body(r, &base, &len);
    if (len != 0) {
        json_error_t err;
        st->content = ax_req_hold_json(r, json_loadb(base, len, JSON_REJECT_DUPLICATES, &err));
        if (st->content == NULL)
            return ax_reply_error(r, AX_M_NOT_JSON, "Content not JSON");
    }

    /* request signatures need a key valid now, never one of old_verify_keys */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint64_t now = ax_now_ms();
    if (ax_keyring_cached(srv->db, st->x.origin, st->x.key, now, false, pk) == 0)
        return verify_and_run(r, st, pk);
    ax_key_lookup_t *lk = ax_key_lookup_new(1);
    if (ax_key_want_set(lk, 0, st->x.origin, st->x.key, now, false) != 0) {
        free(lk);
        return unauthorized(r, st->x.origin, "Invalid key ID");
    }
    r->route_data = st;
    ax_req_bind_task(r, &lk->super, key_found);
    ax_keyring_lookup(srv->fed, lk);
    return 0;
}
