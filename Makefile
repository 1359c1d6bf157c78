# qfetch: plain GNU make, no configure step. Outputs go to $(BUILD); `make asan` uses build/asan.
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
LDLIBS_SSL = -lssl -lcrypto
# The qfetch command links OpenSSL's static archives (libssl-dev) and glibc shared: relocating
# libcrypto.so at every start was 1.2 ms of a 7 ms cold run, and its mapped pages 1.3 MB of
# peak RSS. The archives are prerequisites, so after a Debian OpenSSL update the next make relinks.
# SSL_LINK=shared links the shared libraries instead; libqfetch.a users link as they choose.
SSL_LINK ?= static
ifeq ($(SSL_LINK),shared)
CLI_LDLIBS_SSL = $(LDLIBS_SSL)
SSL_ARCHIVES   =
else
CLI_LDLIBS_SSL = -Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic -ldl -pthread
SSL_ARCHIVES   = $(wildcard $(shell $(CC) -print-file-name=libssl.a) \
                            $(shell $(CC) -print-file-name=libcrypto.a))
endif
PY        ?= /usr/bin/python3
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC = $(wildcard engine/*.c tls/*.c parser/*.c)
CLI_SRC = $(wildcard cli/*.c)
LLHTTP_OBJ = $(addprefix $(BUILD)/llhttp-strict/,llhttp.o api.o http.o)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LLHTTP_OBJ)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_TESTS = $(patsubst tests/%.c,$(BUILD)/test/%,$(wildcard tests/test_*.c))

.PHONY: all deps deps-test test unit integration check-layers asan valgrind demo bench clean
all: deps $(BUILD)/qfetch $(BUILD)/libqfetch.a

# Installs missing Debian packages once per build dir; delete the stamp to re-check.
deps: $(BUILD)/.deps-build
deps-test: $(BUILD)/.deps-test
$(BUILD)/.deps-%: .ci/deps
	@mkdir -p $(@D)
	@.ci/deps $*
	@touch $@

$(BUILD)/%.o: %.c | $(BUILD)/.deps-build
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# llhttp's generated C is not ours: build it without our warnings, never copy it in.
$(BUILD)/llhttp-strict/%.o: $(LLHTTP_SRC)/%.c | $(BUILD)/.deps-build
	@mkdir -p $(@D)
	$(CC) -std=c11 $(LLHTTP_FLAGS) -I$(LLHTTP_INC) $(OPT) $(SAN) -w $(CFLAGS) -c $< -o $@

$(BUILD)/libqfetch.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/qfetch: $(CLI_OBJ) $(BUILD)/libqfetch.a $(SSL_ARCHIVES)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libqfetch.a $(CLI_LDLIBS_SSL) $(LDFLAGS)

$(BUILD)/test/%.o: tests/%.c | $(BUILD)/.deps-test
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DQF_TEST -c $< -o $@

$(BUILD)/test/test_%: $(BUILD)/test/test_%.o $(BUILD)/test/testutil.o $(BUILD)/libqfetch.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS_SSL) $(LDFLAGS)

# The command's own parts (not in the library) that unit tests reach.
$(BUILD)/test/test_cli: $(BUILD)/test/test_cli.o $(BUILD)/cli/out.o $(BUILD)/cli/args.o \
                        $(BUILD)/libqfetch.a
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
integration: all
certs: $(BUILD)/test/certs/.done
$(BUILD)/test/certs/.done: tests/gen_certs.sh | $(BUILD)/.deps-test
	tests/gen_certs.sh $(abspath $(BUILD)/test/certs)
	@touch $@

# Every suite of the project, then the sanitizer build of the same suites; last line N passed, M failed.
test: deps-test check-layers
	@$(MAKE) --no-print-directory all unit certs examples
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all unit examples
	@$(MAKE) --no-print-directory BUILD=build/clang CC=clang all unit examples
	@$(PY) tests/run.py --build $(BUILD) --asan-build build/asan --clang-build build/clang

asan: deps-test
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all unit certs examples
	@$(PY) tests/run.py --build build/asan --no-valgrind

demo: all certs
	@$(PY) tests/demo.py --build $(BUILD)

clean:
	rm -rf build

# Fragments owned by their folders: bench/bench.mk, tests/fuzz/fuzz.mk, examples/examples.mk.
-include $(wildcard bench/*.mk tests/fuzz/*.mk examples/*.mk)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:
