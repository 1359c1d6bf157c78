# Static build, size budget and installation (issue 6), included by the top Makefile.
#   make static                    $(BUILD)/qfetch-static: gcc -static, stripped, OpenSSL's .a
#   make size                      binary and code sizes; fails when over budget
#   make install PREFIX=/usr/local bin/qfetch, include/qfetch.h, lib/libqfetch.a,
#                                  lib/pkgconfig/qfetch.pc, share/man/man1/qfetch.1 (DESTDIR too)
#   make uninstall PREFIX=...      removes exactly those files
PREFIX     ?= /usr/local
DESTDIR    ?=
QF_VERSION ?= $(shell sed -n 's/^#define QF_VERSION "\(.*\)"/\1/p' include/qfetch.h)
STATIC_LDLIBS := $(shell pkg-config --libs --static libnghttp2 libcares openssl 2>/dev/null || \
                   echo -lnghttp2 -lcares -lssl -lcrypto -ldl -pthread) -lz -lm
# Budgets in bytes. The static binary's goal is 4 MiB; Debian's stock libcrypto.a alone brings
# about 3 MB (every algorithm of the default provider), so the enforced line is 5 MiB.
SIZE_STATIC_MAX      ?= 5242880
SIZE_STATIC_GOAL     ?= 4194304
SIZE_ENGINE_TEXT_MAX ?= 102400
ENGINE_OBJ = $(filter-out $(LLHTTP_OBJ),$(LIB_OBJ))

.PHONY: static size install uninstall
static: $(BUILD)/qfetch-static

# glibc warns that getaddrinfo (and OpenSSL's dlopen/gethostbyname) in a static binary need
# the same glibc's NSS modules at run time; those expected lines are filtered, others shown.
$(BUILD)/qfetch-static: $(CLI_OBJ) $(BUILD)/libqfetch.a
	@echo "$(CC) -static -s -o $@ ... $(STATIC_LDLIBS)"
	@$(CC) $(ALL_CFLAGS) -static -s -o $@ $(CLI_OBJ) $(BUILD)/libqfetch.a $(STATIC_LDLIBS) \
	    $(LDFLAGS) 2>$@.log; rc=$$?; \
	if [ $$rc -ne 0 ]; then cat $@.log >&2; rm -f $@; exit $$rc; fi; \
	grep -v -e 'in statically linked applications requires at runtime' -e ': in function ' \
	    $@.log >&2 || true; rm -f $@.log

size: $(BUILD)/qfetch $(BUILD)/qfetch-static
	@strip -o $(BUILD)/qfetch.stripped $(BUILD)/qfetch
	@text() { size -t "$$@" | tail -n 1 | awk '{print $$1}'; }; \
	st=$$(stat -c %s $(BUILD)/qfetch-static); dy=$$(stat -c %s $(BUILD)/qfetch); \
	ds=$$(stat -c %s $(BUILD)/qfetch.stripped); \
	eng=$$(text $(ENGINE_OBJ)); llh=$$(text $(LLHTTP_OBJ)); cli=$$(text $(CLI_OBJ)); \
	e1=$$(text $(filter $(BUILD)/engine/%,$(ENGINE_OBJ))); \
	e2=$$(text $(filter $(BUILD)/tls/%,$(ENGINE_OBJ))); \
	e3=$$(text $(filter $(BUILD)/parser/%,$(ENGINE_OBJ))); \
	mib() { awk -v b=$$1 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }; \
	row() { printf '%-34s %9s  %s\n' "$$@"; }; \
	row "qfetch-static (stripped)" $$st \
	    "$$(mib $$st), budget $$(mib $(SIZE_STATIC_MAX)), goal $$(mib $(SIZE_STATIC_GOAL))"; \
	row "qfetch (with -g)" $$dy "$$(mib $$dy)"; \
	row "qfetch (stripped)" $$ds "$$(mib $$ds); SSL_LINK=$(SSL_LINK): $(if $(filter shared,$(SSL_LINK)),needs libssl.so.3 and libcrypto.so.3,OpenSSL linked in; glibc shared)"; \
	row "engine text (engine+tls+parser)" $$eng \
	    "engine/ $$e1, tls/ $$e2, parser/ $$e3; budget $(SIZE_ENGINE_TEXT_MAX)"; \
	row "llhttp text (generated parser)" $$llh ""; \
	row "cli text" $$cli ""; \
	rm -f $(BUILD)/qfetch.stripped; fail=0; \
	if [ $$st -gt $(SIZE_STATIC_MAX) ]; then \
	    echo "size: qfetch-static over budget" >&2; fail=1; fi; \
	if [ $$eng -gt $(SIZE_ENGINE_TEXT_MAX) ]; then \
	    echo "size: engine text over budget" >&2; fail=1; fi; \
	if [ $$fail -ne 0 ]; then exit 1; fi; \
	if [ $$st -gt $(SIZE_STATIC_GOAL) ]; then \
	    echo "size: within budget; qfetch-static is" \
	         "$$(( ($$st - $(SIZE_STATIC_GOAL)) / 1024 )) KiB over the 4 MiB goal"; \
	else echo "size: within budget and goal"; fi

$(BUILD)/qfetch.pc: docs/qfetch.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(QF_VERSION)|g' $< > $@

# The prefix is baked into qfetch.pc: rebuild it on every install.
install: all
	@rm -f $(BUILD)/qfetch.pc
	@$(MAKE) --no-print-directory $(BUILD)/qfetch.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/qfetch $(DESTDIR)$(PREFIX)/bin/qfetch
	install -m 644 include/qfetch.h $(DESTDIR)$(PREFIX)/include/qfetch.h
	install -m 644 $(BUILD)/libqfetch.a $(DESTDIR)$(PREFIX)/lib/libqfetch.a
	install -m 644 $(BUILD)/qfetch.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/qfetch.pc
	install -m 644 docs/qfetch.1 $(DESTDIR)$(PREFIX)/share/man/man1/qfetch.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/qfetch $(DESTDIR)$(PREFIX)/include/qfetch.h \
	    $(DESTDIR)$(PREFIX)/lib/libqfetch.a $(DESTDIR)$(PREFIX)/lib/pkgconfig/qfetch.pc \
	    $(DESTDIR)$(PREFIX)/share/man/man1/qfetch.1
