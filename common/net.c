/*
 * net: CIDR networks, loopback tests and the host:port splitter (see net.h).
 */
#include "common/net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

bool net_parse_uint(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *net_cidr_parse(const char *text, struct net_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
    memset(out, 0, sizeof(*out));
    if (host_len == 0 || host_len >= sizeof(host))
        return "not an IP address";
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    out->family = inet_pton(AF_INET, host, out->addr) == 1    ? AF_INET
                  : inet_pton(AF_INET6, host, out->addr) == 1 ? AF_INET6
                                                              : 0;
    if (out->family == 0)
        return "not an IP address";
    unsigned max = out->family == AF_INET ? 32 : 128;
    uint64_t prefix = max;
    if (slash) {
        size_t digits = strspn(slash + 1, "0123456789");
        if (digits == 0 || slash[1 + digits] != '\0' || digits > 3)
            return "the prefix length is not a number";
        net_parse_uint(slash + 1, digits, 0, 999, &prefix);
    }
    if (prefix > max)
        return out->family == AF_INET ? "the prefix length must be 0..32"
                                      : "the prefix length must be 0..128";
    out->prefix_len = (unsigned)prefix;
    for (unsigned bit = out->prefix_len; bit < max; bit++)
        if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
            return "host bits are set after the prefix length";
    return NULL;
}

bool net_cidr_contains(const struct net_cidr *net, const struct sockaddr *addr)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t bytes[16];
    if (net == NULL)
        return false;
    int family = addr ? addr->sa_family : AF_UNSPEC;
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof(sin));
        memcpy(bytes, &sin.sin_addr, 4);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof(sin6));
        memcpy(bytes, &sin6.sin6_addr, 16);
        if (net->family == AF_INET && memcmp(bytes, v4mapped, 12) == 0) {
            memmove(bytes, bytes + 12, 4);
            family = AF_INET;
        }
    }
    if (family != net->family)
        return false;
    unsigned full = net->prefix_len / 8, rest = net->prefix_len % 8;
    if (memcmp(bytes, net->addr, full) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return rest == 0 || (bytes[full] & mask) == (net->addr[full] & mask);
}

bool net_host_is_loopback_n(const char *host, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 2];
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        host++, n -= 2;
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (strcasecmp(buf, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, buf, &a6) != 1)
        return false; /* also zone ids ("fe80::1%eth0"): not loopback */
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

bool net_host_is_loopback(const char *host)
{
    return net_host_is_loopback_n(host, strlen(host));
}

bool net_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_UNIX)
        return true;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* An IPv4 address in host byte order: NULL when public, else its kind (RFC 6890). */
static const char *ipv4_special_use(uint32_t a)
{
    static const struct {
        uint32_t net;
        unsigned len;
        const char *kind;
    } ranges[] = {
        {0x00000000, 8, "unspecified"},        /* 0.0.0.0/8 "this network" */
        {0x0a000000, 8, "private"},            /* 10/8 */
        {0x64400000, 10, "carrier-grade NAT"}, /* 100.64/10 */
        {0x7f000000, 8, "loopback"},           /* 127/8 */
        {0xa9fe0000, 16, "link-local"},        /* 169.254/16 */
        {0xac100000, 12, "private"},           /* 172.16/12 */
        {0xc0000000, 24, "special-use"},       /* 192.0.0/24 IETF protocol assignments */
        {0xc0000200, 24, "documentation"},     /* 192.0.2/24 TEST-NET-1 */
        {0xc0586300, 24, "special-use"},       /* 192.88.99/24 6to4 relay anycast */
        {0xc0a80000, 16, "private"},           /* 192.168/16 */
        {0xc6120000, 15, "benchmarking"},      /* 198.18/15 */
        {0xc6336400, 24, "documentation"},     /* 198.51.100/24 TEST-NET-2 */
        {0xcb007100, 24, "documentation"},     /* 203.0.113/24 TEST-NET-3 */
        {0xe0000000, 4, "multicast"},          /* 224/4 */
        {0xf0000000, 4, "reserved"},           /* 240/4, with 255.255.255.255 */
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        uint32_t mask = 0xffffffffu << (32 - ranges[i].len);
        if ((a & mask) == ranges[i].net)
            return ranges[i].kind;
    }
    return NULL;
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *ipv6_special_use(const uint8_t b[16])
{
    static const uint8_t zero[16] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, zero, 16) == 0)
        return "unspecified";
    if (memcmp(b, zero, 15) == 0 && b[15] == 1)
        return "loopback";
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return ipv4_special_use(be32_at(b + 12)); /* RFC 4291 §2.5.5.2, RFC 6052 */
    if (b[0] == 0xff)
        return "multicast";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local"; /* fe80::/10 */
    if ((b[0] & 0xfe) == 0xfc)
        return "private"; /* fc00::/7 unique local */
    if ((b[0] & 0xe0) != 0x20)
        return "reserved"; /* outside 2000::/3 global unicast: ::/96, 64:ff9b:1::/48, fec0::/10 … */
    if (b[0] == 0x20 && b[1] == 0x02)
        return ipv4_special_use(be32_at(b + 2)); /* 2002::/16 6to4 carries an IPv4 address */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "documentation"; /* 2001:db8::/32 */
    if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0)
        return "documentation"; /* 3fff::/20, RFC 9637 */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02)
        return "special-use"; /* 2001::/23 IETF protocol assignments (Teredo, ORCHID, …) */
    return NULL;
}

const char *net_sockaddr_special_use(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        return ipv4_special_use(ntohl(sin.sin_addr.s_addr));
    }
    if (sa && sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        return ipv6_special_use(sin6.sin6_addr.s6_addr);
    }
    return "not an IP address";
}

static bool is_hostname(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_'))
            return false;
    return true;
}

const char *net_split_hostport(const char *s, size_t n, bool port_required, unsigned min_port,
                               char *host, size_t host_size, unsigned *port_out)
{
    const char *port = NULL;
    const char *h = s;
    size_t hn;
    bool bracketed = n > 0 && s[0] == '[';
    *port_out = 0;
    if (bracketed) {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return "missing ']' after an IPv6 address";
        h = s + 1, hn = (size_t)(close - s - 1);
        if (close + 1 < s + n && close[1] != ':')
            return "expected ':' after ']'";
        port = close + 1 < s + n ? close + 2 : NULL;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon && memchr(colon + 1, ':', (size_t)(s + n - colon - 1)))
            return "an IPv6 address needs brackets, e.g. [::1]:8080";
        hn = colon ? (size_t)(colon - s) : n;
        port = colon ? colon + 1 : NULL;
    }
    if (hn == 0)
        return "the host is missing";
    if (hn >= host_size)
        return "invalid host";
    memcpy(host, h, hn);
    host[hn] = '\0';
    struct in6_addr a6;
    if (bracketed ? inet_pton(AF_INET6, host, &a6) != 1 : !is_hostname(host, hn))
        return "invalid host";
    if (port == NULL && port_required)
        return "the port is missing";
    uint64_t p = 0;
    if (port && !net_parse_uint(port, (size_t)(s + n - port), min_port, 65535, &p))
        return min_port == 0 ? "the port must be 0..65535" : "the port must be 1..65535";
    *port_out = (unsigned)p;
    return NULL;
}

void net_rate_key(const char *client_ip, char out[NET_RATE_KEY_MAX])
{
    unsigned char a[16];
    if (inet_pton(AF_INET6, client_ip, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            inet_ntop(AF_INET, a + 12, out, NET_RATE_KEY_MAX);
            return;
        }
        memset(a + 8, 0, 8);
        char text[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, a, text, sizeof(text));
        snprintf(out, NET_RATE_KEY_MAX, "%s/64", text);
        return;
    }
    snprintf(out, NET_RATE_KEY_MAX, "%s", client_ip);
}
