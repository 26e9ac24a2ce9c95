# confbus — the two commands a new machine needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift
SWIFT_JOBS ?= $(shell nproc)

.PHONY: run test bench build release services stop clean screenshots

## Install what is missing, start PostgreSQL and mosquitto on loopback, build, and run confbus
## on the example tree in config/.
run: build
	@scripts/with-services scripts/run-example

## The same bootstrapping, then every test (unit, the JSON-Schema-Test-Suite, integration), then the
## heavy ones on their own: the multi-machine layout (FailoverTests: PostgreSQL primary and standby,
## several nodes and brokers), the console in a headless Chromium (ConsoleBrowserTests) and the flags'
## ten thousand evaluations against a node (FlagsTests). Beside every other suite, their processes and
## requests would only test this machine's two cores, and starve the suites that time a rate or a bake;
## so they run one test at a time.
ALONE := FailoverTests|ConsoleBrowserTests|FlagsTests
test:
	@CONFBUS_SERVICES_FRESH=1 scripts/with-services bash -c '$(SWIFT) test -j $(SWIFT_JOBS) --skip "$(ALONE)" && $(SWIFT) test -j $(SWIFT_JOBS) --no-parallel --filter "$(ALONE)"'

## Speed and memory figures (release build).
bench:
	@scripts/bootstrap
	@scripts/bench

## The console's screenshots in docs/console/, taken by its browser tests in a headless Chromium.
screenshots:
	@CONFBUS_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console scripts/with-services $(SWIFT) test -j $(SWIFT_JOBS) --filter ConsoleBrowserTests

build:
	@scripts/bootstrap
	$(SWIFT) build -j $(SWIFT_JOBS)

release:
	@scripts/bootstrap
	$(SWIFT) build -c release -j $(SWIFT_JOBS)

## Start the private services and leave them running (`make stop` ends them).
services:
	@scripts/bootstrap
	@scripts/services start
	@scripts/services env

stop:
	@scripts/services stop

clean:
	@scripts/services stop || true
	rm -rf .build
