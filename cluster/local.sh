#!/usr/bin/env bash
# A throwaway 2-node Ray cluster on this machine (head + one worker node on 127.0.0.1) for multi-node tests,
# benchmarks and `ray job submit` dry runs. It never touches other Ray instances on the machine:
#   * its own --temp-dir (default /tmp/surgmotion-ray-<port>), so its session files and its
#     `ray_current_cluster` file stay out of /tmp/ray: a plain `ray.init()` elsewhere does NOT attach to it;
#   * `down` stops exactly the processes `up` started (pids in the state file) plus their descendants
#     (Ray worker processes), by pid; never `ray stop`, which kills every Ray instance of the user.
#
#   cluster/local.sh up        # start (prints the GCS and dashboard / job addresses)
#   cluster/local.sh status    # running? which pids, nodes
#   cluster/local.sh down      # stop exactly what `up` started, then check nothing is left
#
#   RAY_AUTH_MODE=disabled RAY_ADDRESS=http://127.0.0.1:8265 ray job submit --working-dir . -- \
#       python experiments/pretrain.py
#
# Token auth: Ray >= 2.52 enables token auth on `ray start --head` when ~/.ray/auth_token exists (any earlier
# ray.init() creates it); then every client must use the same mode. This script exports RAY_AUTH_MODE=disabled
# (override: RAY_AUTH_MODE=token cluster/local.sh up) for the head, the worker and its own status checks, and
# prints the matching env for your clients (`ray job submit`, `ray status`, ray.init(address=...)).
#
# Settings (env): SURGMOTION_RAY_PORT (GCS port, default 6390; not Ray's default 6379 so it does not collide with
# other clusters), SURGMOTION_RAY_DASHBOARD_PORT (8265), SURGMOTION_RAY_HEAD_CPUS (1),
# SURGMOTION_RAY_WORKER_CPUS (1), SURGMOTION_RAY_CLIENT_PORT (port+1), SURGMOTION_RAY_HEAD_AGENT_PORT /
# SURGMOTION_RAY_WORKER_AGENT_PORT (port+2 / port+3: the nodes' dashboard agents, which serve job submission), SURGMOTION_RAY_OBJECT_STORE_MB (per node, 512),
# SURGMOTION_RAY_TEMP_DIR (/tmp/surgmotion-ray-<port>), SURGMOTION_RAY_STATE (<temp dir>/local-cluster.state),
# RAY (the ray executable; default: the repo's .venv/bin/ray, else `ray` on PATH).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${SURGMOTION_RAY_PORT:-6390}"
DASHBOARD_PORT="${SURGMOTION_RAY_DASHBOARD_PORT:-8265}"
CLIENT_PORT="${SURGMOTION_RAY_CLIENT_PORT:-$((PORT + 1))}"
# Each node's dashboard agent serves the job API on a fixed HTTP port (Ray default 52365 for every instance on
# the machine): if another Ray instance holds it, `ray job submit` fails with "No available agent to submit job".
HEAD_AGENT_PORT="${SURGMOTION_RAY_HEAD_AGENT_PORT:-$((PORT + 2))}"
WORKER_AGENT_PORT="${SURGMOTION_RAY_WORKER_AGENT_PORT:-$((PORT + 3))}"
HEAD_CPUS="${SURGMOTION_RAY_HEAD_CPUS:-1}"
WORKER_CPUS="${SURGMOTION_RAY_WORKER_CPUS:-1}"
OBJECT_STORE_MB="${SURGMOTION_RAY_OBJECT_STORE_MB:-512}"
TEMP_DIR="${SURGMOTION_RAY_TEMP_DIR:-/tmp/surgmotion-ray-${PORT}}"
STATE="${SURGMOTION_RAY_STATE:-${TEMP_DIR}/local-cluster.state}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
if [[ -z "${RAY:-}" ]]; then
  if [[ -x "${REPO_ROOT}/.venv/bin/ray" ]]; then RAY="${REPO_ROOT}/.venv/bin/ray"; else RAY="$(command -v ray || true)"; fi
fi
PY="$(dirname "${RAY}")/python"
# Job entrypoints (`ray job submit -- python ...`) run with the PATH the nodes were started with: put the venv
# that holds ray (and torch, the project) first, so their `python` is that one.
[[ -n "${RAY}" ]] && export PATH="$(dirname "${RAY}"):${PATH}"
[[ -x "${PY}" ]] || PY="$(command -v python3)"
# The cluster is ours alone: never let RAY_ADDRESS from the caller redirect `ray start`.
unset RAY_ADDRESS

log() { printf '[local.sh] %s\n' "$*" >&2; }

# Pids of live processes whose command line names our temp dir (gcs_server, raylet, dashboard, agents, monitor...).
ours_by_tempdir() {
  local pid
  for pid in $(pgrep -f -- "${TEMP_DIR}/" 2>/dev/null || true); do
    [[ "${pid}" == "$$" || "${pid}" == "${BASHPID}" ]] && continue
    # pgrep -f also matches our own pipeline/subshells; keep only non-shell processes.
    case "$(ps -o comm= -p "${pid}" 2>/dev/null || true)" in
      ""|bash|sh|pgrep|ps) continue ;;
    esac
    alive "${pid}" && echo "${pid}"
  done
}

# All descendants of the given pids (Ray worker processes are children of the raylets).
descendants() {
  local pid child
  for pid in "$@"; do
    for child in $(pgrep -P "${pid}" 2>/dev/null || true); do
      echo "${child}"
      descendants "${child}"
    done
  done
}

# alive = exists and is not a zombie (in containers pid 1 may reap killed daemons late)
alive() {
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -n "${st}" && "${st}" != Z* ]]
}

recorded_pids() { [[ -f "${STATE}" ]] && sed -n 's/^pids=//p' "${STATE}" | tr ',' ' ' || true; }

live_recorded() {
  local pid out=()
  for pid in $(recorded_pids); do alive "${pid}" && out+=("${pid}"); done
  echo "${out[*]:-}"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_up() {
  if [[ -f "${STATE}" && -n "$(live_recorded)" ]]; then
    log "already up (state ${STATE}; pids $(live_recorded))"
    print_addresses
    return 0
  fi
  [[ -n "${RAY}" && -x "${RAY}" ]] || { log "ray executable not found (set RAY=...)"; return 1; }
  local p
  for p in "${PORT}" "${DASHBOARD_PORT}" "${CLIENT_PORT}" "${HEAD_AGENT_PORT}" "${WORKER_AGENT_PORT}"; do
    if port_busy "${p}"; then log "port ${p} is in use: pick others (SURGMOTION_RAY_PORT / _DASHBOARD_PORT)"; return 1; fi
  done
  mkdir -p "${TEMP_DIR}"
  local before
  before=" $(ours_by_tempdir | tr '\n' ' ') "
  local store=$((OBJECT_STORE_MB * 1024 * 1024))
  log "starting head on 127.0.0.1:${PORT} (RAY_AUTH_MODE=${RAY_AUTH_MODE}, temp dir ${TEMP_DIR})"
  "${RAY}" start --head --node-ip-address=127.0.0.1 --port="${PORT}" \
      --dashboard-host=127.0.0.1 --dashboard-port="${DASHBOARD_PORT}" --ray-client-server-port="${CLIENT_PORT}" \
      --dashboard-agent-listen-port="${HEAD_AGENT_PORT}" \
      --num-cpus="${HEAD_CPUS}" --num-gpus=0 --object-store-memory="${store}" \
      --temp-dir="${TEMP_DIR}" --disable-usage-stats >"${TEMP_DIR}/head-start.log" 2>&1 \
    || { log "head failed to start; see ${TEMP_DIR}/head-start.log"; tail -n 20 "${TEMP_DIR}/head-start.log" >&2;
         record_and_down "${before}"; return 1; }
  log "starting worker node (${WORKER_CPUS} CPU)"
  "${RAY}" start --address="127.0.0.1:${PORT}" --node-ip-address=127.0.0.1 \
      --dashboard-agent-listen-port="${WORKER_AGENT_PORT}" \
      --num-cpus="${WORKER_CPUS}" --num-gpus=0 --object-store-memory="${store}" \
      --temp-dir="${TEMP_DIR}/worker" --disable-usage-stats >"${TEMP_DIR}/worker-start.log" 2>&1 \
    || { log "worker failed to start; see ${TEMP_DIR}/worker-start.log"; tail -n 20 "${TEMP_DIR}/worker-start.log" >&2;
         record_and_down "${before}"; return 1; }
  record "${before}"
  wait_nodes 2 60 || { log "the cluster did not reach 2 nodes"; cmd_down; return 1; }
  print_addresses
}

record() {  # state file: pids of the processes that appeared under our temp dir since `before`
  local before="$1" pid pids=()
  for pid in $(ours_by_tempdir); do
    [[ "${before}" == *" ${pid} "* ]] || pids+=("${pid}")
  done
  {
    echo "port=${PORT}"
    echo "dashboard_port=${DASHBOARD_PORT}"
    echo "temp_dir=${TEMP_DIR}"
    echo "auth_mode=${RAY_AUTH_MODE}"
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "pids=$(IFS=,; echo "${pids[*]:-}")"
  } >"${STATE}"
  log "recorded ${#pids[@]} pids in ${STATE}: ${pids[*]:-}"
}

record_and_down() { record "$1"; cmd_down || true; }

wait_nodes() {  # wait until the cluster reports $1 alive nodes (timeout $2 s)
  local want="$1" deadline=$((SECONDS + $2)) n
  while (( SECONDS < deadline )); do
    n="$(count_nodes 2>/dev/null || echo 0)"
    [[ "${n}" == "${want}" ]] && return 0
    sleep 1
  done
  return 1
}

count_nodes() {  # alive nodes, seen by a short-lived driver
  timeout 30 "${PY}" - "127.0.0.1:${PORT}" <<'EOF'
import logging, sys
import ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
ray.shutdown()
EOF
}

print_addresses() {
  if [[ -f "${STATE}" ]]; then
    PORT="$(sed -n 's/^port=//p' "${STATE}")"; DASHBOARD_PORT="$(sed -n 's/^dashboard_port=//p' "${STATE}")"
  fi
  cat <<EOF
Ray local 2-node cluster is up.
  GCS address        127.0.0.1:${PORT}        (ray.init(address="127.0.0.1:${PORT}"), ray status --address=...)
  dashboard / jobs   http://127.0.0.1:${DASHBOARD_PORT}
  clients need       export RAY_AUTH_MODE=${RAY_AUTH_MODE}
  submit a job       RAY_AUTH_MODE=${RAY_AUTH_MODE} RAY_ADDRESS=http://127.0.0.1:${DASHBOARD_PORT} ray job submit --working-dir . -- python experiments/pretrain.py
  stop               cluster/local.sh down
EOF
}

cmd_down() {
  if [[ ! -f "${STATE}" ]]; then
    log "not up (no state file ${STATE})"
    return 0
  fi
  local roots pids=() pid
  roots="$(recorded_pids)"
  # the recorded processes, anything else still running under our temp dir, and all their descendants
  for pid in ${roots} $(ours_by_tempdir); do alive "${pid}" && pids+=("${pid}"); done
  if ((${#pids[@]})); then
    for pid in $(descendants "${pids[@]}"); do pids+=("${pid}"); done
    mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -un)
    log "stopping pids: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 15)) left
    while (( SECONDS < deadline )); do
      left=""
      for pid in "${pids[@]}"; do alive "${pid}" && left+=" ${pid}"; done
      [[ -z "${left}" ]] && break
      sleep 0.5
    done
    left=""
    for pid in "${pids[@]}"; do alive "${pid}" && left+=" ${pid}"; done
    if [[ -n "${left}" ]]; then
      log "SIGKILL to:${left}"
      # shellcheck disable=SC2086
      kill -KILL ${left} 2>/dev/null || true
      sleep 1
    fi
  fi
  left=""
  for pid in ${roots}; do alive "${pid}" && left+=" ${pid}"; done
  for pid in $(ours_by_tempdir); do left+=" ${pid}"; done
  if [[ -n "${left}" ]]; then
    log "still alive:${left}"
    return 1
  fi
  rm -f "${STATE}" "${TEMP_DIR}/ray_current_cluster"
  log "down: all started processes are gone (logs kept in ${TEMP_DIR})"
}

cmd_status() {
  if [[ ! -f "${STATE}" ]]; then
    echo "down (no state file ${STATE})"
    return 1
  fi
  local live
  live="$(live_recorded)"
  if [[ -z "${live}" ]]; then
    echo "down (stale state file ${STATE}; run: cluster/local.sh down)"
    return 1
  fi
  echo "up: pids ${live} (recorded: $(recorded_pids | tr ' ' ','))"
  echo "alive nodes: $(count_nodes 2>/dev/null || echo '?')"
  print_addresses
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
