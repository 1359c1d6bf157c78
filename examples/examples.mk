# Examples (issue 6), included by the top Makefile. Owned by examples/.
#   make examples       quote, poll_host, get and memprobe into $(BUILD)/examples/
#   make test-examples  runs them (and the static build, size budget, install) against
#                       tests/server.py: tests/examples_and_install.py, last line N passed, M failed
#   make memprobe       bytes per idle keep-alive connection (1,000 of them) and per queued
#                       request (100,000), printed as bench/RESULTS.md publishes them
# Each example is compiled with the project's flags and sees include/qfetch.h only.
EXAMPLES = quote poll_host get memprobe
EXAMPLE_BIN = $(EXAMPLES:%=$(BUILD)/examples/%)

.PHONY: examples test-examples memprobe
examples: $(EXAMPLE_BIN)

$(BUILD)/examples/%.o: examples/%.c | $(BUILD)/.deps-build
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(BUILD)/libqfetch.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libqfetch.a $(LDLIBS_SSL) $(LDFLAGS)

test-examples: deps-test
	@$(MAKE) --no-print-directory all examples certs
	@$(PY) tests/examples_and_install.py --build $(BUILD)

memprobe: deps-test
	@$(MAKE) --no-print-directory all examples certs
	@$(PY) tests/examples_and_install.py --build $(BUILD) --measure
