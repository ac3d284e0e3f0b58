#!/bin/bash
# The HTTP server's own CPU per request, for uvicorn (ASGI, httptools, uvloop:
# what the ingress runs on) against granian's ASGI and RSGI interfaces, each
# serving apps.py's smallest app, one at a time, wrk at 1 and 64 connections.
#   loadtest/server_floor/run.sh     (needs wrk; makes its own venv with granian in /tmp)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${SERVER_FLOOR_VENV:-/tmp/sluice-server-floor}
[ -x "$venv/bin/granian" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q granian uvicorn httptools uvloop; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'" > "$work/post.lua"
port=18801
ticks() {  # CPU ticks of a process and its children (granian's workers)
  local t=0 s
  for p in "$1" $(pgrep -P "$1" || true); do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done
  echo $t
}
cd "$here"
for name in uvicorn granian-asgi granian-rsgi; do
  case $name in
    uvicorn) "$venv/bin/python" -c "import uvicorn; uvicorn.run('apps:asgi', host='127.0.0.1', port=$port, loop='uvloop', http='httptools', log_level='error', access_log=False)" & ;;
    granian-asgi) "$venv/bin/granian" --interface asgi --host 127.0.0.1 --port $port --workers 1 --loop uvloop --log-level error --no-ws apps:asgi & ;;
    granian-rsgi) "$venv/bin/granian" --interface rsgi --host 127.0.0.1 --port $port --workers 1 --loop uvloop --log-level error --no-ws apps:rsgi & ;;
  esac
  pid=$!
  sleep 3
  for c in 1 64; do
    t=$([ $c = 1 ] && echo 1 || echo 2)
    wrk -t$t -c$c -d2s -s "$work/post.lua" "http://127.0.0.1:$port/" > /dev/null
    before=$(ticks $pid)
    out=$(wrk -t$t -c$c -d8s --latency -s "$work/post.lua" "http://127.0.0.1:$port/")
    after=$(ticks $pid)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    echo "$name c=$c  $(echo "$out" | awk '/Requests\/sec/{print $2}') requests/s  p50 $(echo "$out" | awk '/ 50%/{print $2}')  CPU $(( (after - before) * 10000000 / reqs / 1000 )) µs/request"
  done
  kill -TERM $pid; wait $pid 2>/dev/null || true
  sleep 1
done
