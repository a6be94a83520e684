/* Unit tests for common/heap_trim: when closed connections, memory freed after them and free
 * heap get a trim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common/heap_trim.h"

static size_t free_now;   /* what the fake heap says is free */
static size_t in_use_now; /* and in use */
static int usage_asked;   /* how often it was asked */

static struct heap_usage fake_usage(void)
{
    usage_asked++;
    return (struct heap_usage){.in_use = in_use_now, .free = free_now};
}

/* A sample at second SEC with OPEN connections. */
static enum heap_trim_reason at(struct heap_trim *t, uint64_t sec, size_t open)
{
    return heap_trim_sample(t, open, 1000000 + sec * HEAP_TRIM_SAMPLE_MS, fake_usage);
}

/* Samples FROM..TO-1 with OPEN connections each: none may trim. */
static void quiet(struct heap_trim *t, uint64_t from, uint64_t to, size_t open)
{
    for (uint64_t s = from; s < to; s++)
        assert_int_equal(at(t, s, open), HEAP_TRIM_NONE);
}

static int setup(void **state)
{
    (void)state;
    free_now = 0;
    in_use_now = 64u << 20;
    usage_asked = 0;
    return 0;
}

static void test_burst_within_a_sample(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    quiet(&t, 0, 5, 5000);
    assert_int_equal(at(&t, 5, 3), HEAP_TRIM_CLOSED); /* nothing trimmed for long: at once */
    quiet(&t, 6, 30, 3);
}

/* The fault this rule mends: a trim for an earlier burst held the next one back
 * a whole interval, and 5,000 closed streams kept 33-67 MiB of RSS for 10 s. */
static void test_burst_soon_after_a_trim_waits_only_for_its_end(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 1000);
    assert_int_equal(at(&t, 1, 0), HEAP_TRIM_CLOSED);
    at(&t, 2, 5000);
    assert_int_equal(at(&t, 3, 2000), HEAP_TRIM_NONE); /* still falling */
    assert_int_equal(at(&t, 4, 0), HEAP_TRIM_NONE);    /* still falling */
    assert_int_equal(at(&t, 5, 0), HEAP_TRIM_CLOSED);  /* it stopped: 4 s after the last trim */
    assert_int_equal(at(&t, 6, 0), HEAP_TRIM_NONE);
}

static void test_trim_mid_burst_is_followed_by_one_at_its_end(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 5000);
    assert_int_equal(at(&t, 1, 2400), HEAP_TRIM_CLOSED); /* interval long past */
    assert_int_equal(at(&t, 2, 0), HEAP_TRIM_NONE);      /* still falling */
    assert_int_equal(at(&t, 3, 0), HEAP_TRIM_CLOSED);    /* stopped: a new drop from 2400 */
    quiet(&t, 4, 30, 0);
}

/* The fault the follow-ups mend: 5,000 streams closed, the trim came, and 10 MiB
 * they held was freed a moment later and kept for 10 s. */
static void test_memory_freed_after_a_trim_is_trimmed_on_the_next_samples(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 5000);
    in_use_now = 20u << 20;
    assert_int_equal(at(&t, 1, 0), HEAP_TRIM_CLOSED);
    in_use_now = 10u << 20; /* freed after the trim */
    assert_int_equal(at(&t, 2, 0), HEAP_TRIM_FREED);
    in_use_now -= HEAP_TRIM_MIN_FREED / 2; /* too little for another */
    assert_int_equal(at(&t, 3, 0), HEAP_TRIM_NONE);
    in_use_now -= HEAP_TRIM_MIN_FREED; /* more, counted from the last trim */
    assert_int_equal(at(&t, 4, 0), HEAP_TRIM_FREED);
    /* Then HEAP_TRIM_FOLLOW_UPS looks that find nothing, and no more looks. */
    usage_asked = 0;
    quiet(&t, 5, 5 + HEAP_TRIM_FOLLOW_UPS, 0);
    assert_int_equal(usage_asked, HEAP_TRIM_FOLLOW_UPS);
    in_use_now = 1u << 20;
    quiet(&t, 5 + HEAP_TRIM_FOLLOW_UPS, 11, 0);
    assert_int_equal(usage_asked, HEAP_TRIM_FOLLOW_UPS);
}

static void test_a_follow_up_counts_frees_from_where_the_heap_grew_to(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 5000);
    in_use_now = 10u << 20;
    assert_int_equal(at(&t, 1, 0), HEAP_TRIM_CLOSED);
    in_use_now = 30u << 20; /* new traffic */
    assert_int_equal(at(&t, 2, 0), HEAP_TRIM_NONE);
    in_use_now = 28u << 20; /* below 30, not below 10 */
    assert_int_equal(at(&t, 3, 0), HEAP_TRIM_FREED);
}

static void test_tail_that_ends_at_the_trim_needs_nothing_more(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 5000);
    assert_int_equal(at(&t, 1, 100), HEAP_TRIM_CLOSED);
    assert_int_equal(at(&t, 2, 100), HEAP_TRIM_NONE); /* stopped where it was trimmed */
    assert_int_equal(at(&t, 3, 100), HEAP_TRIM_NONE);
}

static void test_small_or_partial_drops_do_not_trim(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    at(&t, 0, 300);
    assert_int_equal(at(&t, 1, 100), HEAP_TRIM_NONE); /* fewer than HEAP_TRIM_MIN_DROP */
    at(&t, 2, 5000);
    assert_int_equal(at(&t, 3, 2600), HEAP_TRIM_NONE); /* not down to half */
    assert_int_equal(at(&t, 4, 2600), HEAP_TRIM_NONE);
    for (uint64_t s = 5; s < 100; s++) /* a steady load with noise */
        assert_int_equal(at(&t, s, 2510 + (s % 7) * 30), HEAP_TRIM_NONE);
}

static void test_a_long_fall_is_trimmed_once_per_interval(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    int trims = 0;
    at(&t, 0, 10000);
    for (uint64_t s = 1; s <= 99; s++) /* 100 fewer every second */
        trims += at(&t, s, 10000 - s * 100) == HEAP_TRIM_CLOSED;
    /* At once (nothing trimmed before), then once per interval while it goes on. */
    assert_true(trims >= 2);
    assert_true(trims <= 1 + 99 * HEAP_TRIM_SAMPLE_MS / HEAP_TRIM_INTERVAL_MS);
}

static void test_free_heap_is_looked_at_once_per_interval(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    int trims = 0;
    free_now = HEAP_TRIM_FREE_BYTES; /* not above */
    for (uint64_t s = 0; s < 100; s++)
        trims += at(&t, s, 10) != HEAP_TRIM_NONE;
    assert_int_equal(trims, 0);
    assert_true(usage_asked >= 9 && usage_asked <= 10);
    free_now = HEAP_TRIM_FREE_BYTES + 1;
    for (uint64_t s = 100; s < 200; s++) {
        enum heap_trim_reason r = at(&t, s, 10);
        assert_true(r == HEAP_TRIM_NONE || r == HEAP_TRIM_FREE);
        trims += r == HEAP_TRIM_FREE;
    }
    assert_true(trims >= 9 && trims <= 10); /* it repeats while the heap stays free */
}

static void test_a_closed_trim_resets_the_free_heap_pace(void **state)
{
    struct heap_trim t = {0};
    (void)state;
    free_now = HEAP_TRIM_FREE_BYTES + 1;
    at(&t, 0, 1000);
    assert_int_equal(at(&t, 1, 0), HEAP_TRIM_CLOSED);
    usage_asked = 0;
    quiet(&t, 2, 11, 0); /* the trim just gave it back: only the follow-ups look */
    assert_int_equal(usage_asked, HEAP_TRIM_FOLLOW_UPS);
    assert_int_equal(at(&t, 11, 0), HEAP_TRIM_FREE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_burst_within_a_sample, setup),
        cmocka_unit_test_setup(test_burst_soon_after_a_trim_waits_only_for_its_end, setup),
        cmocka_unit_test_setup(test_trim_mid_burst_is_followed_by_one_at_its_end, setup),
        cmocka_unit_test_setup(test_memory_freed_after_a_trim_is_trimmed_on_the_next_samples,
                               setup),
        cmocka_unit_test_setup(test_a_follow_up_counts_frees_from_where_the_heap_grew_to, setup),
        cmocka_unit_test_setup(test_tail_that_ends_at_the_trim_needs_nothing_more, setup),
        cmocka_unit_test_setup(test_small_or_partial_drops_do_not_trim, setup),
        cmocka_unit_test_setup(test_a_long_fall_is_trimmed_once_per_interval, setup),
        cmocka_unit_test_setup(test_free_heap_is_looked_at_once_per_interval, setup),
        cmocka_unit_test_setup(test_a_closed_trim_resets_the_free_heap_pace, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
