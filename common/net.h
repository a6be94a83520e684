/*
 * net: network-address primitives with no mcpgate policy: IP networks
 * (CIDR), loopback tests on host names and socket addresses, and the
 * "host:port" splitter that listen addresses and Redis URLs share.
 *
 * One definition of "loopback" for the whole program: "localhost" (any
 * case), 127.0.0.0/8, ::1 and the IPv4-mapped ::ffff:127.0.0.0/104. Names
 * other than "localhost" are never loopback here: nothing in this module
 * resolves.
 */
#ifndef MCPGATE_COMMON_NET_H
#define MCPGATE_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 or IPv6 network, from "10.0.0.0/8", "::1/128" or a bare address. */
struct net_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix_len;
};

/* Parses TEXT into OUT. Returns NULL, or why not ("not an IP address", …). */
const char *net_cidr_parse(const char *text, struct net_cidr *out);
/* ADDR (AF_INET or AF_INET6; IPv4-mapped IPv6 matches IPv4 networks) is inside NET. */
bool net_cidr_contains(const struct net_cidr *net, const struct sockaddr *addr);

/* HOST is "localhost", a loopback IPv4 literal or a loopback IPv6 literal,
 * with or without brackets. */
bool net_host_is_loopback(const char *host);
/* The same for the first LEN bytes of HOST. */
bool net_host_is_loopback_n(const char *host, size_t len);
/* A unix socket, or a loopback IPv4/IPv6 (also IPv4-mapped) address. */
bool net_sockaddr_is_loopback(const struct sockaddr *sa);

/*
 * NULL when SA is a public (globally routable) IPv4 or IPv6 unicast address;
 * otherwise what it is, a static string for logs: "loopback", "private"
 * (RFC 1918, IPv6 ULA), "link-local", "carrier-grade NAT", "multicast",
 * "unspecified", "documentation", "benchmarking", "reserved", "special-use"
 * (RFC 6890 and its IANA registries). IPv6 outside 2000::/3 is never public;
 * IPv4 embedded in IPv6 (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4
 * 2002::/16) is judged as the IPv4 address it carries, so no encoding trick
 * reaches 127.0.0.1 or 10.0.0.0/8. Other families are "not an IP address".
 */
const char *net_sockaddr_special_use(const struct sockaddr *sa);

/*
 * Splits "host:port" or "[v6]:port" (the LEN bytes at S). The host is copied
 * without brackets into HOST (HOST_SIZE bytes with its NUL); a bracketed host
 * must be an IPv6 literal, an unbracketed one a DNS name or IPv4 literal.
 * PORT_REQUIRED: the port must be there. MIN_PORT: 0 for listen addresses
 * (a free port), 1 elsewhere. *PORT is 0 when absent. Returns NULL or why not.
 */
const char *net_split_hostport(const char *s, size_t len, bool port_required, unsigned min_port,
                               char *host, size_t host_size, unsigned *port);

/*
 * The key a per-address limit counts CLIENT_IP under: an IPv4 address as is
 * (also when IPv4-mapped), an IPv6 address as its /64 ("2001:db8:1:2::/64"),
 * since one host is given a whole /64 and rotates through it freely (F19).
 * Anything else is used as is. OUT holds NET_RATE_KEY_MAX bytes.
 */
#define NET_RATE_KEY_MAX 64
void net_rate_key(const char *client_ip, char out[NET_RATE_KEY_MAX]);

/* A decimal number spanning exactly S[0..LEN) in [MIN, MAX]. */
bool net_parse_uint(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out);

#endif
