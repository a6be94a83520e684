/*
 * fuzz_consent_cookie: the cookies a browser brings to /authorize. The
 * remembered-consent cookie (consent_cookie_parse and consent_cookie_write,
 * oauth/consent.c) and the lookup that finds it and the per-authorization
 * CSRF cookie in the Cookie header (oauth_cookie_find, oauth/oauth_common.c;
 * authorize.c then compares the CSRF value, as found, with the form's).
 *
 * The input is a Cookie header. The consent cookie's value is taken from it
 * (both cookie names; the whole input when it has neither), parsed as it
 * came, and parsed again signed by this driver with the fixed secret, so
 * the fuzzer reaches the entry parser without forging an HMAC.
 *
 * Checked beyond no crash or leak:
 * - the lookup: a value has no ";"; "NAME=V" added after look-alikes
 *   (__Host-NAME, NAMEx) is found as V, byte for byte;
 * - what is accepted as it came is exactly what this secret signed (the
 *   MAC re-encodes to the input, so no stray bits in its last character);
 * - a signed cookie with one byte changed (entries, separator or MAC) gives
 *   no approval;
 * - what the parser accepts: at most CONSENT_MAX_APPROVALS, current at NOW,
 *   22-character keys, scopes non-empty, without spaces, no repeats;
 * - round trip: the writer given the parsed approvals and their first one
 *   again parses back to the same approvals, in order, all of them unless
 *   the next one would have passed CONSENT_COOKIE_MAX;
 * - the writer's value never passes CONSENT_COOKIE_MAX, for any parsed
 *   input and any new approval (B's first key with more scopes, a new key).
 *
 * MCPGATE_FUZZ_WRITE_SEEDS=DIR makes the driver write its seed corpus to
 * DIR with the real signing code and exit (gen_seeds.sh runs it).
 */
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/principal.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "oauth/consent.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"

/* Must match gen_seeds.sh's description (NOW) and stay fixed: seeds are signed with it. */
static const unsigned char secret[48] = "fuzz-consent-secret-0123456789abcdef0123456789ab";
#define NOW ((uint64_t)1700000000)
#define COOKIE "mcpgate_consent"
#define MAC_LEN 43 /* base64url of HMAC-SHA256 */

/* The per-authorization CSRF cookie's name for HANDLE (authorize.c:authreq_cookie). */
static void csrf_cookie_name(const char *handle, char out[64])
{
    char hex[65];
    crypto_sha256_hex(handle, hex);
    snprintf(out, 64, "mcpgate_ar_%.12s", hex);
}

/* ---- the cookie header lookup ---------------------------------------------- */

static void check_found(const char *header, const char *name, const char *v)
{
    if (v == NULL)
        return;
    FUZZ_CHECK(strchr(v, ';') == NULL, "cookie %s has a ';' in \"%s\"", name, v);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s=%s", name, v);
    FUZZ_CHECK(strstr(header, strbuf_str(&sb)) != NULL, "cookie %s=\"%s\" is not in the header",
               name, v);
    strbuf_release(&sb);
}

/* NAME=X after cookies whose names look like NAME: X is found, exactly. */
static void check_lookup_after_lookalikes(const char *name, const char *text)
{
    char *x = xstrndup(text, strcspn(text, ";"));
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "a=b; __Host-%s=decoy; %sx=decoy; =; %s=%s; %s=second", name, name, name, x,
                  name);
    char *v = oauth_cookie_find(strbuf_str(&sb), name);
    FUZZ_CHECK(v != NULL && strcmp(v, x) == 0, "%s: \"%s\" found as \"%s\"", name, x,
               v ? v : "(none)");
    free(v);
    strbuf_release(&sb);
    free(x);
}

/* ---- the consent cookie ---------------------------------------------------- */

static char *sign(const char *payload)
{
    char *mac = oauth_mac_new(secret, sizeof(secret), "consent", payload);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s.%s", payload, mac);
    free(mac);
    return strbuf_detach(&sb, NULL);
}

static void check_approvals(const struct consent_approvals *as)
{
    FUZZ_CHECK(as->len <= CONSENT_MAX_APPROVALS, "%zu approvals", as->len);
    for (size_t i = 0; i < as->len; i++) {
        const struct consent_approval *a = &as->items[i];
        FUZZ_CHECK(strlen(a->key) == CONSENT_KEY_LEN, "key \"%s\"", a->key);
        FUZZ_CHECK(a->until > NOW, "approval %zu expired at %llu", i, (unsigned long long)a->until);
        for (size_t j = 0; j < a->scopes.len; j++) {
            const char *s = a->scopes.items[j];
            FUZZ_CHECK(s[0] != '\0' && strchr(s, ' ') == NULL, "scope \"%s\"", s);
            for (size_t k = 0; k < j; k++)
                FUZZ_CHECK(strcmp(s, a->scopes.items[k]) != 0, "scope \"%s\" twice", s);
        }
    }
}

static bool same_scopes(const struct mg_string_list *a, const struct mg_string_list *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

/* How many bytes the writer spends on A after a first entry (",key~b64~until"). */
static size_t entry_len(const struct consent_approval *a)
{
    char *joined = mg_string_list_join(&a->scopes, " ");
    char *enc = b64url_encode_new(joined, strlen(joined));
    char until[24];
    size_t n = 1 + CONSENT_KEY_LEN + 1 + strlen(enc) + 1 +
               (size_t)snprintf(until, sizeof(until), "%llu", (unsigned long long)a->until);
    free(enc);
    free(joined);
    return n;
}

static void check_written(const char *value)
{
    if (value == NULL)
        return;
    FUZZ_CHECK(strlen(value) <= CONSENT_COOKIE_MAX, "the writer made %zu bytes", strlen(value));
}

/* Writing B again with its own first approval gives B back (or a prefix cut by the size). */
static void check_round_trip(const struct consent_approvals *b)
{
    const struct consent_approval *first = &b->items[0];
    char *w =
        consent_cookie_write(secret, sizeof(secret), b, first->key, &first->scopes, first->until);
    check_written(w);
    if (w == NULL) {
        FUZZ_CHECK(entry_len(first) + MAC_LEN > CONSENT_COOKIE_MAX,
                   "no cookie, though the first approval (%zu bytes) fits", entry_len(first) - 1);
        return;
    }
    struct consent_approvals c;
    consent_cookie_parse(secret, sizeof(secret), w, NOW, &c);
    FUZZ_CHECK(c.len >= 1, "the writer's own cookie \"%s\" parsed to nothing", w);
    for (size_t i = 0; i < c.len; i++) {
        FUZZ_CHECK(i < b->len, "the written cookie has %zu approvals, the read one %zu", c.len,
                   b->len);
        FUZZ_CHECK(strcmp(c.items[i].key, b->items[i].key) == 0 &&
                       c.items[i].until == b->items[i].until &&
                       same_scopes(&c.items[i].scopes, &b->items[i].scopes),
                   "approval %zu changed in the round trip (%s)", i, w);
    }
    if (c.len < b->len) {
        size_t payload = strlen(w) - 1 - MAC_LEN;
        FUZZ_CHECK(payload + entry_len(&b->items[c.len]) + 1 + MAC_LEN > CONSENT_COOKIE_MAX,
                   "approval %zu was dropped though it fit (%zu bytes so far)", c.len, payload);
    }
    consent_approvals_clear(&c);
    free(w);
}

/*
 * New approvals on top of B (what a person approves is any set of the
 * configured scopes): every scope B holds, and those again with a "+" (as
 * many new ones), each for B's first key and for a new key.
 */
static void check_writer_bound(const struct consent_approvals *b)
{
    struct mg_string_list all = {0}, more = {0};
    for (size_t i = 0; i < b->len; i++)
        for (size_t j = 0; j < b->items[i].scopes.len; j++)
            if (!mg_string_list_contains(&all, b->items[i].scopes.items[j]))
                mg_string_list_add(&all, b->items[i].scopes.items[j]);
    mg_string_list_copy(&more, &all);
    for (size_t i = 0; i < all.len; i++) {
        char *plus = xasprintf("%s+", all.items[i]);
        if (!mg_string_list_contains(&more, plus))
            mg_string_list_add(&more, plus);
        free(plus);
    }
    char fresh[CONSENT_KEY_LEN + 1];
    consent_approval_key("fuzz-client", "http://127.0.0.1/cb", "", fresh);
    const char *keys[] = {b->len ? b->items[0].key : fresh, fresh};
    const struct mg_string_list *scopes[] = {&all, &more};
    for (size_t k = 0; k < 2; k++)
        for (size_t s = 0; s < 2; s++) {
            char *w =
                consent_cookie_write(secret, sizeof(secret), b, keys[k], scopes[s], NOW + 86400);
            check_written(w);
            free(w);
        }
    mg_string_list_clear(&all);
    mg_string_list_clear(&more);
}

/* One byte of the signed cookie S changed (never to NUL): nothing is accepted. */
static void check_tamper(const char *s, size_t at)
{
    char *t = xstrdup(s);
    t[at] = (char)(t[at] ^ 1) ? (char)(t[at] ^ 1) : (char)(t[at] ^ 2);
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), t, NOW, &as);
    FUZZ_CHECK(as.len == 0, "byte %zu of a signed cookie changed and it still gave %zu approvals",
               at, as.len);
    free(t);
}

static void consent_value(const char *value, uint32_t pick)
{
    /* As it came: accepted only when this secret signed exactly this text. */
    struct consent_approvals a;
    consent_cookie_parse(secret, sizeof(secret), value, NOW, &a);
    check_approvals(&a);
    const char *dot = strrchr(value, '.');
    char *payload = dot ? xstrndup(value, (size_t)(dot - value)) : xstrdup(value);
    char *s = sign(payload);
    if (a.len)
        FUZZ_CHECK(strcmp(s, value) == 0, "accepted \"%s\", signed would be \"%s\"", value, s);
    consent_approvals_clear(&a);

    /* Signed here: the entry parser, the writer, and the MAC against one changed byte. */
    struct consent_approvals b;
    consent_cookie_parse(secret, sizeof(secret), s, NOW, &b);
    check_approvals(&b);
    if (b.len)
        check_round_trip(&b);
    check_writer_bound(&b);
    size_t plen = strlen(payload);
    if (plen)
        check_tamper(s, pick % plen);               /* an entry byte */
    check_tamper(s, plen + (pick % (1 + MAC_LEN))); /* the "." or the MAC */
    consent_approvals_clear(&b);
    free(s);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = fuzz_strndup(data, size);
    uint32_t pick = 0;
    for (size_t i = 0; i < size; i++)
        pick = pick * 31u + data[i];

    char csrf[64];
    csrf_cookie_name("fuzz-handle", csrf);
    const char *names[] = {COOKIE, "__Host-" COOKIE, csrf};
    char *found[3];
    for (size_t i = 0; i < 3; i++) {
        found[i] = oauth_cookie_find(header, names[i]);
        check_found(header, names[i], found[i]);
        check_lookup_after_lookalikes(names[i], header);
    }
    consent_value(found[0] ? found[0] : found[1] ? found[1] : header, pick);
    for (size_t i = 0; i < 3; i++)
        free(found[i]);
    free(header);
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

static void seed(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A cookie value that remembers KEYS[0..N) in order, newest first, each with SCOPES. */
static char *remember(size_t n, const char *const *clients, const char *scopes, uint64_t until)
{
    struct consent_approvals as = {0};
    char *value = NULL;
    for (size_t i = n; i-- > 0;) {
        char key[CONSENT_KEY_LEN + 1];
        consent_approval_key(clients[i], "http://127.0.0.1/callback", "", key);
        struct mg_string_list sl = {0};
        mg_string_list_split(&sl, scopes);
        free(value);
        value = consent_cookie_write(secret, sizeof(secret), &as, key, &sl, until);
        mg_string_list_clear(&sl);
        consent_approvals_clear(&as);
        consent_cookie_parse(secret, sizeof(secret), value, 0, &as);
    }
    consent_approvals_clear(&as);
    return value;
}

static void write_seeds(const char *dir)
{
    const uint64_t later = NOW + 30 * 86400;
    char csrf[64];
    csrf_cookie_name("fuzz-handle", csrf);
    const char *clients[] = {"cli-a", "cli-b", "cli-c", "cli-d", "cli-e", "cli-f", "cli-g",
                             "cli-h", "cli-i", "cli-j", "cli-k", "cli-l", "cli-m", "cli-n",
                             "cli-o", "cli-p", "cli-q", "cli-r", "cli-s", "cli-t", "cli-u"};
    struct strbuf sb = STRBUF_INIT;

    char *one = remember(1, clients, "mcp:tools", later);
    strbuf_printf(&sb, COOKIE "=%s", one);
    seed(dir, "one-approval.txt", strbuf_str(&sb));
    seed(dir, "raw-value.txt", one);
    strbuf_truncate(&sb, 0);
    strbuf_printf(&sb, "__Host-" COOKIE "=%s; theme=dark", one);
    seed(dir, "host-prefix.txt", strbuf_str(&sb));

    /* The MAC's last character with its two unused bits set: refused. */
    char *odd = xstrdup(one);
    size_t n = strlen(odd);
    char *last = strchr("AEIMQUYcgkosw048", odd[n - 1]);
    odd[n - 1] = last ? (char)(odd[n - 1] + 1) : 'B';
    seed(dir, "noncanonical-mac.txt", odd);
    odd[n - 10] = odd[n - 10] == 'A' ? 'B' : 'A';
    seed(dir, "tampered-mac.txt", odd);
    free(odd);

    char *three = remember(3, clients, "mcp:tools mcp:write openid", later);
    strbuf_truncate(&sb, 0);
    strbuf_printf(&sb, "%s=Zk9vQmFyX2NzcmZfdG9rZW5fMDEyMzQ1Njc4OWFiY2Rl; " COOKIE "=%s; lang=en",
                  csrf, three);
    seed(dir, "three-approvals-with-csrf.txt", strbuf_str(&sb));

    char *none = remember(2, clients, "", later);
    strbuf_truncate(&sb, 0);
    strbuf_printf(&sb, COOKIE "=%s", none);
    seed(dir, "no-scopes.txt", strbuf_str(&sb));

    /* cli-a expired at NOW (the writer keeps it, the parser drops it), cli-b current. */
    char *expired = remember(1, clients, "mcp:tools", NOW);
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), expired, 0, &as);
    char key[CONSENT_KEY_LEN + 1];
    consent_approval_key("cli-b", "http://127.0.0.1/callback", "", key);
    struct mg_string_list sl = {0};
    mg_string_list_add(&sl, "mcp:read");
    char *mixed = consent_cookie_write(secret, sizeof(secret), &as, key, &sl, later);
    mg_string_list_clear(&sl);
    consent_approvals_clear(&as);
    seed(dir, "expired-and-current.txt", mixed);

    char *full = remember(21, clients, "mcp:tools", later);
    seed(dir, "twenty-one-clients.txt", full);

    /* Long scopes: eight approvals do not fit CONSENT_COOKIE_MAX, the oldest are left out. */
    struct strbuf big = STRBUF_INIT;
    for (int i = 0; i < 12; i++)
        strbuf_printf(&big, "%sscope:with-a-rather-long-name-%02d", i ? " " : "", i);
    char *near = remember(8, clients, strbuf_str(&big), later);
    seed(dir, "near-max.txt", near);
    strbuf_release(&big);

    /* Entries no writer makes, signed so the parser reads them. */
    char *odd_entries = sign("short~~1,AAAAAAAAAAAAAAAAAAAAAA~!!~5,AAAAAAAAAAAAAAAAAAAAAA~bWNw~,"
                             "BBBBBBBBBBBBBBBBBBBBBB~YQBi~18446744073709551616,"
                             "CCCCCCCCCCCCCCCCCCCCCC~IGEgIGIg~-1,,"
                             "DDDDDDDDDDDDDDDDDDDDDD~~ 1800000000,"
                             "EEEEEEEEEEEEEEEEEEEEEE~YSBh~1800000000~x");
    seed(dir, "odd-entries-signed.txt", odd_entries);

    strbuf_truncate(&sb, 0);
    strbuf_printf(&sb, "%s=tok-1; __Host-%s=tok-2; %sx=tok-3; " COOKIE "=no.mac", csrf, csrf, csrf);
    seed(dir, "csrf-lookalikes.txt", strbuf_str(&sb));
    seed(dir, "unsigned.txt", COOKIE "=AAAAAAAAAAAAAAAAAAAAAA~bWNwOnRvb2xz~9999999999");
    seed(dir, "empty.txt", "");

    strbuf_release(&sb);
    free(one);
    free(three);
    free(none);
    free(expired);
    free(mixed);
    free(full);
    free(near);
    free(odd_entries);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("MCPGATE_FUZZ_WRITE_SEEDS");
    if (dir != NULL) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}
