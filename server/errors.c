/*
 * errors.c -- the Matrix error table (errcode string and usual HTTP status
 * per AX_M_* code, from AX_ERRCODES in server.h) and the mapping from
 * internal AX_E* codes to what a client should see.
 */
#include "server/server.h"

static const struct {
    const char *name;
    int status;
} table[] = {
#define X(name, code, status) {code, status},
    AX_ERRCODES(X)
#undef X
};

const char *ax_errcode_name(ax_errcode_t code)
{
    return (unsigned)code < AX_M__COUNT ? table[code].name : "M_UNKNOWN";
}

int ax_errcode_status(ax_errcode_t code)
{
    return (unsigned)code < AX_M__COUNT ? table[code].status : 500;
}

ax_errcode_t ax_errcode_from_ax(int ax_code)
{
    switch (ax_code) {
    case AX_ENOTFOUND:
        return AX_M_NOT_FOUND;
    case AX_EFORBIDDEN:
        return AX_M_FORBIDDEN;
    case AX_EINVAL:
        return AX_M_BAD_JSON;
    case AX_ETOOBIG:
        return AX_M_TOO_LARGE;
    default:
        return AX_M_INTERNAL;
    }
}
