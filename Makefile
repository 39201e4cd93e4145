# SPDX-License-Identifier: Apache-2.0
# weft — one non-recursive Makefile for the whole tree.
#
#   make deps      install the Debian packages the build, tests and demo need
#   make all       build weft-agent, the libraries, tests and bench tools
#   make bins      only weftd, weft-agent and weft-cni
#   make test      deps + all + unit, fuzz-smoke and integration tests, then the
#                  data-path tests again on an ASan+UBSan build (build-asan/)
#   make demo      deps + all + a 2-node cluster with weft, traffic, a summary
#   make demo-multicluster  two clusters (west, east) joined by their
#                  gateways: an app calls the other cluster's service by VIP
#   make bench     micro-benchmarks, the data-plane benchmark (bench/run.py;
#                  BENCH_ARGS=--quick for the short run), the cross-cluster
#                  data plane (bench/crosscluster.py), then what a metrics
#                  scrape costs weftd (bench/scrape.py)
#   make fuzz      each libFuzzer target for FUZZ_SECONDS (default 60)
#
# Switches: V=1 (show commands), WERROR=1, SANITIZE=address,undefined

CC       ?= cc
CLANG    ?= clang
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -MMD -MP
CPPFLAGS += -Iinclude -I$(B)/gen -D_GNU_SOURCE
LDLIBS   += -lwolfssl -lcrypto -luring -lsodium -lprotobuf-c -lnghttp2 -lyaml

# CI (CI=true in its environment) builds with warnings as errors.
ifeq ($(CI),true)
WERROR   ?= 1
endif
ifeq ($(WERROR),1)
CFLAGS   += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
# To clang, an array sized by glibc's CMSG_SPACE inside a struct
# (daemon/cnisrv.c) is a GNU extension; it is a constant to gcc and to us.
CLANG_QUIET := -Wno-gnu-variable-sized-type-not-at-end
ifneq ($(findstring clang,$(CC)),)
CFLAGS   += $(CLANG_QUIET)
endif

B        := build
Q        := $(if $(V),,@)
say       = $(if $(V),,@printf '  %-7s %s\n' $(1) $(2);)

# --- protobuf (generated at build time, never committed) ---------------------
PROTOS   := proto/google/protobuf/struct.proto proto/ca.proto proto/registry.proto \
            proto/cni.proto
PROTO_C  := $(PROTOS:proto/%.proto=$(B)/gen/%.pb-c.c)
PROTO_H  := $(PROTO_C:.c=.h)
PROTO_O  := $(PROTO_C:.c=.o)

$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: proto/%.proto
	$(call say,PROTOC,$<)
	$(Q)mkdir -p $(B)/gen
	$(Q)protoc-c --proto_path=proto --c_out=$(B)/gen $<

# Every object may include generated headers; build them first.
$(B)/%.o: %.c | $(PROTO_H)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(B)/gen/%.pb-c.o: $(B)/gen/%.pb-c.c
	$(call say,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-unused-parameter -c -o $@ $<

# --- libweft: code shared by daemon and agent --------------------------------
LIB_SRC  := $(wildcard lib/*.c)
LIB_O    := $(LIB_SRC:%.c=$(B)/%.o) $(PROTO_O)
LIBWEFT  := $(B)/libweft.a

$(LIBWEFT): $(LIB_O)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# --- weft-agent -------------------------------------------------------------
AGENT_SRC  := $(filter-out agent/main.c,$(wildcard agent/*.c))
AGENT_O    := $(AGENT_SRC:%.c=$(B)/%.o)
AGENT_LIB  := $(B)/libagent.a
AGENT_BIN  := $(B)/weft-agent

$(AGENT_LIB): $(AGENT_O)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(AGENT_BIN): $(B)/agent/main.o $(AGENT_LIB) $(LIBWEFT)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljson-c

# --- weftd and weft-cni ----------------------------------------------------
# Global symbols are unique across agent/, daemon/ and cni/ (module prefix =
# file name), so tests and fuzzers can link any of the archives together.
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
DAEMON_O   := $(DAEMON_SRC:%.c=$(B)/%.o)
DAEMON_LIB := $(B)/libdaemon.a
DAEMON_BIN := $(if $(wildcard daemon/main.c),$(B)/weftd)

$(DAEMON_LIB): $(DAEMON_O)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/weftd: $(B)/daemon/main.o $(DAEMON_LIB) $(LIBWEFT)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

CNI_SRC  := $(filter-out cni/main.c,$(wildcard cni/*.c))
CNI_O    := $(CNI_SRC:%.c=$(B)/%.o)
CNI_LIB  := $(B)/libcni.a
CNI_BIN  := $(if $(wildcard cni/main.c),$(B)/weft-cni)

$(CNI_LIB): $(CNI_O)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/weft-cni: $(B)/cni/main.o $(CNI_LIB) $(LIBWEFT)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lnftables -ljson-c

# --- weftctl: the operator's CLI over the admin API (json-c for its JSON) ----
CTL_SRC  := $(wildcard ctl/*.c)
CTL_O    := $(CTL_SRC:%.c=$(B)/%.o)
CTL_BIN  := $(if $(wildcard ctl/main.c),$(B)/weftctl)

$(B)/weftctl: $(CTL_O) $(LIBWEFT)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljson-c

# --- unit tests: tests/unit/<dir>/test_*.c, one binary each -----------------
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null)
UNIT_BIN := $(UNIT_SRC:%.c=$(B)/%)

UNIT_LIBS := $(DAEMON_LIB) $(CNI_LIB) $(AGENT_LIB) $(LIBWEFT)

# Test PKI (openssl CLI certificates), shared by unit tests and bench tools.
# Named as a target so make keeps it rather than deleting an intermediate.
PKI_O    := $(B)/tests/pki.o
$(PKI_O): tests/pki.c

$(B)/tests/unit/%: $(B)/tests/unit/%.o $(PKI_O) $(UNIT_LIBS)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lnftables -ljson-c

# --- bench tools -------------------------------------------------------------
# bench/hist.c is a module, not a tool: loadgen links it (and
# tests/unit/bench/test_hist.c includes it).
BENCH_SRC := $(filter-out bench/hist.c,$(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

$(B)/bench/%: $(B)/bench/%.o $(PKI_O) $(LIBWEFT)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench/loadgen: $(B)/bench/hist.o
.SECONDARY: $(BENCH_BIN:%=%.o)

# --- test shims: LD_PRELOAD libraries the integration tests inject ---------
# Built without the sanitizer flags: they go into sanitized processes too.
SHIM_SRC := $(wildcard tests/shim/*.c)
SHIM_SO  := $(SHIM_SRC:tests/shim/%.c=$(B)/tests/shim/%.so)

$(B)/tests/shim/%.so: tests/shim/%.c
	$(call say,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -O2 -Wall -Wextra -shared -fPIC -o $@ $< -ldl

# --- fuzz targets: clang + libFuzzer, own object tree ------------------------
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_LIBS   := $(B)/fuzz/libdaemon.a $(B)/fuzz/libcni.a $(B)/fuzz/libagent.a $(B)/fuzz/libweft.a
FUZZ_FLAGS  := -O1 -g -std=gnu11 -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=all $(CLANG_QUIET)
FUZZ_SECONDS ?= 60

$(B)/fuzz/obj/%.o: %.c | $(PROTO_H)
	$(call say,CLANG,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(CPPFLAGS) $(FUZZ_FLAGS) -MMD -MP -c -o $@ $<

$(B)/fuzz/libweft.a: $(LIB_SRC:%.c=$(B)/fuzz/obj/%.o) $(PROTO_C:%.c=$(B)/fuzz/obj/%.o)
$(B)/fuzz/libagent.a: $(AGENT_SRC:%.c=$(B)/fuzz/obj/%.o)
$(B)/fuzz/libdaemon.a: $(DAEMON_SRC:%.c=$(B)/fuzz/obj/%.o)
$(B)/fuzz/libcni.a: $(CNI_SRC:%.c=$(B)/fuzz/obj/%.o)
$(FUZZ_LIBS):
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIBS)
	$(call say,FUZZLD,$@)
	$(Q)$(CLANG) $(CPPFLAGS) $(FUZZ_FLAGS) -MMD -MP -fsanitize=fuzzer -o $@ \
	    $< $(FUZZ_LIBS) $(LDLIBS) -lnftables -ljson-c

# --- top-level targets -------------------------------------------------------
.PHONY: all bins san-units deps test unit fuzz fuzz-bins fuzz-smoke demo demo-down bench clean \
	demo-multicluster demo-multicluster-down
.DEFAULT_GOAL := all

all: $(AGENT_BIN) $(DAEMON_BIN) $(CNI_BIN) $(CTL_BIN) $(UNIT_BIN) $(BENCH_BIN) $(SHIM_SO)

# Debian packages: build, tests, demo. Installed only when missing.
DEB_BUILD := build-essential pkg-config libwolfssl-dev libssl-dev liburing-dev libsodium-dev \
             libprotobuf-c-dev protobuf-c-compiler libnghttp2-dev libyaml-dev \
             libnftables-dev libjson-c-dev clang libclang-rt-14-dev
DEB_TEST  := nftables iproute2 containernetworking-plugins openssl procps \
             python3 python3-grpcio python3-protobuf python3-cryptography \
             python3-yaml protobuf-compiler socat curl python3-h2 tcpdump prometheus
# Only `make bench` needs these (bench/run.py: charts, the HAProxy baselines,
# bulk, the loadgen cross-check).
DEB_BENCH := python3-matplotlib haproxy iperf3 wrk
deps:
	$(Q)tools/deps.sh $(DEB_BUILD) $(DEB_TEST)

# The sanitizer pass of `make test` (tests/run.sh, "integration tests
# (ASan+UBSan)"): weftd, weft-agent and weft-cni built with ASan+UBSan in their
# own tree (not the unit tests and bench tools). With clang, like the fuzzers:
# gcc 12's UBSan inside ASan ignores log_path and writes its reports to stderr,
# where the test could not find them.
SAN_B  ?= build-asan
SAN_CC ?= $(CLANG)
# Unit tests that also run in that pass: the lifetimes of sessions, streams
# and their children (tests/unit/lib/test_h2conn.c resets the TCP under
# live streams 1,000 times; only ASan sees a use-after-free there).
SAN_UNIT := tests/unit/lib/test_h2conn tests/unit/lib/test_h2tun tests/unit/lib/test_listener \
            tests/unit/lib/test_chores tests/unit/lib/test_loop tests/unit/daemon/test_podsock \
            tests/unit/daemon/test_regapply \
            tests/unit/daemon/test_metrics tests/unit/lib/test_series

test: deps
	$(Q)$(MAKE) --no-print-directory all fuzz-bins
	$(Q)$(MAKE) --no-print-directory B=$(SAN_B) CC=$(SAN_CC) SANITIZE=address,undefined bins san-units
	$(Q)WEFT_SAN_BUILD=$(SAN_B) WEFT_SAN_UNIT="$(SAN_UNIT)" tests/run.sh

bins: $(AGENT_BIN) $(DAEMON_BIN) $(CNI_BIN)

san-units: $(SAN_UNIT:%=$(B)/%)

fuzz-bins: $(FUZZ_BIN)

fuzz: deps
	$(Q)$(MAKE) --no-print-directory fuzz-bins
	$(Q)for f in $(FUZZ_BIN); do \
	    n=$$(basename $$f); mkdir -p $(B)/fuzz/corpus/$$n; \
	    echo "fuzz $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) $(B)/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	      || exit 1; done

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)/usr/bin/python3 tools/demo.py

demo-down:
	$(Q)/usr/bin/python3 tools/demo.py down

demo-multicluster: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)/usr/bin/python3 tools/demo_multicluster.py

demo-multicluster-down:
	$(Q)/usr/bin/python3 tools/demo_multicluster.py down

BENCH_ARGS ?=
bench: deps
	$(Q)tools/deps.sh $(DEB_BENCH)
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(B)/bench/tlsbench
	$(Q)/usr/bin/python3 bench/agent_certs.py $(if $(findstring --quick,$(BENCH_ARGS)),2000,10000)
	$(Q)/usr/bin/python3 bench/run.py $(BENCH_ARGS)
	$(Q)/usr/bin/python3 bench/crosscluster.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,)
	$(Q)/usr/bin/python3 bench/scrape.py $(if $(findstring --quick,$(BENCH_ARGS)),--reps 1 --dur 10,)

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
