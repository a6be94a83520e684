/*
 * test_net_url: the address and URL primitives of common/ (net.h, url.h),
 * one table per function: CIDR parsing and matching (IPv4, IPv6,
 * IPv4-mapped), the one definition of loopback on names and socket
 * addresses, the host:port splitter, the per-address rate key (IPv6 per
 * /64, IPv4-mapped as IPv4: F19), and the URL splitter and percent-decoder
 * every module shares.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/net.h"
#include "common/url.h"

/* ---- socket addresses ---------------------------------------------------------- */

/* TEXT as a sockaddr_in or sockaddr_in6 (by its syntax) in *SS. */
static const struct sockaddr *sa_of(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(443);
    } else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(443);
    } else {
        fail_msg("test address \"%s\" is not an IP literal", text);
    }
    return (const struct sockaddr *)ss;
}

/* ---- net_cidr_parse ------------------------------------------------------------ */

static void test_cidr_parse_valid(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int family;
        unsigned prefix_len;
        const char *addr; /* the address bytes, read back through inet_ntop */
    } rows[] = {
        {"10.0.0.0/8", AF_INET, 8, "10.0.0.0"},
        {"192.168.1.128/25", AF_INET, 25, "192.168.1.128"},
        {"192.168.1.1", AF_INET, 32, "192.168.1.1"}, /* a bare address is a host */
        {"0.0.0.0/0", AF_INET, 0, "0.0.0.0"},
        {"10.0.0.0/008", AF_INET, 8, "10.0.0.0"}, /* up to three digits */
        {"::1", AF_INET6, 128, "::1"},
        {"::1/128", AF_INET6, 128, "::1"},
        {"::/0", AF_INET6, 0, "::"},
        {"2001:db8::/32", AF_INET6, 32, "2001:db8::"},
        {"2001:DB8:8000::/33", AF_INET6, 33, "2001:db8:8000::"},
        {"fe80::/10", AF_INET6, 10, "fe80::"},
        {"::ffff:10.0.0.0/104", AF_INET6, 104, "::ffff:10.0.0.0"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct net_cidr c;
        const char *why = net_cidr_parse(rows[i].text, &c);
        if (why)
            fail_msg("\"%s\": %s", rows[i].text, why);
        assert_int_equal(c.family, rows[i].family);
        assert_int_equal(c.prefix_len, rows[i].prefix_len);
        char text[INET6_ADDRSTRLEN];
        assert_non_null(inet_ntop(c.family, c.addr, text, sizeof(text)));
        assert_string_equal(text, rows[i].addr);
    }
}

static void test_cidr_parse_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *why;
    } rows[] = {
        {"", "not an IP address"},
        {"/8", "not an IP address"},
        {"10.0.0/8", "not an IP address"},
        {"10.0.0.256", "not an IP address"},
        {"127.1", "not an IP address"}, /* inet_pton: dotted quads only */
        {"gw.example.com/24", "not an IP address"},
        {" 10.0.0.0/8", "not an IP address"},
        {"[::1]/128", "not an IP address"},
        {"fe80::1%eth0", "not an IP address"},
        {"0000:0000:0000:0000:0000:0000:0000:0000:0/0", "not an IP address"}, /* nine groups */
        {"0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/0", "not an IP address"},
        {"10.0.0.0/", "the prefix length is not a number"},
        {"10.0.0.0/x", "the prefix length is not a number"},
        {"10.0.0.0/-1", "the prefix length is not a number"},
        {"10.0.0.0/+8", "the prefix length is not a number"},
        {"10.0.0.0/8 ", "the prefix length is not a number"},
        {"10.0.0.0/8/8", "the prefix length is not a number"},
        {"10.0.0.0/0008", "the prefix length is not a number"},
        {"10.0.0.0/33", "the prefix length must be 0..32"},
        {"10.0.0.0/999", "the prefix length must be 0..32"},
        {"::/129", "the prefix length must be 0..128"},
        {"10.0.0.1/8", "host bits are set after the prefix length"},
        {"192.168.1.128/24", "host bits are set after the prefix length"},
        {"192.168.1.1/31", "host bits are set after the prefix length"},
        {"2001:db8::1/64", "host bits are set after the prefix length"},
        {"2001:db8:8000::/32", "host bits are set after the prefix length"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct net_cidr c;
        const char *why = net_cidr_parse(rows[i].text, &c);
        if (why == NULL || strcmp(why, rows[i].why) != 0)
            fail_msg("\"%s\": \"%s\", want \"%s\"", rows[i].text, why ? why : "(accepted)",
                     rows[i].why);
    }
}

/* ---- net_cidr_contains --------------------------------------------------------- */

static void test_cidr_contains(void **state)
{
    (void)state;
    static const struct {
        const char *net;
        const char *addr;
        bool inside;
    } rows[] = {
        {"10.0.0.0/8", "10.0.0.0", true},
        {"10.0.0.0/8", "10.255.1.2", true},
        {"10.0.0.0/8", "11.0.0.0", false},
        {"10.0.0.0/8", "9.255.255.255", false},
        {"192.168.1.0/25", "192.168.1.127", true}, /* a prefix inside a byte */
        {"192.168.1.0/25", "192.168.1.128", false},
        {"192.168.1.128/25", "192.168.1.200", true},
        {"203.0.113.7/32", "203.0.113.7", true},
        {"203.0.113.7/32", "203.0.113.6", false},
        {"0.0.0.0/0", "198.51.100.1", true},
        /* an IPv4-mapped client matches IPv4 networks (a dual-stack listener) */
        {"10.0.0.0/8", "::ffff:10.1.2.3", true},
        {"10.0.0.0/8", "::ffff:11.1.2.3", false},
        {"0.0.0.0/0", "::ffff:1.2.3.4", true},
        {"127.0.0.1/32", "::ffff:127.0.0.1", true},
        /* a native IPv6 client never matches an IPv4 network */
        {"0.0.0.0/0", "2001:db8::1", false},
        {"0.0.0.0/0", "::1", false},
        {"0.0.0.0/0", "::10.1.2.3", false}, /* IPv4-compatible is not IPv4-mapped */
        {"2001:db8::/32", "2001:db8::1", true},
        {"2001:db8::/32", "2001:db8:ffff:ffff::1", true},
        {"2001:db8::/32", "2001:db9::1", false},
        {"2001:db8:8000::/33", "2001:db8:8000::1", true},
        {"2001:db8:8000::/33", "2001:db8:7fff::1", false},
        {"::1/128", "::1", true},
        {"::1/128", "::2", false},
        {"::/0", "2001:db8::1", true},
        {"::/0", "::ffff:1.2.3.4", true},
        {"fe80::/10", "febf::1", true},
        {"fe80::/10", "fec0::1", false},
        /* an IPv4 client and an IPv6 network: families differ, even ::ffff:0:0/96 */
        {"::/0", "1.2.3.4", false},
        {"::ffff:0.0.0.0/96", "1.2.3.4", false},
        {"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct net_cidr c;
        const char *why = net_cidr_parse(rows[i].net, &c);
        if (why)
            fail_msg("\"%s\": %s", rows[i].net, why);
        struct sockaddr_storage ss;
        bool inside = net_cidr_contains(&c, sa_of(rows[i].addr, &ss));
        if (inside != rows[i].inside)
            fail_msg("%s in %s: %d, want %d", rows[i].addr, rows[i].net, inside, rows[i].inside);
    }
}

static void test_cidr_contains_other_families(void **state)
{
    (void)state;
    struct net_cidr all4, all6;
    assert_null(net_cidr_parse("0.0.0.0/0", &all4));
    assert_null(net_cidr_parse("::/0", &all6));
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, "/run/mcpgate.sock");
    assert_false(net_cidr_contains(&all4, (const struct sockaddr *)&un));
    assert_false(net_cidr_contains(&all6, (const struct sockaddr *)&un));
    assert_false(net_cidr_contains(&all4, NULL));
    assert_false(net_cidr_contains(&all6, NULL));
    struct sockaddr_storage ss;
    assert_false(net_cidr_contains(NULL, sa_of("10.0.0.1", &ss)));
}

/* ---- loopback ---------------------------------------------------------------------- */

static void test_host_is_loopback(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        bool loopback;
    } rows[] = {
        {"localhost", true},
        {"LocalHost", true},
        {"127.0.0.1", true},
        {"127.0.0.2", true},
        {"127.255.255.254", true},
        {"::1", true},
        {"[::1]", true},
        {"0:0:0:0:0:0:0:1", true},
        {"::ffff:127.0.0.1", true},
        {"[::ffff:127.9.9.9]", true},
        {"[127.0.0.1]", true}, /* brackets are taken off whatever is inside */
        {"[localhost]", true},
        {"", false},
        {"[]", false},
        {"localhost.", false}, /* nothing is resolved: only the exact name */
        {"localhost.example.com", false},
        {"mylocalhost", false},
        {"128.0.0.1", false},
        {"126.255.255.255", false},
        {"0.0.0.0", false},
        {"127.1", false}, /* not a dotted quad: a name, and names are not resolved */
        {"0x7f000001", false},
        {"127.0.0.1:8080", false},
        {"::", false},
        {"::2", false},
        {"::ffff:128.0.0.1", false},
        {"::127.0.0.1", false}, /* IPv4-compatible, not IPv4-mapped */
        {"fe80::1%lo", false},  /* zone ids are never loopback */
        {"[::1", false},
        {"::1]", false},
        {"[[::1]]", false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (net_host_is_loopback(rows[i].host) != rows[i].loopback)
            fail_msg("\"%s\": want %s", rows[i].host,
                     rows[i].loopback ? "loopback" : "not loopback");
}

static void test_host_is_loopback_n(void **state)
{
    (void)state;
    /* only the first LEN bytes count */
    assert_true(net_host_is_loopback_n("localhost:8080", 9));
    assert_true(net_host_is_loopback_n("127.0.0.1/path", 9));
    assert_true(net_host_is_loopback_n("[::1]:443", 5));
    assert_false(net_host_is_loopback_n("localhost", 8));
    assert_false(net_host_is_loopback_n("127.0.0.1", 0));
    /* the longest spelling of ::1, and text longer than any literal */
    assert_true(net_host_is_loopback_n("[0000:0000:0000:0000:0000:0000:0000:0001]", 41));
    static const char long_text[] = "0000:0000:0000:0000:0000:0000:0000:0000:0000:0001";
    assert_false(net_host_is_loopback_n(long_text, sizeof(long_text) - 1));
}

static void test_sockaddr_is_loopback(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        bool loopback;
    } rows[] = {
        {"127.0.0.1", true},    {"127.1.2.3", true},    {"::1", true}, {"::ffff:127.0.0.1", true},
        {"10.0.0.1", false},    {"0.0.0.0", false},     {"::", false}, {"::ffff:10.0.0.1", false},
        {"::127.0.0.1", false}, {"2001:db8::1", false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss;
        if (net_sockaddr_is_loopback(sa_of(rows[i].addr, &ss)) != rows[i].loopback)
            fail_msg("%s: want %s", rows[i].addr, rows[i].loopback ? "loopback" : "not loopback");
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_true(net_sockaddr_is_loopback((const struct sockaddr *)&un));
}

/* ---- net_split_hostport -------------------------------------------------------------- */

static void test_split_hostport(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool port_required;
        unsigned min_port;
        const char *why; /* NULL: accepted with HOST and PORT */
        const char *host;
        unsigned port;
    } rows[] = {
        {"gw.example.com:443", true, 1, NULL, "gw.example.com", 443},
        {"127.0.0.1:6379", true, 1, NULL, "127.0.0.1", 6379},
        {"[::1]:8080", true, 1, NULL, "::1", 8080},
        {"[2001:db8::1]:1", true, 1, NULL, "2001:db8::1", 1},
        {"redis_1:65535", true, 1, NULL, "redis_1", 65535},
        {"localhost", false, 1, NULL, "localhost", 0},
        {"[::1]", false, 1, NULL, "::1", 0},
        {"0.0.0.0:0", true, 0, NULL, "0.0.0.0", 0}, /* listen: a free port */
        {"localhost", true, 1, "the port is missing", NULL, 0},
        {"[::1]", true, 0, "the port is missing", NULL, 0},
        {"::1:80", true, 1, "an IPv6 address needs brackets, e.g. [::1]:8080", NULL, 0},
        {"::1", false, 1, "an IPv6 address needs brackets, e.g. [::1]:8080", NULL, 0},
        {"[::1:80", true, 1, "missing ']' after an IPv6 address", NULL, 0},
        {"[::1]80", true, 1, "expected ':' after ']'", NULL, 0},
        {"[::1]:", true, 1, "the port must be 1..65535", NULL, 0},
        {":80", true, 1, "the host is missing", NULL, 0},
        {"", false, 1, "the host is missing", NULL, 0},
        {"[]:80", true, 1, "the host is missing", NULL, 0},
        {"[gw.example.com]:80", true, 1, "invalid host", NULL, 0},
        {"[127.0.0.1]:80", true, 1, "invalid host", NULL, 0},
        {"gw example:80", true, 1, "invalid host", NULL, 0},
        {"gw/x:80", true, 1, "invalid host", NULL, 0},
        {"b\xc3\xbc"
         "cher.example:80",
         true, 1, "invalid host", NULL, 0},
        {"host:0", true, 1, "the port must be 1..65535", NULL, 0},
        {"host:65536", true, 1, "the port must be 1..65535", NULL, 0},
        {"host:65536", true, 0, "the port must be 0..65535", NULL, 0},
        {"host:", true, 1, "the port must be 1..65535", NULL, 0},
        {"host:+80", true, 1, "the port must be 1..65535", NULL, 0},
        {"host:80 ", true, 1, "the port must be 1..65535", NULL, 0},
        {"host:0x50", true, 1, "the port must be 1..65535", NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char host[256] = "untouched";
        unsigned port = 12345;
        const char *why = net_split_hostport(rows[i].s, strlen(rows[i].s), rows[i].port_required,
                                             rows[i].min_port, host, sizeof(host), &port);
        if (rows[i].why == NULL) {
            if (why)
                fail_msg("\"%s\": %s", rows[i].s, why);
            assert_string_equal(host, rows[i].host);
            assert_int_equal(port, rows[i].port);
        } else if (why == NULL || strcmp(why, rows[i].why) != 0) {
            fail_msg("\"%s\": \"%s\", want \"%s\"", rows[i].s, why ? why : "(accepted)",
                     rows[i].why);
        }
    }
}

static void test_split_hostport_bounds(void **state)
{
    (void)state;
    char host[8];
    unsigned port;
    /* the host must fit HOST with its NUL */
    assert_null(net_split_hostport("abcdefg:1", 9, true, 1, host, sizeof(host), &port));
    assert_string_equal(host, "abcdefg");
    assert_string_equal(net_split_hostport("abcdefgh:1", 10, true, 1, host, sizeof(host), &port),
                        "invalid host");
    /* only LEN bytes are read */
    assert_null(net_split_hostport("gw:80/path", 5, true, 1, host, sizeof(host), &port));
    assert_string_equal(host, "gw");
    assert_int_equal(port, 80);
    /* a DNS name is at most 253 bytes */
    char name[300], big[300];
    memset(name, 'a', 254);
    name[254] = '\0';
    assert_string_equal(net_split_hostport(name, strlen(name), false, 1, big, sizeof(big), &port),
                        "invalid host");
    name[253] = '\0';
    assert_null(net_split_hostport(name, strlen(name), false, 1, big, sizeof(big), &port));
}

/* ---- net_parse_uint -------------------------------------------------------------------- */

static void test_parse_uint(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_true(net_parse_uint("0", 1, 0, 10, &v));
    assert_int_equal(v, 0);
    assert_true(net_parse_uint("10", 2, 0, 10, &v));
    assert_int_equal(v, 10);
    assert_true(net_parse_uint("0010", 4, 0, 10, &v));
    assert_int_equal(v, 10);
    assert_true(net_parse_uint("12345", 2, 0, 100, &v)); /* exactly LEN bytes */
    assert_int_equal(v, 12);
    assert_true(net_parse_uint("9999999999999999999", 19, 0, UINT64_MAX, &v));
    assert_true(v == UINT64_C(9999999999999999999));
    v = 77;
    assert_false(net_parse_uint("11", 2, 0, 10, &v));
    assert_false(net_parse_uint("0", 1, 1, 10, &v));
    assert_false(net_parse_uint("", 0, 0, 10, &v));
    assert_false(net_parse_uint("1a", 2, 0, 100, &v));
    assert_false(net_parse_uint("-1", 2, 0, 100, &v));
    assert_false(net_parse_uint("+1", 2, 0, 100, &v));
    assert_false(net_parse_uint(" 1", 2, 0, 100, &v));
    /* 20 digits could wrap: refused by length, whatever the value */
    assert_false(net_parse_uint("18446744073709551615", 20, 0, UINT64_MAX, &v));
    assert_false(net_parse_uint("00000000000000000001", 20, 0, UINT64_MAX, &v));
    assert_int_equal(v, 77); /* untouched on refusal */
}

/* ---- net_rate_key (F19) ------------------------------------------------------------- */

static void test_rate_key(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        const char *key;
    } rows[] = {
        {"192.0.2.1", "192.0.2.1"},
        {"0.0.0.0", "0.0.0.0"},
        {"::ffff:192.0.2.1", "192.0.2.1"}, /* IPv4-mapped counts as its IPv4 address */
        {"::FFFF:192.0.2.1", "192.0.2.1"},
        {"::ffff:0:0", "0.0.0.0"},
        {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"}, /* IPv6 per /64 */
        {"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
        {"2001:DB8:1:2::1", "2001:db8:1:2::/64"}, /* canonical text */
        {"2001:0db8:0001:0002::1", "2001:db8:1:2::/64"},
        {"2001:db8:1:3::1", "2001:db8:1:3::/64"},
        {"2001:db8::", "2001:db8::/64"},
        {"fe80::1", "fe80::/64"},
        {"::1", "::/64"},
        {"::", "::/64"},
        {"::10.1.2.3", "::/64"}, /* IPv4-compatible is IPv6 */
        /* not an IP literal: as is */
        {"unix", "unix"},
        {"", ""},
        {"fe80::1%eth0", "fe80::1%eth0"},
        {"gw.example.com", "gw.example.com"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char out[NET_RATE_KEY_MAX];
        memset(out, 'x', sizeof(out));
        net_rate_key(rows[i].ip, out);
        if (strcmp(out, rows[i].key) != 0)
            fail_msg("\"%s\": key \"%s\", want \"%s\"", rows[i].ip, out, rows[i].key);
    }
    /* two hosts of one /64 share a key; neighbouring /64s do not */
    char a[NET_RATE_KEY_MAX], b[NET_RATE_KEY_MAX], c[NET_RATE_KEY_MAX];
    net_rate_key("2001:db8:aa:bb:1::1", a);
    net_rate_key("2001:db8:aa:bb:dead:beef:0:1", b);
    net_rate_key("2001:db8:aa:bc:1::1", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
}

static void test_rate_key_truncates(void **state)
{
    (void)state;
    char ip[200], out[NET_RATE_KEY_MAX];
    memset(ip, 'h', sizeof(ip) - 1);
    ip[sizeof(ip) - 1] = '\0';
    net_rate_key(ip, out);
    assert_int_equal(strlen(out), NET_RATE_KEY_MAX - 1);
    assert_memory_equal(out, ip, NET_RATE_KEY_MAX - 1);
    /* the longest IPv6 key fits */
    net_rate_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", out);
    assert_string_equal(out, "ffff:ffff:ffff:ffff::/64");
}

/* ---- url_split ----------------------------------------------------------------------- */

#define NONE NULL

static void test_url_split(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        const char *scheme, *user, *host, *port, *path, *query, *fragment;
    } rows[] = {
        {"https://Example.COM:8443/a/b?q=1&r#frag", "https", NONE, "Example.COM", "8443", "/a/b",
         "q=1&r", "frag"},
        {"HTTPS://a", "https", NONE, "a", NONE, "/", NONE, NONE}, /* empty path reads "/" */
        {"https://a/", "https", NONE, "a", NONE, "/", NONE, NONE},
        {"https://a?q", "https", NONE, "a", NONE, "/", "q", NONE},
        {"https://user:pw@h/p", "https", "user", "h", NONE, "/p", NONE, NONE},
        {"https://user@h/", "https", "user", "h", NONE, "/", NONE, NONE},
        {"http://127.1/", "http", NONE, "127.0.0.1", NONE, "/", NONE, NONE}, /* normalised */
        {"http://0x7f000001/", "http", NONE, "127.0.0.1", NONE, "/", NONE, NONE},
        {"http://[::1]:80/x", "http", NONE, "[::1]", "80", "/x", NONE, NONE},
        {"https://h:/", "https", NONE, "h", NONE, "/", NONE, NONE}, /* an empty port */
        {"myapp://callback/path", "myapp", NONE, "callback", NONE, "/path", NONE, NONE},
        {"https://b\xc3\xbc"
         "cher.example/",
         "https", NONE,
         "b\xc3\xbc"
         "cher.example",
         NONE, "/", NONE, NONE},                                         /* UTF-8 as given */
        {"https://h/%zz", "https", NONE, "h", NONE, "/%zz", NONE, NONE}, /* not decoded */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct url_parts u;
        if (!url_split(rows[i].uri, &u))
            fail_msg("\"%s\" refused", rows[i].uri);
        const char *got[7] = {u.scheme, u.user, u.host, u.port, u.path, u.query, u.fragment};
        const char *want[7] = {rows[i].scheme, rows[i].user,  rows[i].host,    rows[i].port,
                               rows[i].path,   rows[i].query, rows[i].fragment};
        static const char *const part[7] = {"scheme", "user",  "host",    "port",
                                            "path",   "query", "fragment"};
        for (int k = 0; k < 7; k++)
            if ((got[k] == NULL) != (want[k] == NULL) || (got[k] && strcmp(got[k], want[k]) != 0))
                fail_msg("\"%s\" %s: \"%s\", want \"%s\"", rows[i].uri, part[k],
                         got[k] ? got[k] : "(none)", want[k] ? want[k] : "(none)");
        url_parts_clear(&u);
        assert_null(u.scheme);
        assert_null(u.host);
    }
}

static void test_url_split_refused(void **state)
{
    (void)state;
    static const char *const rows[] = {
        "https:///x", /* empty authority: libcurl alone would read host "x" */
        "https://",
        "https://?q",
        "https://#f",
        "file:///etc/passwd",
        "",
        "not a url",
        "/relative/path",
        "//gw.example/x",
        "https://a b/",
        "https://h/a b",
        "https://[::1/",
        "https://ex.com:99999/",
        "mailto:a@b",
        "urn:ietf:params:oauth",
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct url_parts u;
        memset(&u, 0x5a, sizeof(u)); /* url_split must clear it */
        if (url_split(rows[i], &u))
            fail_msg("\"%s\" accepted (host \"%s\")", rows[i], u.host ? u.host : "");
        assert_null(u.scheme);
        assert_null(u.user);
        assert_null(u.host);
        assert_null(u.port);
        assert_null(u.path);
        assert_null(u.query);
        assert_null(u.fragment);
        url_parts_clear(&u); /* clearing a cleared struct is fine */
    }
}

/*
 * url.h: "Splits an absolute URI (any scheme)". A URI without "//" whose
 * path starts with one "/" is read by libcurl as an authority:
 * "com.example.app:/cb" (an RFC 8252 private-use redirect) splits as host
 * "cb", path "/", where RFC 3986 has no authority and path "/cb";
 * "https:/evil.example/x" splits as host "evil.example". No caller reaches
 * this today (redirect_uri.c and the display host look for "://" first,
 * http_conf.c wants "http(s)://", idp.c's endpoints are fetched by libcurl,
 * which reads them the same way), so this pins what url_split does: when it
 * is fixed (or url.h says "hierarchical URIs with //"), flip these rows.
 */
static void test_BUG_url_split_single_slash_read_as_authority(void **state)
{
    (void)state;
    struct url_parts u;
    assert_true(url_split("com.example.app:/cb", &u));
    assert_string_equal(u.scheme, "com.example.app");
    assert_string_equal(u.host, "cb"); /* expected: no host */
    assert_string_equal(u.path, "/");  /* expected: "/cb" */
    url_parts_clear(&u);
    assert_true(url_split("https:/evil.example/x", &u));
    assert_string_equal(u.host, "evil.example"); /* expected: refused, or no host */
    url_parts_clear(&u);
}

static void test_url_after_authority(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        const char *after; /* NULL: no "://" */
    } rows[] = {
        {"https://a.b:1/x?y#z", "/x?y#z"},
        {"https://a", ""},
        {"https://a?q", "?q"},
        {"https://a#f", "#f"},
        {"https://u@h/p", "/p"},
        {"https://[::1]:8080/p", "/p"},
        {"https://", ""},
        {"https:///x", "/x"},
        {"myapp://cb", ""},
        {"com.example.app:/cb", NONE},
        {"plain text", NONE},
        {"", NONE},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *got = url_after_authority(rows[i].uri);
        if ((got == NULL) != (rows[i].after == NULL) || (got && strcmp(got, rows[i].after) != 0))
            fail_msg("\"%s\": \"%s\", want \"%s\"", rows[i].uri, got ? got : "(NULL)",
                     rows[i].after ? rows[i].after : "(NULL)");
        if (got)
            assert_true(got >= rows[i].uri && got <= rows[i].uri + strlen(rows[i].uri));
    }
}

/* ---- url_pct_decode ------------------------------------------------------------------ */

/* A literal and its length, for rows holding a NUL. */
#define LIT(s) s, sizeof(s) - 1

static void test_pct_decode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t in_len;
        bool plus_is_space;
        const char *out; /* NULL: refused */
        size_t out_len;
    } rows[] = {
        {LIT(""), false, LIT("")},
        {LIT("abc"), false, LIT("abc")},
        {LIT("%41%62"), false, LIT("Ab")},
        {LIT("%2f%2F"), false, LIT("//")}, /* either case of hex */
        {LIT("a%20b"), false, LIT("a b")},
        {LIT("a+b"), false, LIT("a+b")},
        {LIT("a+b"), true, LIT("a b")}, /* application/x-www-form-urlencoded */
        {LIT("%2B"), true, LIT("+")},   /* an escaped plus stays a plus */
        {LIT("++"), true, LIT("  ")},
        {LIT("%25"), false, LIT("%")},
        {LIT("%2541"), false, LIT("%41")}, /* decoded once only */
        {LIT("%e2%82%ac"), false, LIT("\xe2\x82\xac")},
        {LIT("%ff%01"), false, LIT("\xff\x01")}, /* any byte but NUL */
        {LIT("%"), false, NULL, 0},
        {LIT("a%"), false, NULL, 0},
        {LIT("%4"), false, NULL, 0},
        {LIT("%4g"), false, NULL, 0},
        {LIT("%g4"), false, NULL, 0},
        {LIT("%%"), false, NULL, 0},
        {LIT("%%41"), false, NULL, 0},
        {LIT("% 41"), false, NULL, 0},
        {LIT("%+1"), true, NULL, 0},
        {LIT("%00"), false, NULL, 0},
        {LIT("a%00b"), true, NULL, 0},
        {LIT("a\0b"), false, NULL, 0}, /* a raw NUL */
        {LIT("\0"), true, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t out_len = 999;
        char *out = url_pct_decode(rows[i].in, rows[i].in_len, rows[i].plus_is_space, &out_len);
        if (rows[i].out == NULL) {
            if (out)
                fail_msg("row %zu (\"%.*s\") accepted as \"%s\"", i, (int)rows[i].in_len,
                         rows[i].in, out);
            assert_int_equal(out_len, 999); /* untouched */
            continue;
        }
        if (out == NULL)
            fail_msg("row %zu (\"%.*s\") refused", i, (int)rows[i].in_len, rows[i].in);
        assert_int_equal(out_len, rows[i].out_len);
        assert_memory_equal(out, rows[i].out, out_len);
        assert_int_equal(out[out_len], '\0');
        free(out);
    }
}

static void test_pct_decode_bounds(void **state)
{
    (void)state;
    /* only LEN bytes are read: an escape cut by LEN is malformed */
    assert_null(url_pct_decode("%41", 2, false, NULL));
    assert_null(url_pct_decode("%41", 1, false, NULL));
    char *s = url_pct_decode("a%41", 1, false, NULL);
    assert_string_equal(s, "a");
    free(s);
    /* OUT_LEN may be NULL */
    s = url_pct_decode("x%3Dy", 5, false, NULL);
    assert_string_equal(s, "x=y");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse_valid),
        cmocka_unit_test(test_cidr_parse_refused),
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_cidr_contains_other_families),
        cmocka_unit_test(test_host_is_loopback),
        cmocka_unit_test(test_host_is_loopback_n),
        cmocka_unit_test(test_sockaddr_is_loopback),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_split_hostport_bounds),
        cmocka_unit_test(test_parse_uint),
        cmocka_unit_test(test_rate_key),
        cmocka_unit_test(test_rate_key_truncates),
        cmocka_unit_test(test_url_split),
        cmocka_unit_test(test_url_split_refused),
        cmocka_unit_test(test_BUG_url_split_single_slash_read_as_authority),
        cmocka_unit_test(test_url_after_authority),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_pct_decode_bounds),
    };
    return cmocka_run_group_tests_name("net_url", tests, NULL, NULL);
}
