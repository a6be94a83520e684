/* Unit tests for common/replay_window: once each, reordering, the window's edge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common/replay_window.h"

static void test_in_order_once(void **state)
{
    struct replay_window w = {0};
    (void)state;
    assert_false(replay_window_accept(&w, 0));
    for (uint64_t n = 1; n <= 100; n++)
        assert_true(replay_window_accept(&w, n));
    for (uint64_t n = 1; n <= 100; n++)
        assert_false(replay_window_accept(&w, n));
}

static void test_reordered(void **state)
{
    struct replay_window w = {0};
    (void)state;
    assert_true(replay_window_accept(&w, 10));
    assert_true(replay_window_accept(&w, 3));
    assert_true(replay_window_accept(&w, 7));
    assert_false(replay_window_accept(&w, 3));
    assert_true(replay_window_accept(&w, 1));
    assert_true(replay_window_accept(&w, 11));
    assert_false(replay_window_accept(&w, 10));
    assert_true(replay_window_accept(&w, 9));
}

static void test_window_edge(void **state)
{
    struct replay_window w = {0};
    (void)state;
    uint64_t top = 5 * REPLAY_WINDOW_BITS + 17;
    assert_true(replay_window_accept(&w, top));
    /* The oldest number still inside, then one below it. */
    assert_true(replay_window_accept(&w, top - REPLAY_WINDOW_BITS + 1));
    assert_false(replay_window_accept(&w, top - REPLAY_WINDOW_BITS + 1));
    assert_false(replay_window_accept(&w, top - REPLAY_WINDOW_BITS));
    /* A slide by less than the window forgets the slots it reuses... */
    assert_true(replay_window_accept(&w, top + 100));
    for (uint64_t n = top + 1; n < top + 100; n++)
        assert_true(replay_window_accept(&w, n));
    assert_false(replay_window_accept(&w, top));
    /* ...and a jump past the whole window forgets everything. */
    uint64_t far = top + 3 * REPLAY_WINDOW_BITS;
    assert_true(replay_window_accept(&w, far));
    assert_false(replay_window_accept(&w, top + 100));
    assert_true(replay_window_accept(&w, far - 1));
    assert_false(replay_window_accept(&w, far));
}

static void test_random_against_a_set(void **state)
{
    /* Numbers drawn near the top, checked against a plain array of flags. */
    enum { N = 200000 };
    unsigned char *seen = calloc(N + 1, 1);
    struct replay_window w = {0};
    uint64_t top = 0;
    unsigned int r = 12345;
    (void)state;
    assert_non_null(seen);
    for (int i = 0; i < 400000; i++) {
        r = r * 1103515245u + 12345u;
        uint64_t back = (r >> 8) % (REPLAY_WINDOW_BITS + 2000);
        uint64_t n = top + 20 > back ? top + 20 - back : 1;
        if (n > N)
            break;
        bool want = !seen[n] && (top < REPLAY_WINDOW_BITS || n > top - REPLAY_WINDOW_BITS);
        assert_int_equal(replay_window_accept(&w, n), want);
        if (want) {
            seen[n] = 1;
            if (n > top)
                top = n;
        }
    }
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_once),
        cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_window_edge),
        cmocka_unit_test(test_random_against_a_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
