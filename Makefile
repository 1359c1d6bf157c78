# qfetch: plain GNU make, no configure step. Outputs go to $(BUILD); `make asan` uses build/asan.
#   make / make all   the command and libqfetch.a        make demo    the seed's run, locally
#   make check        build, unit tests, layer check      make test    everything CI runs
#   make asan         the suites under ASan+UBSan         make bench   the benchmarks
#   make fresh-check  a clean clone's first `make demo` on a machine without llhttp and jsmn

# The goals above (but fresh-check) first install the Debian packages that are missing
# (.ci/deps), then run make again for the real work. GNU make lists a directory once and keeps
# the list: a make that started before node-llhttp was installed never sees
# /usr/share/llhttp/llhttp.c ("No rule to make target 'build/llhttp/llhttp.o'"). The second
# make reads its rules after the packages exist; QF_DEPS_DONE, a command-line variable, reaches
# every make below it through MAKEFLAGS, so they forward nothing.
QF_GOALS = all demo check test asan bench
goals   := $(or $(MAKECMDGOALS),all)
ifeq ($(QF_DEPS_DONE),)
forward := $(filter $(QF_GOALS),$(goals))
endif

ifneq ($(forward),)
deps_level := $(strip $(if $(filter bench,$(goals)),bench,$(if $(filter check test asan,$(goals)),\
              test,$(if $(filter demo,$(goals)),demo,build))))
.PHONY: $(goals)
$(firstword $(goals)):
	@.ci/deps $(deps_level)
	@$(MAKE) --no-print-directory QF_DEPS_DONE=1 $(goals)
$(filter-out $(firstword $(goals)),$(goals)): $(firstword $(goals))
	@:
else
BUILD  ?= build
CC     ?= cc
OPT    ?= -O2 -g
WERROR ?= -Werror
WARN    = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 $(WERROR)
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
# Strict llhttp: its loose build skips the two bytes after chunk data unseen and takes a bare
# CR for a line end. The objects' directory names the mode, so loose objects are never reused.
LLHTTP_FLAGS = -DLLHTTP_STRICT_MODE=1
QF_CFLAGS  = -std=c11 -D_GNU_SOURCE -Iinclude -I. -I$(LLHTTP_INC) $(OPT) $(WARN) -MMD -MP $(SAN)
ALL_CFLAGS = $(QF_CFLAGS) $(CFLAGS)
# What linking libqfetch.a takes: OpenSSL, nghttp2, c-ares, and zlib for compressed responses (the
# bench/ and examples/ fragments use this name too).
LDLIBS_SSL = -lssl -lcrypto -lnghttp2 -lcares -lz
# The qfetch command links OpenSSL's static archives (libssl-dev) and glibc shared: relocating
# libcrypto.so at every start cost a visible share of a cold run and of its peak RSS (figures in
# bench/RESULTS.md). The archives are prerequisites: after an OpenSSL update the next make relinks.
# SSL_LINK=shared links the shared libraries instead; libqfetch.a users link as they choose.
SSL_LINK ?= static
# zlib goes in the same way when zlib1g-dev has its archive, else shared.
ZLIB_ARCHIVE := $(wildcard $(shell $(CC) -print-file-name=libz.a))
ifeq ($(SSL_LINK),shared)
CLI_LDLIBS_SSL = $(LDLIBS_SSL)
SSL_ARCHIVES   =
else ifeq ($(ZLIB_ARCHIVE),)
CLI_LDLIBS_SSL = -Wl,-Bstatic -lssl -lcrypto -lnghttp2 -lcares -Wl,-Bdynamic -lz -ldl -pthread
else
CLI_LDLIBS_SSL = -Wl,-Bstatic -lssl -lcrypto -lnghttp2 -lcares -lz -Wl,-Bdynamic -ldl -pthread
endif
ifneq ($(SSL_LINK),shared)
SSL_ARCHIVES   = $(wildcard $(shell $(CC) -print-file-name=libssl.a) \
                            $(shell $(CC) -print-file-name=libcrypto.a)) $(ZLIB_ARCHIVE)
endif
PY        ?= /usr/bin/python3
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC = $(wildcard engine/*.c tls/*.c parser/*.c)
CLI_SRC = $(wildcard cli/*.c)
LLHTTP_OBJ = $(addprefix $(BUILD)/llhttp-strict/,llhttp.o api.o http.o)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LLHTTP_OBJ)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_TESTS = $(patsubst tests/%.c,$(BUILD)/test/%,$(wildcard tests/test_*.c))

.PHONY: all deps deps-test test unit check check-layers asan demo bench fresh-check clean
all: $(BUILD)/qfetch $(BUILD)/libqfetch.a

# For the targets the top list does not forward (the folders' fragments name these as
# prerequisites): .ci/deps at that level, once per make. No stamp file, so a package removed
# since (make fresh-check does) is noticed.
deps: $(BUILD)/.deps-build
deps-test: $(BUILD)/.deps-test
$(BUILD)/.deps-%:
	@.ci/deps $*

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# llhttp's generated C is not ours: build it without our warnings, never copy it in.
$(BUILD)/llhttp-strict/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 $(LLHTTP_FLAGS) -I$(LLHTTP_INC) $(OPT) $(SAN) -w $(CFLAGS) -c $< -o $@

$(BUILD)/libqfetch.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/qfetch: $(CLI_OBJ) $(BUILD)/libqfetch.a $(SSL_ARCHIVES)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libqfetch.a $(CLI_LDLIBS_SSL) $(LDFLAGS)

# Unit tests link a library of their own: libqfetch.a's objects, but engine/alloc.c built with
# QF_ALLOC_HOOKS, which counts allocations and fails a chosen one. The shipped library keeps no
# such global state (two threads each running a client would race on it).
TEST_LIB = $(BUILD)/test/libqfetch-hooks.a
$(TEST_LIB): $(filter-out $(BUILD)/engine/alloc.o,$(LIB_OBJ)) $(BUILD)/test/engine/alloc.o
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/test/engine/alloc.o: engine/alloc.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DQF_ALLOC_HOOKS -c $< -o $@

$(BUILD)/test/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DQF_ALLOC_HOOKS -c $< -o $@

$(BUILD)/test/test_%: $(BUILD)/test/test_%.o $(BUILD)/test/testutil.o $(TEST_LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS_SSL) $(LDFLAGS)

# The command's own parts (not in the library) that unit tests reach.
$(BUILD)/test/test_cli $(BUILD)/test/test_cli_stream: $(BUILD)/test/%: $(BUILD)/test/%.o \
                        $(BUILD)/cli/out.o $(BUILD)/cli/args.o $(TEST_LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS_SSL) $(LDFLAGS)

# Dependency direction: parser/ and tls/ never see engine/; parser/ never sees sockets or
# OpenSSL; tls/ never sees HTTP; cli/ only uses include/qfetch.h.
check-layers:
	@fail=0; \
	if grep -nE '#include *[<"](engine/|tls/|openssl/|sys/socket|sys/epoll|netinet/|arpa/)' parser/*.[ch]; then echo "check-layers: parser/ includes sockets, TLS or engine" >&2; fail=1; fi; \
	if grep -nE '#include *[<"](engine/|parser/|llhttp|jsmn)' tls/*.[ch]; then echo "check-layers: tls/ includes HTTP or engine" >&2; fail=1; fi; \
	if grep -nE '#include *"' cli/*.[ch] | grep -vE '"(qfetch\.h|cli/[a-z_]+\.h)"'; then echo "check-layers: cli/ reaches past include/qfetch.h" >&2; fail=1; fi; \
	if grep -nE '#include *[<"](openssl/|llhttp|jsmn)' include/qfetch.h; then echo "check-layers: public header exposes a dependency" >&2; fail=1; fi; \
	if [ $$fail -eq 0 ]; then echo "check-layers: ok"; fi; exit $$fail

unit: $(UNIT_TESTS)
certs: $(BUILD)/test/certs/.done
$(BUILD)/test/certs/.done: tests/gen_certs.sh
	tests/gen_certs.sh $(abspath $(BUILD)/test/certs)
	@touch $@

# The daily check, in seconds: the build, every cmocka binary, the layer rules.
check: all unit certs check-layers
	@$(PY) tests/run.py --build $(BUILD) --unit-only

# Every suite of the project, then the sanitizer build of the same suites, and fresh-check;
# last line N passed, M failed, K skipped.
test: check-layers
	@$(MAKE) --no-print-directory all unit certs examples
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all unit examples
	@$(MAKE) --no-print-directory BUILD=build/clang CC=clang all unit examples
	@$(PY) tests/run.py --build $(BUILD) --asan-build build/asan --clang-build build/clang \
	    --fresh-check

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all unit certs examples
	@$(PY) tests/run.py --build build/asan --no-valgrind

demo: all certs
	@$(PY) tests/demo.py --build $(BUILD)

# A newcomer's first run, as CI can test it: .ci/fresh-check removes node-llhttp and libjsmn-dev,
# runs `make demo` once in a clone of the committed HEAD (uncommitted edits are not in it) and
# requires exit 0 and the eight seed prices. make test runs it alone, after its builds and
# before its suites.
fresh-check:
	@.ci/fresh-check

clean:
	rm -rf build

# Fragments owned by their folders: bench/bench.mk, tests/fuzz/fuzz.mk, examples/examples.mk.
-include $(wildcard bench/*.mk tests/fuzz/*.mk examples/*.mk)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:

endif # forward
