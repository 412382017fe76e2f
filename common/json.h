/*
 * json.h -- JSON text out of jansson values: compact, fast, appended to an
 * ax_buf_t.  Use it rather than json_dump*() for anything on a hot path.
 */
#ifndef AX_JSON_H
#define AX_JSON_H

#include <jansson.h>

#include "common/common.h"

/** Deepest nesting written: what jansson parses, so stored data is never deeper. */
#define AX_JSON_MAX_DEPTH 2048

/**
 * Appends 'v' (borrowed, any JSON value) to 'out' as compact JSON: what
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) gives (object members in
 * their order, raw UTF-8, reals as jansson prints them), save that control
 * characters are escaped with lower-case hex.  No allocation but the
 * buffer's own growth.
 *
 * @return 0, or AX_EINVAL ('v' NULL, nesting deeper than AX_JSON_MAX_DEPTH);
 *         'out' is then as it was.
 */
int ax_json_encode(const json_t *v, ax_buf_t *out);

/** Appends the JSON string of s[0..len) (valid UTF-8): quotes, the shortest escapes, raw UTF-8. */
void ax_json_put_string(const char *s, size_t len, ax_buf_t *out);

/** Appends 'v' in decimal. */
void ax_json_put_integer(json_int_t v, ax_buf_t *out);

#endif
