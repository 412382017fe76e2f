/*
 * ids.c -- identifier grammar (spec appendices, "Identifier Grammar":
 * server names, user IDs, and the sigil + localpart + server form shared by
 * room IDs, aliases and v1 event IDs).
 */
#include "core/core.h"

#include <arpa/inet.h>
#include <string.h>

bool ax_localpart_valid(const char *lp)
{
    if (lp == NULL || *lp == '\0')
        return false;
    for (; *lp; ++lp) {
        char c = *lp;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '=' || c == '-' ||
              c == '/' || c == '+'))
            return false;
    }
    return true;
}

bool ax_server_name_valid(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 255)
        return false;
    const char *port = NULL;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close - s - 1 <= 0 || close - s - 1 >= 46)
            return false;
        char v6[46];
        memcpy(v6, s + 1, (size_t)(close - s - 1));
        v6[close - s - 1] = '\0';
        struct in6_addr a;
        if (inet_pton(AF_INET6, v6, &a) != 1)
            return false;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
    } else {
        const char *colon = strchr(s, ':');
        const char *end = colon ? colon : s + strlen(s);
        if (end == s)
            return false;
        for (const char *p = s; p < end; ++p)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
                  *p == '-'))
                return false;
        if (colon != NULL)
            port = colon + 1;
    }
    if (port != NULL) {
        size_t n = strlen(port);
        if (n == 0 || n > 5)
            return false;
        unsigned v = 0;
        for (const char *p = port; *p; ++p) {
            if (*p < '0' || *p > '9')
                return false;
            v = v * 10 + (unsigned)(*p - '0');
        }
        if (v == 0 || v > 65535)
            return false;
    }
    return true;
}

const char *ax_id_server(const char *id)
{
    if (id == NULL || id[0] == '\0')
        return NULL;
    const char *colon = strchr(id + 1, ':');
    return colon != NULL ? colon + 1 : NULL;
}

bool ax_user_id_valid(const char *user_id, bool historical)
{
    if (user_id == NULL || user_id[0] != '@' || strlen(user_id) > 255)
        return false;
    const char *colon = strchr(user_id, ':');
    if (colon == NULL || colon == user_id + 1)
        return false;
    for (const char *p = user_id + 1; p < colon; ++p) {
        char c = *p;
        bool ok = historical ? (c >= 0x21 && c <= 0x7e)
                             : ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '=' ||
                                c == '-' || c == '/' || c == '+');
        if (!ok)
            return false;
    }
    return ax_server_name_valid(colon + 1);
}
