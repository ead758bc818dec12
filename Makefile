# sipcluster: Kamailio module + routing bundle for a Genesys-style SIP Cluster
#
#   make deps       install packages, fetch + configure the Kamailio source
#   make            build modules/sipcluster/sipcluster.so (checked against
#                   the installed kamailio binary)
#   make test       unit (Check) + integration (real Kamailio, SIPp) tests
#   make test-all   make test here, then the whole suite again inside a
#                   root of the other supported Debian release (debootstrap,
#                   cached in build/roots/): Debian 12 and 13 every time
#   make test-bookworm / make test-trixie   the suite in that release's root
#   make lab        two data centers on loopback; make lab-stop stops it
#                   (LAB_ARGS=--shared-db: registrations in a PostgreSQL)
#   make install    DESTDIR=... honoured
#   make deb        the Debian package kamailio-sipcluster-modules (build/deb/)
#   make docs       the module README from its docbook (modules/sipcluster/doc)
#   make bench      benchmarks (docs/benchmarks.md)
#   make fuzz       libFuzzer targets, FUZZ_S seconds each (default 60)
#   make chaos      fault injection (partition, kill, full restart, flapping,
#                   reloads, soak) with figures; CHAOS_ARGS=--quick shortens

KSRC ?= $(CURDIR)/build/ksrc
MODDIR_SRC := modules/sipcluster
MODULE := $(MODDIR_SRC)/sipcluster.so
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
MODDIR ?= /usr/lib/$(MULTIARCH)/kamailio/modules
SHAREDIR ?= /usr/share/sipcluster
SBINDIR ?= /usr/sbin
MANDIR ?= /usr/share/man
DOCDIR ?= /usr/share/doc/sipcluster
# Kamailio's packages keep every module's README here
KDOCDIR ?= /usr/share/doc/kamailio/modules

.PHONY: all module deps test test-all test-bookworm test-trixie unit integration lab lab-stop lab-status \
	install uninstall clean distclean bench fuzz deb docs chaos

all: module

module:
	@if [ ! -f "$(KSRC)/config.mak" ]; then \
		echo "Kamailio source not configured in $(KSRC): run 'make deps' first (as root)" >&2; \
		exit 1; fi
	$(MAKE) -C $(MODDIR_SRC) KSRC=$(KSRC)
	@scripts/check-abi.sh $(MODULE)
	$(MAKE) -s -C $(MODDIR_SRC)/tools KSRC=$(KSRC)

deps:
	scripts/deps.sh

test: module
	python3 tests/run.py

# the release this machine runs, and the other one of the two supported
THIS_RELEASE := $(shell . /etc/os-release 2>/dev/null && echo $$VERSION_CODENAME)
OTHER_RELEASE := $(if $(filter trixie,$(THIS_RELEASE)),bookworm,trixie)

test-all: test
	scripts/release-root.sh $(OTHER_RELEASE)

test-bookworm test-trixie:
	scripts/release-root.sh $(@:test-%=%)

unit: module
	python3 tests/run.py --unit-only

integration: module
	python3 tests/run.py --integration-only

lab: module
	scripts/lab/lab start $(LAB_ARGS)

lab-stop:
	scripts/lab/lab stop

lab-status:
	scripts/lab/lab status

install: module
	install -D -m 644 $(MODULE) $(DESTDIR)$(MODDIR)/sipcluster.so
	install -D -m 644 $(MODDIR_SRC)/sipcluster.xsd $(DESTDIR)$(SHAREDIR)/sipcluster.xsd
	install -D -m 644 kamailio-cfg/kamailio.cfg $(DESTDIR)$(SHAREDIR)/kamailio.cfg
	install -D -m 644 examples/kemi-lua/sipcluster.lua $(DESTDIR)$(DOCDIR)/examples/kemi-lua/sipcluster.lua
	install -D -m 644 examples/kemi-lua/README.md $(DESTDIR)$(DOCDIR)/examples/kemi-lua/README.md
	install -D -m 644 kamailio-cfg/cluster-example.xml $(DESTDIR)$(SHAREDIR)/cluster-example.xml
	install -D -m 644 kamailio-cfg/sipcluster-local-defs.cfg $(DESTDIR)$(SHAREDIR)/sipcluster-local-defs.cfg
	install -D -m 644 kamailio-cfg/sipcluster-local.cfg $(DESTDIR)$(SHAREDIR)/sipcluster-local.cfg
	install -D -m 644 docs/grafana/sipcluster-dashboard.json $(DESTDIR)$(SHAREDIR)/grafana/sipcluster-dashboard.json
	install -D -m 755 scripts/sipcluster-proxy $(DESTDIR)$(SBINDIR)/sipcluster-proxy
	install -D -m 755 $(MODDIR_SRC)/tools/sipcluster-check $(DESTDIR)$(SBINDIR)/sipcluster-check
	install -D -m 644 docs/man/sipcluster-proxy.8 $(DESTDIR)$(MANDIR)/man8/sipcluster-proxy.8
	install -D -m 644 docs/man/sipcluster-check.8 $(DESTDIR)$(MANDIR)/man8/sipcluster-check.8
	install -D -m 644 $(MODDIR_SRC)/README $(DESTDIR)$(KDOCDIR)/README.sipcluster
	install -D -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	for d in docs/*.md; do install -D -m 644 $$d $(DESTDIR)$(DOCDIR)/$$(basename $$d); done

uninstall:
	rm -f $(DESTDIR)$(MODDIR)/sipcluster.so $(DESTDIR)$(KDOCDIR)/README.sipcluster
	rm -f $(DESTDIR)$(SBINDIR)/sipcluster-proxy $(DESTDIR)$(SBINDIR)/sipcluster-check
	rm -f $(DESTDIR)$(MANDIR)/man8/sipcluster-proxy.8 $(DESTDIR)$(MANDIR)/man8/sipcluster-check.8
	rm -rf $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR)

# the Debian package, built by dpkg-buildpackage from a copy of the tree
deb: module
	scripts/deb.sh

docs:
	$(MAKE) -C $(MODDIR_SRC)/doc

bench: module
	python3 bench/bench.py

chaos: module
	python3 tests/chaos/chaos.py $(CHAOS_ARGS)

FUZZ_S ?= 60
fuzz:
	$(MAKE) -C tests/fuzz run FUZZ_S=$(FUZZ_S)

clean:
	-$(MAKE) -C $(MODDIR_SRC) KSRC=$(KSRC) clean
	rm -f $(MODDIR_SRC)/sc_schema.h $(MODDIR_SRC)/test-cflags.txt
	-$(MAKE) -C tests/unit clean
	-$(MAKE) -C $(MODDIR_SRC)/tools clean
	-$(MAKE) -C tests/fuzz clean

distclean: clean
	rm -rf build
