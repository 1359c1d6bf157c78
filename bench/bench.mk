# Benchmarks (issue 4), included by the top Makefile. Owned by bench/.
#   make bench        full comparison against curl, libcurl, wrk and the Python original, then
#                     bench/distance.py (the same through a simulated distance) and
#                     bench/http2.py (HTTP/2 against curl and h2load, locally); writes
#                     bench/RESULTS.md (its hand-written tail kept) and bench/*.png, nothing else
#   make bench-quick  a subset in seconds (CI): fails when any contender gives a wrong answer
#   make bench-distance  bench/distance.py alone: rewrites only its section of bench/RESULTS.md
#   make bench-http2  bench/http2.py alone (HTTP/2 CPU per request, gzip's bytes): the same
#   make bench-parse  the parser microbenchmark alone
BENCH_BIN    = $(BUILD)/bench/curl_multi $(BUILD)/bench/parse_bench $(BUILD)/bench/measure \
               $(BUILD)/bench/qfetch-shared $(BUILD)/bench/stallwatch
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
BENCH_ARGS  ?=

.PHONY: bench bench-quick bench-distance bench-http2 bench-parse bench-bin deps-bench
deps-bench: $(BUILD)/.deps-bench
bench-bin: $(BENCH_BIN)

$(BUILD)/bench/%.o: bench/%.c | $(BUILD)/.deps-bench
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CURL_CFLAGS) -c $< -o $@

$(BUILD)/bench/curl_multi: $(BUILD)/bench/curl_multi.o $(BUILD)/libqfetch.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(CURL_LIBS) $(LDLIBS_SSL) -lm $(LDFLAGS)

$(BUILD)/bench/parse_bench: $(BUILD)/bench/parse_bench.o $(BUILD)/libqfetch.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_SSL) -lm $(LDFLAGS)

# The command as SSL_LINK=shared would link it: scenario (a) shows both.
$(BUILD)/bench/qfetch-shared: $(CLI_OBJ) $(BUILD)/libqfetch.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_SSL) $(LDFLAGS)

$(BUILD)/bench/measure: $(BUILD)/bench/measure.o
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS)

$(BUILD)/bench/stallwatch: $(BUILD)/bench/stallwatch.o
	$(CC) $(ALL_CFLAGS) -pthread -o $@ $^ $(LDFLAGS)

bench: deps-bench
	@$(MAKE) --no-print-directory all certs bench-bin
	$(PY) bench/run.py --build $(BUILD) $(BENCH_ARGS)

bench-quick: deps-bench
	@$(MAKE) --no-print-directory all certs bench-bin
	$(PY) bench/run.py --build $(BUILD) --quick $(BENCH_ARGS)

bench-distance: deps-bench
	@$(MAKE) --no-print-directory all certs bench-bin
	$(PY) bench/distance.py --build $(BUILD) --write

bench-http2: deps-bench
	@$(MAKE) --no-print-directory all certs bench-bin
	$(PY) bench/http2.py --build $(BUILD) --write

bench-parse: bench-bin
	$(BUILD)/bench/parse_bench
