/*
 * testutil.h -- shared helpers for the cmocka unit tests: cmocka's include
 * prologue, temporary directories, and loading the spec vectors.
 */
#ifndef AX_TESTUTIL_H
#define AX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <unistd.h>

/* Makes a fresh directory under $TMPDIR; the caller frees the path and removes it with rm_rf. */
static inline char *test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = NULL;
    if (asprintf(&tmpl, "%s/axon-unit-XXXXXX", base ? base : "/tmp") < 0 || mkdtemp(tmpl) == NULL)
        abort();
    return tmpl;
}

static inline void test_rm_rf(const char *path)
{
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", path) < 0)
        abort();
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
    free(cmd);
}

/* The spec's vectors, copied into the project (tests/vectors/spec-vectors.json). */
static inline json_t *test_load_vectors(void)
{
    const char *path = getenv("AX_VECTORS");
    json_error_t err;
    json_t *v = json_load_file(path ? path : "tests/vectors/spec-vectors.json", 0, &err);
    if (v == NULL) {
        fprintf(stderr, "cannot load vectors: %s (line %d)\n", err.text, err.line);
        abort();
    }
    return v;
}

#endif
