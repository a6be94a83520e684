/*
 * test_conf: the table-driven YAML engine (conf/conf.c) on a small schema of
 * its own, apart from the gateway's (test_config covers that): ${VAR}
 * expansion, value syntax (durations, sizes, rates), unknown keys and their
 * hint, duplicate keys, required keys, post hooks, the root check, message
 * order and table-driven freeing (ASan's leak check covers it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

struct t_sub {
    char *label;
    uint32_t weight;
};

struct t_conf {
    char *name;
    char *token; /* secret */
    uint64_t ttl_ms;
    uint64_t max_bytes;
    uint32_t count;
    uint32_t rate_n;
    uint64_t rate_window_ms;
    int mode;
    bool on;
    struct gw_string_list items;
    struct t_sub sub;
    char *derived; /* set by the root check, freed by release */
};

enum t_mode { T_MODE_FAST = 0, T_MODE_SLOW };
CONF_ENUM_IS_INT(t_mode);

static const struct conf_enum_name mode_names[] = {
    {"fast", T_MODE_FAST}, {"slow", T_MODE_SLOW}, {NULL, 0}};

/* A post hook: weight 0 needs a label. */
static void sub_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks);

static const struct conf_field sub_fields[] = {
    {"label", CONF_STR, AT(struct t_sub, label)},
    {"weight", CONF_U32, AT(struct t_sub, weight), RANGE(0, 10)},
};
static const struct conf_section sub_section = {FIELDS(sub_fields), sub_post, NULL};

static void sub_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks)
{
    const struct t_sub *s = base;
    if (conf_key_valid(&sub_section, ks, "weight") && s->weight == 0 && s->label == NULL)
        conf_key_error(ld, at, "label", "required when weight is 0");
}

static void t_release(void *base)
{
    free(((struct t_conf *)base)->derived);
}

static const struct conf_field t_fields[] = {
    {"name", CONF_STR, AT(struct t_conf, name), .flags = CONF_REQUIRED},
    {"token", CONF_SECRET, AT(struct t_conf, token)},
    {"ttl", CONF_DURATION, AT(struct t_conf, ttl_ms), RANGE(SEC_MS, 5 * MIN_MS)},
    {"max", CONF_SIZE, AT(struct t_conf, max_bytes), RANGE(1, 4 * MiB)},
    {"count", CONF_U32, AT(struct t_conf, count), RANGE(1, 100)},
    {"rate", CONF_RATE, AT2(struct t_conf, rate_n, rate_window_ms)},
    {"mode", CONF_ENUM, AT(struct t_conf, mode), .names = mode_names},
    {"on", CONF_BOOL, AT(struct t_conf, on)},
    {"items", CONF_STRLIST, AT(struct t_conf, items), .check = conf_check_env_name},
    {"sub", CONF_SECTION, AT(struct t_conf, sub), .sub = &sub_section},
};
static const struct conf_section t_section = {FIELDS(t_fields), NULL, t_release};

/* The root check: runs after the walk; "name: root-error" asks for an error at the top. */
static void t_check(struct conf_loader *ld, const struct conf_node *root, void *base)
{
    (void)root;
    struct t_conf *c = base;
    if (c->name && strcmp(c->name, "root-error") == 0)
        conf_node_error(ld, NULL, "asked for");
    if (c->name)
        c->derived = strdup(c->name);
}

struct loaded {
    struct t_conf conf;
    struct gw_config_errors errs;
    bool ok;
};

static void load(const char *yaml, struct loaded *out)
{
    memset(out, 0, sizeof(*out));
    out->ok =
        conf_load_string(yaml, strlen(yaml), "t.yaml", &t_section, t_check, &out->conf, &out->errs);
}

static void loaded_free(struct loaded *l)
{
    conf_section_free(&t_section, &l->conf);
    conf_errors_clear(&l->errs);
}

/* The first message of a load that must fail, with the number of messages. */
static void expect_error(const char *yaml, size_t count, const char *first)
{
    struct loaded l;
    load(yaml, &l);
    if (l.ok || l.errs.len != count || strcmp(l.errs.messages[0], first) != 0) {
        print_error("yaml:\n%s\nwant (%zu): %s\n", yaml, count, first);
        for (size_t i = 0; i < l.errs.len; i++)
            print_error(" got: %s\n", l.errs.messages[i]);
        fail();
    }
    loaded_free(&l);
}

static void test_values(void **state)
{
    (void)state;
    struct loaded l;
    load("name: a\nttl: 90s\nmax: 64KiB\ncount: 7\nrate: 10/min\nmode: slow\non: true\n"
         "items: [A, B_2]\nsub: {label: x, weight: 3}\ntoken: s3cret\n",
         &l);
    assert_true(l.ok);
    assert_int_equal(l.errs.len, 0);
    assert_string_equal(l.conf.name, "a");
    assert_int_equal(l.conf.ttl_ms, 90000);
    assert_int_equal(l.conf.max_bytes, 65536);
    assert_int_equal(l.conf.count, 7);
    assert_int_equal(l.conf.rate_n, 10);
    assert_int_equal(l.conf.rate_window_ms, 60000);
    assert_int_equal(l.conf.mode, T_MODE_SLOW);
    assert_true(l.conf.on);
    assert_int_equal(l.conf.items.len, 2);
    assert_string_equal(l.conf.items.items[1], "B_2");
    assert_string_equal(l.conf.sub.label, "x");
    assert_int_equal(l.conf.sub.weight, 3);
    assert_string_equal(l.conf.token, "s3cret");
    assert_string_equal(l.conf.derived, "a"); /* the root check ran */
    loaded_free(&l);
}

static void test_env_expansion(void **state)
{
    (void)state;
    setenv("TC_SET", "v", 1);
    setenv("TC_EMPTY", "", 1);
    unsetenv("TC_UNSET");
    struct loaded l;
    load("name: \"${TC_SET}-${TC_UNSET:-d}-${TC_EMPTY:-e}-${TC_EMPTY}-$${TC_SET}-$x\"\n", &l);
    assert_true(l.ok);
    assert_string_equal(l.conf.name, "v-d-e--${TC_SET}-$x");
    loaded_free(&l);
    expect_error("name: ${TC_UNSET}\n", 1,
                 "t.yaml:1:7: name: environment variable TC_UNSET is not set (write "
                 "${TC_UNSET:-default} to give a default)");
    expect_error("name: \"${TC-X}\"\n", 1,
                 "t.yaml:1:7: name: invalid reference ${TC-X}: use ${NAME} or ${NAME:-default}");
    expect_error("name: \"a${TC_SET\"\n", 1, "t.yaml:1:7: name: unterminated ${ (missing '}')");
}

static void test_value_syntax(void **state)
{
    (void)state;
    expect_error("name: a\nttl: 90\n", 1,
                 "t.yaml:2:6: ttl: \"90\" has no unit: write e.g. \"90s\" (units: ms, s, m, h, d)");
    expect_error("name: a\nttl: 10m\n", 1,
                 "t.yaml:2:6: ttl: 10m is out of range: must be 1s to 5m");
    expect_error("name: a\nmax: 8MiB\n", 1,
                 "t.yaml:2:6: max: 8MiB is out of range: must be 1 to 4MiB");
    expect_error("name: a\nmax: 1.5MiB\n", 1,
                 "t.yaml:2:6: max: invalid size \"1.5MiB\" (write e.g. 512, 64KiB, 4MiB, 1GiB, "
                 "10kB)");
    expect_error("name: a\ncount: 0x10\n", 1,
                 "t.yaml:2:8: count: expected an integer, found \"0x10\"");
    expect_error("name: a\nrate: 0/s\n", 1,
                 "t.yaml:2:7: rate: invalid rate \"0/s\" (write count/unit, unit s, min, h or d, "
                 "e.g. 10/min; count 1 to 1000000)");
    expect_error("name: a\nmode: medium\n", 1,
                 "t.yaml:2:7: mode: \"medium\" is not one of: fast, slow");
    expect_error("name: a\non: yes\n", 1,
                 "t.yaml:2:5: on: \"yes\" is a YAML 1.1 boolean: write true or false");
    expect_error("name: a\nitems: [A, 1B]\n", 1,
                 "t.yaml:2:12: items[1]: \"1B\" is not a valid environment variable name");

    uint64_t v = 0;
    assert_int_equal(gw_parse_duration_ms("15m", &v), 0);
    assert_int_equal(v, 900000);
    assert_int_equal(gw_parse_size_bytes("10kB", &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(gw_parse_duration_ms("15", &v), -EINVAL);
}

static void test_keys(void **state)
{
    (void)state;
    expect_error("name: a\ncont: 3\n", 1, "t.yaml:2:1: cont: unknown key (did you mean count?)");
    expect_error("name: a\nzzzzzz: 3\n", 1, "t.yaml:2:1: zzzzzz: unknown key");
    /* the hint knows the _file variant of secrets */
    expect_error("name: a\ntoken_fil: /x\n", 1,
                 "t.yaml:2:1: token_fil: unknown key (did you mean token_file?)");
    expect_error("name: a\ncount: 1\ncount: 2\n", 1,
                 "t.yaml:3:1: count: duplicate key (first at line 2)");
    expect_error("name: a\ntoken: x\ntoken_file: /x\n", 1,
                 "t.yaml:3:1: token_file: give token or token_file, not both");
    expect_error("count: 1\n", 1, "t.yaml:1:1: name: required key is missing");
    expect_error("name: &n a\n", 1, "t.yaml:1:7: name: anchors (&n) are not allowed");
    expect_error("- a\n", 1,
                 "t.yaml:1:1: (root): the configuration must be a mapping, found a list");
}

/* Post hooks report at the key (or the mapping); the root check's 1:1 error sorts first. */
static void test_hooks_and_order(void **state)
{
    (void)state;
    expect_error("name: a\nsub: {weight: 0}\n", 1,
                 "t.yaml:2:6: sub.label: required when weight is 0");
    struct loaded l;
    load("name: root-error\ncount: 0\nmode: x\n", &l);
    assert_false(l.ok);
    assert_int_equal(l.errs.len, 3);
    assert_string_equal(l.errs.messages[0], "t.yaml:1:1: (root): asked for");
    assert_string_equal(l.errs.messages[1],
                        "t.yaml:2:8: count: 0 is out of range: must be 1 to 100");
    assert_string_equal(l.errs.messages[2], "t.yaml:3:7: mode: \"x\" is not one of: fast, slow");
    loaded_free(&l);
}

static void test_file_and_names(void **state)
{
    (void)state;
    struct t_conf c = {0};
    struct gw_config_errors errs = {0};
    assert_false(conf_load_file("/nonexistent/t.yaml", &t_section, NULL, &c, &errs));
    assert_int_equal(errs.len, 1);
    assert_string_equal(errs.messages[0],
                        "/nonexistent/t.yaml: cannot read: No such file or directory");
    conf_section_free(&t_section, &c);
    conf_errors_clear(&errs);
    assert_null(errs.messages);
    assert_string_equal(conf_enum_name(mode_names, T_MODE_SLOW), "slow");
    assert_string_equal(conf_enum_name(mode_names, 42), "");
    assert_null(conf_path_problem("/a/b"));
    assert_string_equal(conf_path_problem("/a/../b"), "must not contain '..' segments");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),          cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_value_syntax),    cmocka_unit_test(test_keys),
        cmocka_unit_test(test_hooks_and_order), cmocka_unit_test(test_file_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
