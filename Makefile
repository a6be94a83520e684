# mcpgate: OAuth 2.1 gateway for MCP servers. `make help` lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build
Q       ?= @# `make Q=` shows full command lines

PKGS    := libevent libevent_openssl libcurl jansson openssl libjwt hiredis yaml-0.1
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. $(WARN) -g -fstack-protector-strong
REL_CFLAGS  := $(BASE_CFLAGS) -O2 -D_FORTIFY_SOURCE=2
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TEST_CFLAGS := $(BASE_CFLAGS) -O1 $(SAN_FLAGS) -DMCPGATE_TESTING

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DEFS    := -DMCPGATE_VERSION='"$(VERSION)"' -DMCPGATE_GIT_REV='"$(GIT_REV)"'
# The two objects that print the revision are rebuilt when HEAD moves (the stamp
# is rewritten only when the revision differs), so --version never names an old one.
REV_STAMP := $(BUILD)/git-rev
$(shell mkdir -p $(BUILD) && { echo '$(GIT_REV)' | cmp -s - $(REV_STAMP) || echo '$(GIT_REV)' > $(REV_STAMP); })

MODULE_DIRS := common conf http store oauth proxy gateway
LIB_SRCS  := $(filter-out gateway/main.c,$(sort $(wildcard $(addsuffix /*.c,$(MODULE_DIRS)))))
HDRS      := $(wildcard $(addsuffix /*.h,$(MODULE_DIRS)))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
HELPER_SRCS := $(sort $(wildcard tests/integration/*.c))

REL_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/rel/%.o)
SAN_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/%)
HELPER_BINS := $(HELPER_SRCS:tests/integration/%.c=$(BUILD)/san/helpers/%)

.PHONY: all test unit integration demo bench soak install clean fmt fmt-check help deps layers \
        san-binary fuzz

all: mcpgate $(BUILD)/rel/examples/whoami-server ## Build mcpgate and the example server (release flags)

mcpgate: $(BUILD)/rel/mcpgate
	cp $< $@

$(BUILD)/rel/mcpgate: $(BUILD)/rel/gateway/main.o $(BUILD)/rel/libmcpgate.a
	$(CC) $(REL_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/rel/libmcpgate.a: $(REL_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/rel/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(REL_CFLAGS) $(DEFS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/rel/gateway/main.o $(BUILD)/rel/http/metrics.o: $(REV_STAMP)
$(BUILD)/san/gateway/main.o $(BUILD)/san/http/metrics.o: $(REV_STAMP)

# --- sanitizer build used by every test ---------------------------------

san-binary: $(BUILD)/san/mcpgate $(BUILD)/san/examples/whoami-server

$(BUILD)/san/mcpgate: $(BUILD)/san/gateway/main.o $(BUILD)/san/libmcpgate.a
	$(CC) $(TEST_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/san/libmcpgate.a: $(SAN_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/san/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	@echo "  CC san  $<"
	$(Q)$(CC) $(TEST_CFLAGS) $(DEFS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/san/tests/%: tests/unit/%.c $(BUILD)/san/libmcpgate.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	@echo "  TEST    $<"
	$(Q)$(CC) $(TEST_CFLAGS) $(DEFS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/san/libmcpgate.a \
	    $(PKG_LIBS) -lcmocka -lpthread -lm

$(BUILD)/san/helpers/%: tests/integration/%.c $(BUILD)/san/libmcpgate.a
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(DEFS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/san/libmcpgate.a \
	    $(PKG_LIBS) -lm

# --- examples: standalone programs, jansson only ------------------------

WHOAMI_SRCS := $(sort $(wildcard examples/whoami-server/*.c))
WHOAMI_DEPS := $(WHOAMI_SRCS) $(wildcard examples/whoami-server/*.h) Makefile
JANSSON_CFLAGS = $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS   = $(shell pkg-config --libs jansson 2>/dev/null)

$(BUILD)/rel/examples/whoami-server: $(WHOAMI_DEPS)
	@mkdir -p $(dir $@)
	@echo "  CCLD    $@"
	$(Q)$(CC) $(REL_CFLAGS) $(DEFS) $(JANSSON_CFLAGS) -o $@ $(WHOAMI_SRCS) $(JANSSON_LIBS)

$(BUILD)/san/examples/whoami-server: $(WHOAMI_DEPS)
	@mkdir -p $(dir $@)
	@echo "  CCLD san $@"
	$(Q)$(CC) $(TEST_CFLAGS) $(DEFS) $(JANSSON_CFLAGS) -o $@ $(WHOAMI_SRCS) $(JANSSON_LIBS)

# test_whoami.c includes the example's sources.
$(BUILD)/san/tests/test_whoami: $(WHOAMI_DEPS)

# --- fuzzing: libFuzzer targets with clang, apart from `make test` -------
# tests/fuzz/fuzz_<thing>.c + seeds in tests/fuzz/corpus/<thing>/; the
# project's sources are built again with clang into $(BUILD)/fuzz/.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
                -fsanitize=fuzzer-no-link,address,undefined
FUZZ_SRCS    := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(FUZZ_DIR)/obj/%.o)

.PHONY: fuzz-smoke fuzz-build

fuzz: ## Build the fuzz targets and fuzz each for FUZZ_SECONDS (default 20); fails on a crash
	@sh tests/fuzz/run.sh deps
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh fuzz $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-smoke: ## Build the fuzz targets and run each seed corpus once
	@sh tests/fuzz/run.sh deps
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh smoke $(FUZZ_DIR) $(FUZZ_NAMES)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/libmcpgate.a: $(FUZZ_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(FUZZ_DIR)/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEFS) $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libmcpgate.a $(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(DEFS) $(PKG_CFLAGS) -o $@ $< \
	    $(FUZZ_DIR)/libmcpgate.a $(PKG_LIBS) -lm

deps: ## Install the Debian packages the build, tests and demo need (idempotent)
	@sh scripts/deps.sh

unit: $(UNIT_BINS) ## Build the unit tests (ASan/UBSan)

test: deps ## Run the whole suite under ASan/UBSan; ends with "N passed, N failed"
	@$(MAKE) --no-print-directory san-binary unit $(HELPER_BINS)
	@BUILD=$(BUILD) sh tests/run.sh

demo: deps all ## Start redis, the demo IdP, an upstream and mcpgate; Ctrl-C stops all
	@sh scripts/demo.sh

soak: deps all ## Mixed load for SOAK_SECONDS (600) with Redis restarts and killed children; fails if anything leaks
	@SOAK_SECONDS=$(or $(SOAK_SECONDS),600) sh tests/soak/run.sh

bench: deps mcpgate ## Load benchmarks, side by side with peers
	@sh bench/run.sh

install: mcpgate ## Install to $(DESTDIR)$(PREFIX) (bin, share/mcpgate, systemd unit)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/mcpgate/conf
	install -m 0755 mcpgate $(DESTDIR)$(PREFIX)/bin/mcpgate
	install -m 0644 deploy/conf/*.yaml $(DESTDIR)$(PREFIX)/share/mcpgate/conf/
	@if [ -f deploy/mcpgate.service ]; then \
	    install -d $(DESTDIR)$(PREFIX)/lib/systemd/system && \
	    sed 's#/usr/local/bin/#$(PREFIX)/bin/#g' deploy/mcpgate.service \
	        >$(DESTDIR)$(PREFIX)/lib/systemd/system/mcpgate.service; fi

clean: ## Remove build output
	rm -rf $(BUILD) mcpgate

FMT_FILES = $(LIB_SRCS) gateway/main.c $(HDRS) $(UNIT_SRCS) $(HELPER_SRCS) \
            $(wildcard tests/unit/*.h examples/*/*.c tests/fuzz/*.c bench/*.c bench/*.h)

fmt: ## Format the C sources with clang-format
	clang-format -i $(FMT_FILES)

fmt-check: ## Fail when a C source is not clang-formatted
	@clang-format --dry-run --Werror $(FMT_FILES) && echo "fmt-check: ok"

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

layers: ## Check the include rules of ARCHITECTURE.md (layers, private headers, library confinement)
	@sh scripts/layers.sh
