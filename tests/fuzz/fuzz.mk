# libFuzzer targets, built with clang into $(BUILD)/fuzz/ (our sources and llhttp's generated C
# compiled again with the fuzzer and sanitizer flags: gcc objects are never reused).
#   make fuzz [FUZZ_SECONDS=60]   each target in turn on a fresh copy of its corpus
#   make fuzz-quick               the same, 5 s each
#   make fuzz-long [FUZZ_SECONDS=1500] [FUZZ_RUNS=10000000]
#                                 each target, niced, until FUZZ_RUNS executions or FUZZ_SECONDS
# Crash, leak and timeout inputs land in $(BUILD)/fuzz/artifacts/; tests/fuzz/run.py prints
# one summary line per target and fails when any target found something.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR      = $(BUILD)/fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -Iinclude -I. -I$(LLHTTP_INC) -O1 -g $(WARN) -MMD -MP \
                $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(CFLAGS)
FUZZ_RUNS    ?= 10000000
FUZZ_LLHTTP   = $(addprefix $(FUZZ_DIR)/llhttp-strict/,llhttp.o api.o http.o)
FUZZ_RESPONSE_OBJ = $(addprefix $(FUZZ_DIR)/,tests/fuzz/fuzz_response.o \
    tests/fuzz/check_response.o tests/fuzz/oracle.o parser/http.o parser/inflate.o \
    parser/json.o parser/price.o parser/text.o) \
    $(FUZZ_LLHTTP)
FUZZ_ARGS_OBJ = $(addprefix $(FUZZ_DIR)/,tests/fuzz/fuzz_args.o tests/fuzz/check_args.o \
    tests/fuzz/oracle.o cli/args.o cli/out.o engine/url.o engine/alloc.o parser/price.o \
    parser/text.o)
FUZZ_BINS     = $(FUZZ_DIR)/fuzz_response $(FUZZ_DIR)/fuzz_args

.PHONY: fuzz fuzz-quick fuzz-long fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@$(PY) tests/fuzz/run.py --build $(BUILD) --seconds $(FUZZ_SECONDS) fuzz_response fuzz_args

fuzz-quick:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5

# 25 minutes each unless FUZZ_SECONDS was given; the machine is shared, so nice.
fuzz-long: fuzz-build
	@nice -n 10 $(PY) tests/fuzz/run.py --build $(BUILD) --runs $(FUZZ_RUNS) --seconds \
	    $(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),1500) \
	    fuzz_response fuzz_args

$(FUZZ_DIR)/%.o: %.c | $(BUILD)/.deps-test
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# The harness's own checks (the oracle re-parses every output) are not what is fuzzed: built
# with the sanitizers but without coverage, they neither steer the fuzzer nor slow it (the
# oracle's traced comparisons took most of fuzz_args's time).
FUZZ_HARNESS = $(addprefix $(FUZZ_DIR)/tests/fuzz/,oracle.o check_args.o check_response.o)
$(FUZZ_HARNESS): FUZZ_CFLAGS := $(filter-out -fsanitize=fuzzer-no-link,$(FUZZ_CFLAGS))

$(FUZZ_DIR)/llhttp-strict/%.o: $(LLHTTP_SRC)/%.c | $(BUILD)/.deps-test
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 $(LLHTTP_FLAGS) -I$(LLHTTP_INC) -O1 -g -w $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	    -c $< -o $@

$(FUZZ_DIR)/fuzz_response: $(FUZZ_RESPONSE_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ -lz -lm $(LDFLAGS)

$(FUZZ_DIR)/fuzz_args: $(FUZZ_ARGS_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ -lm $(LDFLAGS)

# tests/test_fuzz_regress.c replays the corpora through the same checks under `make test` (gcc,
# and the asan build). $^ lists these objects after the test library, so it is named again
# after them.
FUZZ_REGRESS_OBJ = $(BUILD)/test/fuzz/check_response.o $(BUILD)/test/fuzz/check_args.o \
    $(BUILD)/test/fuzz/oracle.o $(BUILD)/cli/args.o $(BUILD)/cli/out.o
$(BUILD)/test/test_fuzz_regress: $(FUZZ_REGRESS_OBJ)
$(BUILD)/test/test_fuzz_regress: private override LDFLAGS += $(TEST_LIB) -lz -lm
