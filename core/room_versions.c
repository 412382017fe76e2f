/*
 * room_versions.c -- the rules that differ between room versions 1-12, as
 * flags looked up by version string.  Exports ax_room_version_get() and
 * ax_room_versions_supported[].
 *
 * Spec: "Room Versions" and rooms/v1 .. rooms/v12.  A version's row only
 * records what changed; the code that applies a rule tests its flag.
 */
#include "core/core.h"

#include <string.h>

/* clang-format off */
static const ax_room_version_t versions[] = {
    /* id    evid             sr  key alias strict limit knock restr keep-via kn-r int  v11-creator v11-redact 3pid origin v12-id v12-creators */
    {"1",  AX_EVENT_ID_V1, 1, 0,  1,    0,     0,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"2",  AX_EVENT_ID_V1, 2, 0,  1,    0,     0,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"3",  AX_EVENT_ID_V3, 2, 0,  1,    0,     0,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"4",  AX_EVENT_ID_V4, 2, 0,  1,    0,     0,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"5",  AX_EVENT_ID_V4, 2, 1,  1,    0,     0,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"6",  AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    0,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"7",  AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    0,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"8",  AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    1,    0,       0,   0,   0,          0,         0,   0,     0,     0},
    {"9",  AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    1,    1,       0,   0,   0,          0,         0,   0,     0,     0},
    {"10", AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    1,    1,       1,   1,   0,          0,         0,   0,     0,     0},
    {"11", AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    1,    1,       1,   1,   1,          1,         1,   1,     0,     0},
    {"12", AX_EVENT_ID_V4, 2, 1,  0,    1,     1,    1,    1,    1,       1,   1,   1,          1,         1,   1,     1,     1},
};
/* clang-format on */

const char *const ax_room_versions_supported[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", NULL};

const char *const ax_room_versions_creatable[] = {"10", "11", "12", NULL};

const ax_room_version_t *ax_room_version_get(const char *id)
{
    if (id == NULL)
        return NULL;
    for (size_t i = 0; i < AX_ARRAY_SIZE(versions); ++i)
        if (strcmp(versions[i].id, id) == 0)
            return &versions[i];
    return NULL;
}
