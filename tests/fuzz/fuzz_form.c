/*
 * fuzz_form: application/x-www-form-urlencoded decoding (http_params_parse in
 * http/http.c), which reads every OAuth request body (/token, /revoke,
 * /register's consent form) and every query string (/authorize, /callback).
 *
 * Checked: no crash or leak; -EINVAL leaves the list empty; http_params_get
 * and http_params_count agree; and a round trip: the decoded pairs encoded
 * again with http_urlencode and parsed must give the same pairs.
 */
#include "tests/fuzz/fuzz.h"

#include <errno.h>

#include "common/strbuf.h"
#include "http/http.h"

/* Names the OAuth endpoints read (RFC 6749 §4.1, RFC 7636, RFC 8707). */
static const char *const names[] = {
    "grant_type", "code",  "redirect_uri", "client_id",     "code_verifier",
    "resource",   "scope", "state",        "refresh_token", "token",
    "",
};

static void check_round_trip(const struct http_params *params)
{
    struct strbuf sb = STRBUF_INIT;
    for (size_t i = 0; i < params->len; i++) {
        char *n = http_urlencode(params->items[i].name);
        char *v = http_urlencode(params->items[i].value);
        FUZZ_CHECK(n && v, "http_urlencode failed");
        strbuf_printf(&sb, "%s%s=%s", i ? "&" : "", n, v);
        free(n); /* evhttp_uriencode allocates with malloc */
        free(v);
    }
    struct http_params again = {0};
    const char *text = sb.buf ? sb.buf : "";
    int rc = http_params_parse(text, sb.len, &again);
    FUZZ_CHECK(rc == 0, "re-encoded form does not parse: %s", text);
    FUZZ_CHECK(again.len == params->len, "%zu pairs became %zu: %s", params->len, again.len, text);
    for (size_t i = 0; i < params->len; i++) {
        FUZZ_CHECK(strcmp(again.items[i].name, params->items[i].name) == 0, "name %zu: %s", i,
                   text);
        FUZZ_CHECK(strcmp(again.items[i].value, params->items[i].value) == 0, "value %zu: %s", i,
                   text);
    }
    http_params_clear(&again);
    strbuf_release(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_params params = {0};
    /* Twice into one list: "out is reset first" must not leak the first result. */
    (void)http_params_parse((const char *)data, size / 2, &params);
    int rc = http_params_parse((const char *)data, size, &params);
    if (rc != 0) {
        FUZZ_CHECK(rc == -EINVAL, "rc %d", rc);
        FUZZ_CHECK(params.len == 0 && params.items == NULL, "failed parse left %zu pairs",
                   params.len);
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = http_params_get(&params, names[i]);
        size_t n = http_params_count(&params, names[i]);
        FUZZ_CHECK((v != NULL) == (n > 0), "get and count disagree on \"%s\"", names[i]);
    }
    for (size_t i = 0; i < params.len; i++) {
        FUZZ_CHECK(params.items[i].name && params.items[i].value, "pair %zu has a NULL", i);
        FUZZ_CHECK(http_params_count(&params, params.items[i].name) > 0, "pair %zu not counted", i);
    }
    if (rc == 0)
        check_round_trip(&params);
    http_params_clear(&params);
    return 0;
}
