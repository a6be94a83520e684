/* Unit tests for common/principal: shared holders, copies of borrowed principals, the lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/principal.h"
#include "common/xalloc.h"

static struct mg_principal *alice(void)
{
    struct mg_principal *p = mg_principal_new();
    p->subject = xstrdup("alice");
    p->email = xstrdup("alice@example.com");
    mg_string_list_split(&p->scopes, "mcp:tools  mcp:read mcp:tools");
    mg_string_list_add(&p->roles, "admin");
    p->idp_access_token = xstrdup("idp-secret");
    p->expires_at = 42;
    return p;
}

/* A heap principal is shared, not copied: every holder sees the one object, and it
 * lives until the last holder lets go (ASan reports a use after free or a leak). */
static void test_heap_principal_is_shared(void **state)
{
    (void)state;
    struct mg_principal *p = alice();
    assert_int_equal(p->refs, 1);
    struct mg_principal *a = mg_principal_ref(p);
    struct mg_principal *b = mg_principal_ref(a);
    assert_ptr_equal(a, p);
    assert_ptr_equal(b, p);
    assert_int_equal(p->refs, 3);
    mg_principal_free(p);
    mg_principal_free(a);
    assert_int_equal(b->refs, 1);
    assert_string_equal(b->subject, "alice"); /* still whole for the last holder */
    assert_int_equal(b->scopes.len, 2);
    mg_principal_free(b);
    mg_principal_free(NULL);
}

/* A principal that is not on the heap (the stack, static storage) is copied whole. */
static void test_borrowed_principal_is_copied(void **state)
{
    (void)state;
    char *roles[] = {"viewer", "editor"};
    struct mg_principal local = {
        .subject = "bob",
        .username = "bob1",
        .roles = {roles, 2},
        .client_id = "cli",
        .resource = "https://gw.example/mcp",
        .expires_at = 7,
    };
    struct mg_principal *c = mg_principal_ref(&local);
    assert_ptr_not_equal(c, &local);
    assert_int_equal(c->refs, 1);
    assert_int_equal(local.refs, 0);
    assert_ptr_not_equal(c->subject, local.subject);
    assert_string_equal(c->subject, "bob");
    assert_string_equal(c->username, "bob1");
    assert_null(c->email);
    assert_int_equal(c->roles.len, 2);
    assert_string_equal(c->roles.items[1], "editor");
    assert_string_equal(c->client_id, "cli");
    assert_string_equal(c->resource, "https://gw.example/mcp");
    assert_int_equal(c->expires_at, 7);
    mg_principal_free(c);
}

static void test_string_lists(void **state)
{
    (void)state;
    struct mg_string_list l = {0};
    mg_string_list_split(&l, " a  b a c ");
    assert_int_equal(l.len, 3);
    assert_true(mg_string_list_contains(&l, "c"));
    assert_false(mg_string_list_contains(&l, ""));
    char *joined = mg_string_list_join(&l, ",");
    assert_string_equal(joined, "a,b,c");
    free(joined);
    mg_string_list_clear(&l);
    assert_int_equal(l.len, 0);
    assert_null(l.items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_principal_is_shared),
        cmocka_unit_test(test_borrowed_principal_is_copied),
        cmocka_unit_test(test_string_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
