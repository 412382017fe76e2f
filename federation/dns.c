/*
 * dns.c -- SRV lookups for server discovery on a thread of their own, with
 * Debian's c-ares.  h2o resolves host names (getaddrinfo on its own thread
 * pool) but has no SRV lookups; c-ares answers many queries at once from one
 * thread that polls its sockets, so a slow DNS server never holds the
 * federation loop.  Queries arrive as tasks and go back through their port.
 */
#include "federation/federation_internal.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DNS_TIMEOUT_MS 2000
#define DNS_TRIES      2

struct st_ax_dns_t {
    pthread_t tid;
    int wake_fd;
    pthread_mutex_t mutex;
    ax_dns_query_t *incoming; /* guarded by mutex */
    bool stopping, cancel;    /* guarded by mutex */
    ares_channel channel;     /* the DNS thread's */
    bool channel_ok;
    size_t active; /* queries c-ares holds (DNS thread) */
};

static void finish_query(ax_dns_query_t *q, int rc)
{
    q->super.result = rc;
    q->super._next = NULL;
    ax_port_post_chain(&q->super);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    AX_UNUSED(timeouts);
    ax_dns_query_t *q = arg;
    ax_dns_t *dns = q->_dns;
    dns->active--;
    if (status == ARES_ENODATA || status == ARES_ENOTFOUND)
        return finish_query(q, AX_ENOTFOUND);
    if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION)
        return finish_query(q, AX_ESHUTDOWN);
    if (status != ARES_SUCCESS) {
        ax_log(AX_LOG_DEBUG, "federation: SRV lookup of %s failed: %s", q->name, ares_strerror(status));
        return finish_query(q, AX_EIO);
    }
    struct ares_srv_reply *reply = NULL;
    int prc = ares_parse_srv_reply(abuf, alen, &reply);
    if (prc == ARES_ENODATA)
        return finish_query(q, AX_ENOTFOUND);
    if (prc != ARES_SUCCESS) {
        ax_log(AX_LOG_DEBUG, "federation: bad SRV answer for %s: %s", q->name, ares_strerror(prc));
        return finish_query(q, AX_EIO);
    }
    size_t n = 0;
    for (struct ares_srv_reply *r = reply; r != NULL; r = r->next)
        ++n;
    if (n > AX_DNS_MAX_RECORDS)
        n = AX_DNS_MAX_RECORDS;
    q->records = ax_calloc(n != 0 ? n : 1, sizeof(*q->records));
    q->n = 0;
    for (struct ares_srv_reply *r = reply; r != NULL && q->n < n; r = r->next) {
        ax_srv_record_t *rec = &q->records[q->n++];
        snprintf(rec->target, sizeof(rec->target), "%s", r->host != NULL ? r->host : "");
        rec->port = r->port;
        rec->priority = r->priority;
        rec->weight = r->weight;
    }
    ares_free_data(reply);
    finish_query(q, q->n != 0 ? 0 : AX_ENOTFOUND);
}

static void *dns_main(void *arg)
{
    ax_dns_t *dns = arg;
    for (;;) {
        pthread_mutex_lock(&dns->mutex);
        ax_dns_query_t *in = dns->incoming;
        dns->incoming = NULL;
        bool stopping = dns->stopping, cancel = dns->cancel;
        dns->cancel = false;
        pthread_mutex_unlock(&dns->mutex);

        while (in != NULL) {
            ax_dns_query_t *next = in->_next_in;
            in->_next_in = NULL;
            if (!dns->channel_ok || stopping) {
                finish_query(in, dns->channel_ok ? AX_ESHUTDOWN : AX_EIO);
            } else {
                dns->active++;
                ares_query(dns->channel, in->name, ns_c_in, ns_t_srv, on_answer, in);
            }
            in = next;
        }
        if (cancel && dns->channel_ok)
            ares_cancel(dns->channel); /* every active query answers ARES_ECANCELLED */
        if (stopping && dns->active == 0)
            break;

        struct pollfd pfd[ARES_GETSOCK_MAXNUM + 1];
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* c-ares' own bit macros shift a signed 1 into the sign bit: test the bits unsigned */
        unsigned bits = dns->channel_ok ? (unsigned)ares_getsock(dns->channel, socks, ARES_GETSOCK_MAXNUM) : 0;
        nfds_t n = 0;
        for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
            short ev =
                (short)((((bits >> i) & 1u) ? POLLIN : 0) | (((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u) ? POLLOUT : 0));
            if (ev == 0)
                continue;
            pfd[n].fd = socks[i];
            pfd[n].events = ev;
            pfd[n].revents = 0;
            ++n;
        }
        pfd[n].fd = dns->wake_fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        int timeout = -1;
        struct timeval tv, *tvp = dns->channel_ok && dns->active != 0 ? ares_timeout(dns->channel, NULL, &tv) : NULL;
        if (tvp != NULL)
            timeout = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
        int rc = poll(pfd, n + 1, timeout);
        if (rc < 0 && errno != EINTR) {
            ax_log(AX_LOG_ERROR, "federation DNS thread: poll: %s", strerror(errno));
            usleep(10000);
            continue;
        }
        if (pfd[n].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(dns->wake_fd, &v, sizeof(v));
            (void)r;
        }
        for (nfds_t i = 0; i < n; ++i) {
            if (pfd[i].revents == 0)
                continue;
            ares_socket_t rfd = (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD;
            ares_socket_t wfd = (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
            ares_process_fd(dns->channel, rfd, wfd);
        }
        if (dns->channel_ok)
            ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
    }
    return NULL;
}

static void wake(ax_dns_t *dns)
{
    uint64_t one = 1;
    ssize_t r = write(dns->wake_fd, &one, sizeof(one));
    (void)r;
}

ax_dns_t *ax_dns_new(void)
{
    ax_dns_t *dns = ax_calloc(1, sizeof(*dns));
    pthread_mutex_init(&dns->mutex, NULL);
    dns->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (dns->wake_fd < 0)
        ax_fatal("federation DNS: eventfd: %s", strerror(errno));
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc == ARES_SUCCESS) {
        struct ares_options opts;
        memset(&opts, 0, sizeof(opts));
        opts.timeout = DNS_TIMEOUT_MS;
        opts.tries = DNS_TRIES;
        rc = ares_init_options(&dns->channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    }
    dns->channel_ok = rc == ARES_SUCCESS;
    if (!dns->channel_ok)
        ax_log(AX_LOG_WARN, "federation: c-ares cannot start (%s); SRV records will not be used", ares_strerror(rc));
    if (pthread_create(&dns->tid, NULL, dns_main, dns) != 0)
        ax_fatal("cannot start the federation DNS thread");
    return dns;
}

void ax_dns_srv(ax_dns_t *dns, ax_dns_query_t *q)
{
    q->_dns = dns;
    pthread_mutex_lock(&dns->mutex);
    q->_next_in = dns->incoming;
    dns->incoming = q;
    pthread_mutex_unlock(&dns->mutex);
    wake(dns);
}

void ax_dns_cancel_all(ax_dns_t *dns)
{
    pthread_mutex_lock(&dns->mutex);
    dns->cancel = true;
    pthread_mutex_unlock(&dns->mutex);
    wake(dns);
}

void ax_dns_free(ax_dns_t *dns)
{
    if (dns == NULL)
        return;
    pthread_mutex_lock(&dns->mutex);
    dns->stopping = true;
    dns->cancel = true;
    pthread_mutex_unlock(&dns->mutex);
    wake(dns);
    pthread_join(dns->tid, NULL);
    if (dns->channel_ok)
        ares_destroy(dns->channel);
    ares_library_cleanup();
    close(dns->wake_fd);
    pthread_mutex_destroy(&dns->mutex);
    free(dns);
}
