#!/bin/sh
# Writes the seed corpora of tests/fuzz/corpus/ (committed; run again after a
# format or fixture change). Seeds are small realistic inputs, one per case
# worth reaching, named for what they are. Files named crash-* are inputs that
# once crashed project code: they are kept as they are, never rewritten here.
# Needs: openssl, xxd (idtoken seeds are signed with tests/fixtures/idp keys),
# and build/fuzz/fuzz_consent_cookie (`make fuzz-build`), which writes its own
# seeds signed by the real consent code.
set -eu
cd "$(dirname "$0")"
C=corpus
FIX=../fixtures/idp
CONSENT_BIN=${FUZZ_DIR:-../../build/fuzz}/fuzz_consent_cookie
if [ ! -x "$CONSENT_BIN" ]; then
    echo "gen_seeds: $CONSENT_BIN is missing: run make fuzz-build first" >&2
    exit 1
fi
# Only the corpora this script writes are regenerated (guard, http_frame and json_scan
# seeds are kept as they are); crash-* inputs always stay.
GENERATED="config form redirect_uri b64url jsonrpc_sse idtoken cimd consent_cookie"
for d in $GENERATED; do
    mkdir -p "$C/$d"
    find "$C/$d" -type f ! -name 'crash-*' -delete
done

seed() { # DIR NAME TEXT (printf format: \n, \r, \000 work)
    printf "$3" >"$C/$1/$2"
}

# ---- config: deploy/conf without comments, plus small cases ---------------
for f in ../../deploy/conf/*.yaml; do
    grep -v '^[[:space:]]*#' "$f" | cat -s >"$C/config/deploy-$(basename "$f")"
done
seed config minimal-memory.yaml 'server:\n  listen: ["127.0.0.1:8080"]\n  public_url: "http://127.0.0.1:8080"\nstore: { backend: memory }\nroutes:\n  - name: open\n    path: /mcp/open\n    auth: none\n    http: { url: "http://127.0.0.1:9000/mcp" }\n'
seed config inline-secret-clients.yaml 'server:\n  listen: ["[::1]:8443", "unix:/run/mcpgate.sock"]\n  public_url: "https://mcp.example.com"\n  trusted_proxies: [10.0.0.0/8, "::1/128", 192.168.1.1]\n  allowed_origins: ["https://app.example.com"]\n  limits: { max_body_bytes: 4MiB, max_header_bytes: 16KiB, request_timeout: 30s, max_sessions_per_user: 20 }\nstore:\n  backend: redis\n  redis: { url: "redis://127.0.0.1:6379/0", prefix: "mg:", timeout: 250ms }\nidp:\n  preset: asgardeo\n  organization: acme\n  client_id: gw\n  client_secret: "s3cret"\n  token_auth: client_secret_post\n  leeway: 60s\noauth:\n  secret: "0123456789abcdef0123456789abcdef01234567"\n  access_token_ttl: 1h\n  refresh_token_ttl: 30d\n  registration: { enabled: true, public_clients: false, rate: 10/min }\n  clients:\n    - client_id: cli\n      redirect_uris: ["http://127.0.0.1/cb", "com.example.app:/cb"]\n      auth: none\n  scopes: { "mcp:tools": "Use tools", "mcp:write": "Write" }\nroutes:\n  - name: files\n    path: /mcp/files\n    stdio:\n      command: [/usr/bin/env, files-mcp]\n      env: { ROOT: /srv }\n      env_passthrough: [HOME]\n      max_line_bytes: 1MiB\n    identity: { env: true, jwt: false, meta: true }\n    require: { scopes: ["mcp:tools"], roles: [staff] }\n    tools:\n      - { match: "delete_*", roles: [admin], scopes: ["mcp:write"] }\n      - { match: "admin_*", deny: true }\n    prompts:\n      - { match: "*", groups: [eng] }\n    resources:\n      - { match: "file:///secret/*", deny: true }\n    default: deny\nlog: { level: debug, access_log: false }\nmetrics: { enabled: true, path: /metrics }\n'
seed config env-refs.yaml 'server:\n  listen: ["127.0.0.1:${PORT:-8080}"]\n  public_url: "http://localhost:$${X}"\nstore:\n  backend: memory\n  prefix: "${EMPTY_VAR:-dflt}${UNSET_VAR:-x}"\noauth:\n  secret_file: "${FUZZ_DIR}/secret"\n'
seed config errors.yaml 'server:\n  listen: yes\n  public_url: ftp://x\n  bogus: 1\nstore: &a { backend: memory }\nlog: *a\nroutes:\n  - name: a\n    path: a/\n    stdio: { command: [] }\n  - name: a\n    path: /a\n'
seed config flow.yaml '{server: {listen: ["127.0.0.1:1"], public_url: "http://127.0.0.1:1"}, store: {backend: memory}, routes: [{name: x, path: /x, auth: none, http: {url: "http://127.0.0.1:2/"}}]}\n'
seed config tags-and-docs.yaml '%%YAML 1.1\n---\nserver: !!map\n  listen: !!seq ["127.0.0.1:1"]\n...\n---\nstore: {}\n'
seed config empty.yaml ''

# ---- form: OAuth bodies and query strings ---------------------------------
seed form token-code.txt 'grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=http%%3A%%2F%%2F127.0.0.1%%3A33418%%2Fcallback&client_id=abc&code_verifier=dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk&resource=https%%3A%%2F%%2Fmcp.example.com%%2Fmcp%%2Fwhoami'
seed form token-refresh.txt 'grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=mcp%%3Atools+mcp%%3Awrite'
seed form authorize-query.txt 'response_type=code&client_id=s6BhdRkqt3&state=xyz&redirect_uri=cursor%%3A%%2F%%2Fanysphere.cursor-retrieval%%2Foauth%%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&scope=&scope=x'
seed form odd.txt '&&=&a&b=&=c&%%41%%42=%%7e%%7E+%%2b&x=%%zz'
seed form nul-escape.txt 'token=abc%%00def&token_type_hint=refresh_token'
seed form utf8.txt 'name=%%C3%%A9t%%C3%%A9&consent=allow&csrf=Zm9v'

# ---- redirect_uri: registered <newline> presented -------------------------
seed redirect_uri loopback-port.txt 'http://127.0.0.1/callback\nhttp://127.0.0.1:51234/callback'
seed redirect_uri localhost-v6.txt 'http://localhost:8080/cb?x=1\nhttp://[::1]:9/cb?x=1'
seed redirect_uri https-exact.txt 'https://app.example.com/oauth/callback\nhttps://app.example.com/oauth/callback'
seed redirect_uri private-scheme.txt 'com.example.app:/oauth2redirect\ncom.example.app:/oauth2redirect/extra'
seed redirect_uri native-known.txt 'cursor://anysphere.cursor-retrieval/oauth/callback\nvscode://vscode.github-authentication/did-authenticate'
seed redirect_uri dangerous.txt 'javascript:alert(1)//\nhttps://user:pw@127.0.0.1:1/cb#frag'
seed redirect_uri tricky-host.txt 'http://127.0.0.1.evil.com/cb\000http://127.0.0.1@evil.com/cb'
seed redirect_uri empty-authority.txt 'https:///evil.com/cb\nHTTP://LOCALHOST:1/cb'

# ---- cimd: client_id URL <newline> document ---------------------------------
seed cimd claude-code.txt 'https://claude.ai/oauth/claude-code-client-metadata\n{"client_id":"https://claude.ai/oauth/claude-code-client-metadata","client_name":"Claude Code","redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}'
seed cimd vscode-device-code.txt 'https://vscode.dev/oauth/client-metadata.json\n{"client_id":"https://vscode.dev/oauth/client-metadata.json","client_name":"Visual Studio Code","redirect_uris":["http://127.0.0.1:33418/","https://vscode.dev/redirect"],"grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"],"token_endpoint_auth_method":"none"}'
seed cimd wrong-id.txt 'https://a.example/c.json\n{"client_id":"https://a.example/c.json/","client_name":"A","redirect_uris":["http://localhost/cb"]}'
seed cimd secret-basic.txt 'https://a.example/c.json\n{"client_id":"https://a.example/c.json","client_name":"A","redirect_uris":["http://localhost/cb"],"token_endpoint_auth_method":"client_secret_basic","client_secret":"x"}'
seed cimd cache-control.txt 'public, max-age="600", no-cache\n[]'
seed cimd dot-segments.txt 'https://a.example/x/%%2E%%2e/c.json\n{}'

# ---- b64url ------------------------------------------------------------------
seed b64url pkce-verifier.txt 'dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk'
seed b64url jwt-header.txt 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEiLCJ0eXAiOiJKV1QifQ'
seed b64url one-byte.txt 'QQ'
seed b64url two-bytes.txt 'QUI'
seed b64url noncanonical.txt 'QR'
seed b64url padded.txt 'QUI='
seed b64url std-basic.txt 'Y2xpZW50OnNlY3JldA=='
seed b64url empty.txt ''

# ---- jsonrpc_sse: SSE streams and JSON-RPC messages -------------------------
seed jsonrpc_sse tools-list-sse.txt 'event: message\nid: 1\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"},{"name":"delete_user"},{"name":"admin_reset"},{"name":"write_file"},{"name":"report_q"}],"nextCursor":"c2"}}\n\n'
seed jsonrpc_sse multi-line-crlf.txt ': keep-alive\r\n\r\nid: 7\r\nevent: message\r\ndata: {"jsonrpc":"2.0",\r\ndata:  "method":"notifications/progress","params":{"progressToken":"p1","progress":1}}\r\n\r\nretry: 1000\rdata\r\r'
seed jsonrpc_sse resources-list.json '{"jsonrpc":"2.0","id":"r-1","result":{"resources":[{"uri":"file:///secret/key","name":"k"},{"uri":"file:///pub/a"},{"uri":"https://x/y"},{"name":"no-uri"}]}}'
seed jsonrpc_sse prompts-list.json '{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"public_hello"},{"name":"team_alpha"},{"name":"other"},{"name":7}]}}'
seed jsonrpc_sse request.json '{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/call","params":{"name":"delete_user","arguments":{},"_meta":{"progressToken":42}}}'
seed jsonrpc_sse error-null-id.json '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error\\nline 2"}}'
seed jsonrpc_sse notification.txt 'data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\nid\nevent:\ndata:\ndata:\n\n'
seed jsonrpc_sse trailing-newline.txt 'data: a\ndata:\n\n'
seed jsonrpc_sse batch.json '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1.5,"result":{}}]'

# ---- idtoken: tokens over the fixture keys ------------------------------------
# Claims as in tests/fuzz/fuzz_idtoken.c: NOW = 1700000000.
ISS=https://idp.example.com/t/acme/oauth2/token
AUD=mcpgate-client
NONCE=n-0123456789
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
claims() { # EXP AUD
    printf '{"iss":"%s","sub":"user-1","aud":%s,"exp":%s,"iat":1700000000,"nonce":"%s","username":"alice","roles":["manager","staff"]}' \
        "$ISS" "$2" "$1" "$NONCE"
}
sign() { # KEYFILE ALG HEADER_JSON PAYLOAD_JSON
    h=$(printf '%s' "$3" | b64url)
    p=$(printf '%s' "$4" | b64url)
    case "$2" in
    RS256) s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" | b64url) ;;
    ES256)
        # DER ECDSA-Sig-Value -> R||S, 32 bytes each (RFC 7518 §3.4)
        s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" |
            openssl asn1parse -inform DER | awk '/INTEGER/ {sub(/.*:/, ""); printf "%064s\n", $0}' |
            tr ' ' 0 | tr -d '\n' | xxd -r -p | b64url)
        ;;
    HS256) s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -mac HMAC -macopt "key:$1" -binary |
        b64url) ;;
    none) s= ;;
    none-sig) s=c2ln ;;
    esac
    printf '%s.%s.%s' "$h" "$p" "$s"
}
good=$(claims 1700000300 "\"$AUD\"")
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1","typ":"JWT"}' "$good" >"$C/idtoken/rs256-valid.jwt"
sign "$FIX/ec1.pem" ES256 '{"alg":"ES256","kid":"ec1"}' "$good" >"$C/idtoken/es256-valid.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256"}' "$good" >"$C/idtoken/rs256-no-kid.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1"}' "$(claims 1699990000 "\"$AUD\"")" \
    >"$C/idtoken/rs256-expired.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1"}' \
    "$(claims 1700000300 "[\"$AUD\",\"other\"]")" >"$C/idtoken/rs256-aud-array-no-azp.jwt"
sign "$FIX/rsa2.pem" RS256 '{"alg":"RS256","kid":"rsa2"}' "$good" >"$C/idtoken/rs256-unknown-kid.jwt"
sign "$FIX/rsa2.pem" RS256 '{"alg":"RS256","kid":"rsa1"}' "$good" >"$C/idtoken/rs256-wrong-key.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"ES256","kid":"ec1"}' "$good" >"$C/idtoken/alg-mismatch.jwt"
sign "$(cat "$FIX/rsa1.pub.pem")" HS256 '{"alg":"HS256","kid":"rsa1"}' "$good" \
    >"$C/idtoken/hs256-confusion.jwt"
sign x none '{"alg":"none"}' "$good" >"$C/idtoken/alg-none.jwt"
sign x none-sig '{"alg":"none","kid":"rsa1"}' "$good" >"$C/idtoken/alg-none-with-sig.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1","alg":"HS256"}' "$good" \
    >"$C/idtoken/duplicate-alg.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"PS256","kid":"rsa1"}' "$good" >"$C/idtoken/ps256.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1","crit":["exp"]}' "$good" \
    >"$C/idtoken/crit.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":"rsa1","typ":"at+jwt"}' "$good" \
    >"$C/idtoken/typ-at-jwt.jwt"
sign "$FIX/rsa1.pem" RS256 '{"alg":"RS256","kid":7}' "$good" >"$C/idtoken/kid-number.jwt"
# The structured form (fuzz_idtoken.c, structured_token): header\npayload\nraw signature.
raw_sig() { # TOKEN: its signature segment as bytes
    s=${1##*.}
    pad=$(printf '%s' "$s" | awk '{n = length($0) % 4; print n ? substr("===", 1, 4 - n) : ""}')
    printf '%s%s' "$s" "$pad" | tr -- '-_' '+/' | base64 -d
}
structured() { # HEADER PAYLOAD TOKEN
    printf '%s\n%s\n' "$1" "$2"
    raw_sig "$3"
}
structured '{"alg":"RS256","kid":"rsa1","typ":"JWT"}' "$good" "$(cat "$C/idtoken/rs256-valid.jwt")" \
    >"$C/idtoken/structured-rs256-valid.bin"
structured '{"alg":"ES256","kid":"ec1"}' "$good" "$(cat "$C/idtoken/es256-valid.jwt")" \
    >"$C/idtoken/structured-es256-valid.bin"
printf '{"alg":"RS256","kid":"rsa1"}\n{"iss":"x","sub":"","aud":[],"exp":1e300}\nsig' \
    >"$C/idtoken/structured-bad-claims.bin"
printf '{"alg":"ES256"}\n{}\n' >"$C/idtoken/structured-no-kid-empty-sig.bin"
printf 'a.b' >"$C/idtoken/two-parts.jwt"
printf 'e30.e30.e30.e30' >"$C/idtoken/four-parts.jwt"
# ---- consent_cookie: Cookie headers and values, signed by consent_cookie_write ----
# The driver writes them (fuzz_consent_cookie.c, write_seeds; NOW = 1700000000).
MCPGATE_FUZZ_WRITE_SEEDS="$C/consent_cookie" "$CONSENT_BIN"
echo "seeds written to $(pwd)/$C"
