# comfy-sidecar: plain, non-recursive Makefile.
#   make            build ./comfy-sidecar
#   make test       every test (unit, emulator, integration); last line "N passed, N failed"
#   make sanitize   the whole suite again with ASan + UBSan builds
#   make run        install what is missing, build, start the emulator and the sidecar
#   make deps       install the Debian packages the build, tests and `make run` need
#   make bench      measure latency, memory, CPU and throughput; writes BENCHMARKS.md
#   make fuzz       run each libFuzzer harness for FUZZ_SECONDS (default 60)
#   make soak       10,000 requests with faults injected: flat memory, nothing lost
#   make valgrind   part of the integration suite under valgrind
#   V=1             show the commands

PKGS    := libevent jansson libcurl libwebsockets libcrypto
# libvips is loaded at run time by src/convert.c (dlopen): headers only here.
VIPS_CFLAGS := $(shell pkg-config --cflags vips 2>/dev/null)
CC      ?= cc
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wmissing-declarations -Wformat=2 -Wpointer-arith -Wvla -fno-common
ifeq ($(CI),true)
WARN    += -Werror
endif
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(VIPS_CFLAGS)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lb64 -lpthread -lm
# GnuTLS (loaded by Debian's libcurl via librtmp, never used) looks this up
# in the program to skip its own initialisation: see src/mem.c.
# (Not in LDFLAGS, which `make sanitize` sets on the command line.)
EXPORTS := -Wl,--export-dynamic-symbol=_gnutls_global_init_skip

SRC     := src/main.c src/config.c src/log.c src/util.c src/utf8.c src/b64.c src/request.c \
           src/httpc.c src/comfy_ws.c src/job.c src/life.c src/supervisor.c src/api.c \
           src/render.c src/webhook.c src/template.c src/openapi.c \
           src/workflows.c src/comfy_msg.c src/metrics.c src/salad.c src/media.c \
           src/convert.c src/mem.c
LIBSRC  := $(filter-out src/main.c,$(SRC))
UNITSRC := test/unit/unit_main.c test/unit/test_config.c test/unit/test_b64.c \
           test/unit/test_request.c test/unit/test_template.c test/unit/test_openapi.c \
           test/unit/test_mem.c

BUILD   ?= build/release
OBJ     := $(SRC:%.c=$(BUILD)/%.o)
UNITOBJ := $(UNITSRC:%.c=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,src/config.c src/log.c src/util.c src/utf8.c src/b64.c src/request.c src/template.c src/openapi.c src/comfy_msg.c src/convert.c src/mem.c src/metrics.c)

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all test unit sanitize run deps clean bench fuzz soak valgrind
all: comfy-sidecar

comfy-sidecar: $(BUILD)/comfy-sidecar
	$(Q)cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/comfy-sidecar: $(OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $(EXPORTS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit-tests: $(UNITOBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $(EXPORTS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -Isrc -c -o $@ $<

unit: $(BUILD)/unit-tests
	$(Q)$(BUILD)/unit-tests

test: deps comfy-sidecar $(BUILD)/unit-tests
	$(Q)UNIT_BIN=$(BUILD)/unit-tests SIDECAR_BIN=$(CURDIR)/comfy-sidecar bash test/run.sh

# The same suite with AddressSanitizer and UndefinedBehaviorSanitizer: the
# sidecar under test and the unit tests are the instrumented builds.
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize:
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SAN)" \
	    LDFLAGS="$(SAN)" build/asan/comfy-sidecar build/asan/unit-tests
	$(Q)ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    UNIT_BIN=build/asan/unit-tests SIDECAR_BIN=$(CURDIR)/build/asan/comfy-sidecar \
	    bash test/run.sh

deps:
	$(Q)bash scripts/install-deps.sh

run: deps
	$(Q)$(MAKE) --no-print-directory comfy-sidecar
	$(Q)bash scripts/run-demo.sh

bench: comfy-sidecar
	$(Q)bash bench/run.sh

FUZZ_SECONDS ?= 60
fuzz:
	$(Q)bash test/fuzz/run.sh fuzz $(FUZZ_SECONDS)

soak: comfy-sidecar
	$(Q)bash test/soak/run.sh

valgrind: comfy-sidecar
	$(Q)bash test/soak/valgrind.sh

clean:
	rm -rf build comfy-sidecar

-include $(OBJ:.o=.d) $(UNITOBJ:.o=.d)
