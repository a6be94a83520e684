/*
 * http_conf: the `server:` section of the configuration (http/http_conf.c)
 * and the address and URL rules other modules' tables reuse. Included by
 * gateway/config.c (the root table) and by the schema files of oauth/ and
 * proxy/; the server itself reads the loaded struct gw_server_config.
 */
#ifndef MCPGATE_HTTP_HTTP_CONF_H
#define MCPGATE_HTTP_HTTP_CONF_H

#include <stdbool.h>

struct conf_loader;
struct conf_node;
struct conf_section;
struct gw_server_config;
struct url_parts;

/* The table of `server:`, for the root table. */
extern const struct conf_section http_conf_server_section;
/* Defaults of `server:` (owned strings: freed with the config). */
void http_conf_defaults(struct gw_server_config *s);

/*
 * A listen address: "host:port", "[v6]:port" (host an IP address or
 * localhost, port 0..65535) or "unix:/abs/path". NULL, with *LOOPBACK set
 * (unix sockets count as loopback), or why not.
 */
const char *http_conf_listen_problem(const char *s, bool *loopback);
/* Checks for conf_field.check: a listen address; an origin (scheme://host[:port] only). */
bool http_conf_check_listen(struct conf_loader *ld, const struct conf_node *at, const char *v);
bool http_conf_check_origin_url(struct conf_loader *ld, const struct conf_node *at, const char *v);
/*
 * An http(s) URL, split by url_split() (common/url.h): NULL with U filled
 * (the caller clears it), or why not ("must start with http:// or https://",
 * "must not contain user info (user@)", …) with U cleared. Path, query and
 * fragment are left to the caller, on the raw text (url_after_authority()).
 */
const char *http_conf_url_problem(const char *s, struct url_parts *u);

#endif
