/*
 * router.c -- matching method + path against the route table with a trie
 * of path segments, so the cost of a lookup grows with the depth of the
 * path, not with the number of endpoints.  Exports ax_router_new(),
 * ax_router_match() and ax_router_free().
 *
 * Templates are literal segments and {name} parameters.  Literal children
 * win over a parameter at the same depth; the matcher backtracks when a
 * literal branch dead-ends, so /rooms/{roomId}/state and /rooms/{roomId}/
 * state/{type} and a literal /rooms/xyz coexist.  Parameters match one
 * segment of the raw (percent-encoded) path, so an encoded '/' (%2F) inside
 * an event ID stays inside its parameter; only a final parameter may be
 * empty.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

typedef struct st_node_t node_t;
struct st_node_t {
    char *literal; /* NULL for the root */
    node_t **children;
    size_t nchildren;
    node_t *param;
    size_t *routes; /* indexes of the routes ending here */
    size_t nroutes;
};

struct st_ax_router_t {
    node_t *root;
    const ax_route_t *routes;
    size_t nroutes;
};

static node_t *node_new(const char *lit, size_t len)
{
    node_t *n = ax_calloc(1, sizeof(*n));
    if (lit != NULL)
        n->literal = ax_strndup(lit, len);
    return n;
}

static void node_free(node_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nchildren; ++i)
        node_free(n->children[i]);
    node_free(n->param);
    free(n->children);
    free(n->routes);
    free(n->literal);
    free(n);
}

static node_t *child_literal(node_t *n, const char *seg, size_t len, bool create)
{
    for (size_t i = 0; i < n->nchildren; ++i)
        if (strlen(n->children[i]->literal) == len && memcmp(n->children[i]->literal, seg, len) == 0)
            return n->children[i];
    if (!create)
        return NULL;
    n->children = ax_realloc(n->children, (n->nchildren + 1) * sizeof(*n->children));
    return n->children[n->nchildren++] = node_new(seg, len);
}

ax_router_t *ax_router_new(const ax_route_t *routes, size_t nroutes)
{
    ax_router_t *rt = ax_calloc(1, sizeof(*rt));
    rt->root = node_new(NULL, 0);
    rt->routes = routes;
    rt->nroutes = nroutes;
    for (size_t i = 0; i < nroutes; ++i) {
        const char *p = routes[i].path;
        if (p[0] != '/')
            ax_fatal("route %s does not start with /", p);
        node_t *n = rt->root;
        size_t nparams = 0;
        while (*p == '/') {
            const char *seg = ++p;
            while (*p != '\0' && *p != '/')
                ++p;
            size_t len = (size_t)(p - seg);
            if (len >= 2 && seg[0] == '{' && seg[len - 1] == '}') {
                if (++nparams > AX_ROUTE_MAX_PARAMS)
                    ax_fatal("route %s has too many parameters", routes[i].path);
                if (n->param == NULL)
                    n->param = node_new(NULL, 0);
                n = n->param;
            } else {
                n = child_literal(n, seg, len, true);
            }
        }
        for (size_t j = 0; j < n->nroutes; ++j)
            if (strcmp(routes[n->routes[j]].method, routes[i].method) == 0)
                ax_fatal("route %s %s is listed twice", routes[i].method, routes[i].path);
        n->routes = ax_realloc(n->routes, (n->nroutes + 1) * sizeof(*n->routes));
        n->routes[n->nroutes++] = i;
    }
    return rt;
}

void ax_router_free(ax_router_t *rt)
{
    if (rt == NULL)
        return;
    node_free(rt->root);
    free(rt);
}

typedef struct st_match_state_t {
    const char **pp;
    size_t *pl;
    size_t np;
} match_state_t;

/* Finds the node for path[pos..end); records parameters; backtracks. */
static const node_t *walk(const node_t *n, const char *path, size_t pos, size_t end, match_state_t *st)
{
    if (pos == end)
        return n->nroutes != 0 ? n : NULL;
    /* path[pos] == '/' */
    size_t seg = pos + 1, e = seg;
    while (e < end && path[e] != '/')
        ++e;
    size_t len = e - seg;
    for (size_t i = 0; i < n->nchildren; ++i) {
        const node_t *c = n->children[i];
        if (strlen(c->literal) == len && memcmp(c->literal, path + seg, len) == 0) {
            const node_t *found = walk(c, path, e, end, st);
            if (found != NULL)
                return found;
        }
    }
    /* a parameter is one non-empty segment, except that the last one may be
     * empty: PUT /state/{eventType}/ means the empty state key */
    if (n->param != NULL && (len != 0 || e == end) && st->np < AX_ROUTE_MAX_PARAMS) {
        size_t saved = st->np;
        st->pp[st->np] = path + seg;
        st->pl[st->np] = len;
        st->np++;
        const node_t *found = walk(n->param, path, e, end, st);
        if (found != NULL)
            return found;
        st->np = saved;
    }
    return NULL;
}

ax_match_t ax_router_match(const ax_router_t *rt, const char *method, size_t mlen, const char *path, size_t plen,
                           size_t *index, const char **param_ptr, size_t *param_len, size_t *nparams, char *allow,
                           size_t allow_cap)
{
    if (plen == 0 || path[0] != '/')
        return AX_MATCH_NO_PATH;
    match_state_t st = {param_ptr, param_len, 0};
    const node_t *n = walk(rt->root, path, 0, plen, &st);
    if (n == NULL)
        return AX_MATCH_NO_PATH;
    bool head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    for (size_t i = 0; i < n->nroutes; ++i) {
        const char *m = rt->routes[n->routes[i]].method;
        if ((strlen(m) == mlen && memcmp(m, method, mlen) == 0) || (head && strcmp(m, "GET") == 0)) {
            *index = n->routes[i];
            *nparams = st.np;
            return AX_MATCH_OK;
        }
    }
    size_t used = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < n->nroutes; ++i) {
        int w = snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "", rt->routes[n->routes[i]].method);
        if (w < 0 || (size_t)w >= allow_cap - used)
            break;
        used += (size_t)w;
    }
    return AX_MATCH_NO_METHOD;
}
