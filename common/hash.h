/*
 * hash: the string hash of mcpgate's in-process tables (routes, sessions,
 * the bearer cache, upstream session bindings). FNV-1a, 32 bits: fast and
 * well spread for the keys used here, which are either chosen by mcpgate
 * (paths, random ids) or digests (SHA-256 hex). It is not meant to resist
 * hash flooding: never key a table with raw client-chosen strings without
 * bounding the table.
 */
#ifndef MCPGATE_COMMON_HASH_H
#define MCPGATE_COMMON_HASH_H

#include <stdint.h>

static inline uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

#endif
