#!/usr/bin/env bash
# make test: set up what is missing, build, run every test. The closing line is swift test's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
GEMMA_MODEL=$(gemma_model_path)
export GEMMA_MODEL GEMMA_VENV
# Release build: the model tests run real forward passes.
SWIFT_TEST_FLAGS=$GEMMA_SWIFT_FLAGS
echo "== building (swift build $SWIFT_TEST_FLAGS --build-tests)"
start=$(date +%s)
swift build $SWIFT_TEST_FLAGS --build-tests
echo "== built in $(( $(date +%s) - start )) s"
GEMMA_BIN_DIR=$(swift build $SWIFT_TEST_FLAGS --show-bin-path)
export GEMMA_BIN_DIR
swift test $SWIFT_TEST_FLAGS --skip-build ${SWIFT_TEST_FILTER:+--filter "$SWIFT_TEST_FILTER"}
