-- wrk script for the request-throughput and large-payload scenarios: tools/call on open MCP
-- sessions (echo with a short text, echo with a text of BENCH_BYTES bytes, or big_line).
--
-- Run with as many threads as connections (wrk -t C -c C): each thread then has exactly one
-- keep-alive connection and one session, and sends its next request only after the previous
-- answer is complete, as an MCP client does. The sessions are opened before (bench/drive.mjs:
-- initialize + notifications/initialized) and passed in the environment:
--   BENCH_SIDS   comma-separated Mcp-Session-Id values, one per thread
--   BENCH_PATH   the MCP endpoint path (/mcp)
--   BENCH_AUTH   an Authorization header value, or empty
--   BENCH_RUN    a prefix that makes JSON-RPC ids unique in the session across runs
--   BENCH_TEXT   the echo payload (plain ASCII, no quotes)
--   BENCH_TOOL   "echo" (default) or "big_line"
--   BENCH_ECHO_ARG     the name of echo's argument: "text" (default, whoami-server) or
--                      "message" (server-everything)
--   BENCH_ECHO_PREFIX  what echo's answer puts before the text: "" (default) or "Echo: "
--   BENCH_BYTES  when set: echo sends a text of that many "x" (generated here), big_line asks
--                for bytes=BENCH_BYTES; either way the answer must hold that text whole
-- Every answer is checked (HTTP 200 and the expected text, whole, in a result); done() prints
-- one line "BENCH_JSON {...}" with the counts, the bytes sent and received (bodies), and the
-- latency percentiles in microseconds.

local sids = {}
for s in string.gmatch(os.getenv("BENCH_SIDS") or "", "[^,]+") do
    table.insert(sids, s)
end
local threads = {}

function setup(thread)
    local n = #threads + 1
    if sids[n] == nil then
        error("echo.lua: more threads than sessions in BENCH_SIDS")
    end
    thread:set("sid", sids[n])
    thread:set("tno", n)
    table.insert(threads, thread)
end

function init(args)
    path = os.getenv("BENCH_PATH") or "/mcp"
    run = (os.getenv("BENCH_RUN") or "r") .. "-" .. tno .. "-"
    tool = os.getenv("BENCH_TOOL") or "echo"
    local nbytes = tonumber(os.getenv("BENCH_BYTES") or "")
    text = os.getenv("BENCH_TEXT") or "hello"
    if nbytes then
        text = string.rep("x", nbytes)
    end
    if tool == "big_line" then
        call_args = '{"bytes":' .. (nbytes or 0) .. '}'
    else
        call_args = '{"' .. (os.getenv("BENCH_ECHO_ARG") or "text") .. '":"' .. text .. '"}'
    end
    expect = '"text":"' .. (tool == "echo" and os.getenv("BENCH_ECHO_PREFIX") or "") .. text .. '"'
    headers = {
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json, text/event-stream",
        ["Mcp-Session-Id"] = sid,
        ["MCP-Protocol-Version"] = "2025-11-25",
    }
    local auth = os.getenv("BENCH_AUTH") or ""
    if auth ~= "" then
        headers["Authorization"] = auth
    end
    n = 0
    bad = 0
    tx = 0
    rx = 0
    first_bad = ""
end

function request()
    -- JSON-RPC ids must not repeat within a session (MCP basic: requests), hence one per call.
    n = n + 1
    local body = '{"jsonrpc":"2.0","id":"' .. run .. n ..
        '","method":"tools/call","params":{"name":"' .. tool .. '","arguments":' .. call_args .. '}}'
    tx = tx + #body
    return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
    rx = rx + #(body or "")
    if status ~= 200 or not string.find(body, '"result"', 1, true)
        or not string.find(body, expect, 1, true) then
        bad = bad + 1
        if first_bad == "" then
            first_bad = status .. " " .. string.sub(body or "", 1, 200)
        end
    end
end

local function jstr(s)
    return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
    local bad_total, example, tx_total, rx_total = 0, "", 0, 0
    for _, t in ipairs(threads) do
        bad_total = bad_total + (t:get("bad") or 0)
        tx_total = tx_total + (t:get("tx") or 0)
        rx_total = rx_total + (t:get("rx") or 0)
        local fb = t:get("first_bad") or ""
        if example == "" then example = fb end
    end
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
        '"max_us":%d,"bad":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"status_err":%d,' ..
        '"timeouts":%d,"tx_bytes":%.0f,"rx_bytes":%.0f,"example_bad":%s}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, bad_total, e.connect, e.read, e.write, e.status,
        e.timeout, tx_total, rx_total, jstr(example)))
end
