#!/usr/bin/env bash
# Render a robustness report in a headless browser and save a PNG screenshot, to check by eye that
# the HTML opens from disk with no server and no network (plots are inline base64 PNGs).
#
# Usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
#   e.g. .venv/bin/robustune report runs/demo/erm runs/demo/gfn --out /tmp/report.html
#        scripts/screenshot_report.sh /tmp/report.html /tmp/report.png 1200x1600
# Needs Debian's chromium: apt-get update && apt-get install -y chromium
# Network access is switched off for the page (--disable-background-networking, and a proxy that
# goes nowhere), so a report that needed the network would render broken images.
set -euo pipefail
report="${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}"
out="${2:-${report%.*}.png}"
size="${3:-1200x1600}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [[ -z "$browser" ]]; then
  echo "chromium not found: apt-get update && apt-get install -y chromium" >&2
  exit 2
fi
abs="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
  --proxy-server="http://127.0.0.1:9" --hide-scrollbars \
  --screenshot="$out" --window-size="${size/x/,}" "file://$abs" 2>/dev/null
test -s "$out"
echo "screenshot: $out"
