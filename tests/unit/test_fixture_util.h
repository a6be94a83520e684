/*
 * test_fixture_util: reading a file from tests/fixtures/idp, shared by
 * test_idp.c and test_idp_flow.c. Include after <cmocka.h>.
 *
 * The file is looked up under $MCPGATE_FIXTURES, then relative to the repo
 * root, then relative to the test binary (build/san/tests/), so the tests run
 * from either place. A missing fixture fails the test, it is never skipped.
 */
#ifndef MCPGATE_TESTS_TEST_FIXTURE_UTIL_H
#define MCPGATE_TESTS_TEST_FIXTURE_UTIL_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/strbuf.h"
#include "common/xalloc.h"

/* Returns the whole file as a NUL-terminated string the caller frees. */
__attribute__((unused)) static char *fixture_read(const char *name)
{
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *env = getenv("MCPGATE_FIXTURES");
    char *paths[3] = {env ? xasprintf("%s/%s", env, name) : NULL,
                      xasprintf("tests/fixtures/idp/%s", name),
                      xasprintf("%s/../../../tests/fixtures/idp/%s", exe, name)};
    char *text = NULL;
    for (int i = 0; i < 3 && !text; i++) {
        FILE *f = paths[i] ? fopen(paths[i], "rb") : NULL;
        if (!f)
            continue;
        struct strbuf sb = STRBUF_INIT;
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
            strbuf_append(&sb, buf, got);
        fclose(f);
        text = strbuf_detach(&sb, NULL);
    }
    for (int i = 0; i < 3; i++)
        free(paths[i]);
    if (!text)
        fail_msg("fixture %s not found (run from the repo root or set MCPGATE_FIXTURES)", name);
    return text;
}

#endif
