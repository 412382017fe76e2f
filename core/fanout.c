/*
 * fanout.c -- which servers must receive an event (DESIGN.md "Events and
 * rooms": "... persist, notify, push rules, federation fan-out"), queued for
 * them in the transaction that stores it (storage/fedqueue.c), so an event
 * acknowledged to a local client is never lost for a remote one.
 *
 * Exports ax_room_fanout().  Each server sends its own events: events from
 * other servers are not fanned out again, except the ones a resident server
 * must pass on for the server that asked it to (send_join, send_leave,
 * send_knock), with that server left out.
 */
#include "core/rooms.h"
#include "core/events.h"

#include <stdlib.h>
#include <string.h>

typedef struct st_dests_t {
    char **names;
    size_t n, cap;
} dests_t;

static int add_dest(void *arg, const char *server)
{
    dests_t *d = arg;
    for (size_t i = 0; i < d->n; ++i)
        if (strcmp(d->names[i], server) == 0)
            return 0;
    if (d->n == d->cap)
        d->names = ax_realloc(d->names, (d->cap = d->cap ? d->cap * 2 : 8) * sizeof(char *));
    d->names[d->n++] = ax_strdup(server);
    return 0;
}

int ax_room_fanout(ax_txn_t *txn, const char *room_id, const char *event_id, const char *our_server_name,
                   const char *on_behalf_of)
{
    json_t *room = NULL, *pdu = NULL;
    int rc = ax_db_room_get(txn, room_id, &room);
    if (rc != 0)
        return rc;
    /* m.federate false: the room never leaves this server */
    bool federate = !json_is_false(json_object_get(room, "federate"));
    json_decref(room);
    if (!federate)
        return 0;
    if ((rc = ax_db_event_get(txn, event_id, &pdu, NULL)) != 0)
        return rc;
    rc = ax_room_fanout_pdu(txn, room_id, event_id, pdu, our_server_name, on_behalf_of);
    json_decref(pdu);
    return rc;
}

int ax_room_fanout_pdu(ax_txn_t *txn, const char *room_id, const char *event_id, const json_t *pdu,
                       const char *our_server_name, const char *on_behalf_of)
{
    dests_t d = {NULL, 0, 0};
    /* every server with a joined member once the event is in: a local join reaches the servers
     * already there, a local leave the servers that stay */
    int rc = ax_db_room_servers_foreach(txn, room_id, our_server_name, add_dest, &d);
    if (rc >= 0 && ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.member")) {
        /* a remote user kicked or banned, their invite withdrawn or their knock refused: their server
         * may have no member left in the room but must hear of it (spec: "Leaving Rooms (Rejecting
         * Invites)"; knocks are retracted the same way).  Invites reach the invitee's server through
         * /invite, not through transactions, and a joining server through send_join. */
        const char *target = json_string_value(json_object_get(pdu, "state_key"));
        const char *membership = json_string_value(json_object_get(json_object_get(pdu, "content"), "membership"));
        const char *server = target != NULL ? ax_id_domain(target) : NULL;
        if (server != NULL && (ax_streq(membership, "leave") || ax_streq(membership, "ban")) &&
            !ax_streq(server, our_server_name))
            add_dest(&d, server);
    }
    for (size_t i = 0; i < d.n; ++i) {
        if (rc >= 0 && !ax_streq(d.names[i], on_behalf_of)) {
            if (ax_id_is_valid_server_name(d.names[i]))
                rc = ax_db_fedq_push_pdu(txn, d.names[i], room_id, event_id);
            else
                ax_log(AX_LOG_WARN, "federation: not sending %s to '%s': not a server name", event_id, d.names[i]);
        }
        free(d.names[i]);
    }
    free(d.names);
    return rc < 0 ? rc : 0;
}
