#!/usr/bin/env bash
# MCP conformance and Inspector checks for the Streamable HTTP transport (and the Inspector over stdio).
#
#   npm run conformance        (or: bash conformance/run.sh)
#
# 1. Runs @modelcontextprotocol/conformance (active suite) against a fresh server on a free loopback
#    port, failing on any failure not in conformance/baseline.yml and on any baseline entry that now
#    passes. The server runs without a token: the suite cannot send one, and its DNS-rebinding
#    scenario is defined for unauthenticated loopback servers.
# 2. Lists the tools with the MCP Inspector CLI over HTTP (with a bearer token) and over stdio.
#
# Needs only the npm registry. The conformance CLI needs Node >= 22: a Node 22 from the `node`
# package is put on PATH for those commands alone (npx -p node@22); the project stays on Node 20.
# No opencode is needed (no task is launched): the server is pointed at an address nobody serves.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE="@modelcontextprotocol/conformance@0.1.16"
INSPECTOR="@modelcontextprotocol/inspector@2.12.0"
NODE22="node@22"
GENERIC="server-initialize ping logging-set-level tools-list resources-subscribe resources-unsubscribe server-sse-multiple-streams dns-rebinding-protection"
OPENCODE_URL="http://127.0.0.1:9"
# The project's own Node, by path: inside `npx -p node@22`, plain `node` is Node 22, for which the
# installed native modules (better-sqlite3) are not built.
NODE="$(command -v node)"
TOKEN="conformance-$(node -e 'process.stdout.write(require("node:crypto").randomBytes(16).toString("hex"))')"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for scenario in $GENERIC; do
  if grep -Eq "^\s*-\s*${scenario}\s*$" conformance/baseline.yml; then
    echo "conformance/baseline.yml lists the generic scenario ${scenario}: it must pass, not be an expected failure" >&2
    exit 1
  fi
done

npm run build --silent

# Starts the server over HTTP on a free port with the given extra arguments; sets $url.
start_http() {
  local name="$1"
  shift
  BACKGROUND_AGENTS_LOG_LEVEL=info "$NODE" dist/cli.js --transport http --port 0 --opencode-url "$OPENCODE_URL" \
    --directory "$work" --data-dir "$work/data-$name" "$@" 2>"$work/$name.log" &
  pids+=("$!")
  url=""
  for _ in $(seq 1 100); do
    url="$(grep -o '"message":"serving MCP over Streamable HTTP","url":"[^"]*"' "$work/$name.log" | head -1 | sed 's/.*"url":"//; s/"$//')" || true
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "the $name server did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# Checks that an Inspector tools/list output names our three tools.
expect_tools() {
  node -e '
    const out = require("node:fs").readFileSync(process.argv[1], "utf8");
    const names = JSON.parse(out.slice(out.indexOf("{"), out.lastIndexOf("}") + 1)).tools.map((t) => t.name).sort().join(",");
    if (names !== "background_cancel,background_output,background_task") { console.error(`unexpected tools: ${names}`); process.exit(1); }
    console.log(`${process.argv[2]}: tools/list OK (${names})`);
  ' "$1" "$2"
}

echo "== conformance ($CONFORMANCE, active suite) =="
start_http conformance
# The suite's own tallies count the baseline's expected failures as "failed"; they are reworded so that
# a reader of the log (or CI, which reads "N passed, N failed" lines) does not take them for test failures.
# The suite's exit code, kept by pipefail, is what decides.
npx --yes -p "$NODE22" -p "$CONFORMANCE" -- conformance server --url "$url" --suite active \
  --expected-failures conformance/baseline.yml -o "$work/results" 2>&1 |
  sed -E 's/([0-9]+) passed, ([0-9]+) failed/\1 checks passing, \2 not passing (expected: see the baseline)/'

echo "== MCP Inspector CLI ($INSPECTOR) =="
start_http inspector --token "$TOKEN"
npx --yes -p "$NODE22" -p "$INSPECTOR" -- mcp-inspector --cli "$url" --transport http \
  --header "Authorization: Bearer $TOKEN" --method tools/list >"$work/inspector-http.json"
expect_tools "$work/inspector-http.json" "Inspector over HTTP"
npx --yes -p "$NODE22" -p "$INSPECTOR" -- mcp-inspector --cli "$NODE" dist/cli.js --opencode-url "$OPENCODE_URL" \
  --directory "$work" --data-dir "$work/data-stdio" --method tools/list >"$work/inspector-stdio.json" 2>"$work/inspector-stdio.log"
expect_tools "$work/inspector-stdio.json" "Inspector over stdio"
