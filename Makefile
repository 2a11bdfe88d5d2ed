# mod_prison — build, install, test. See README.md.
#   make                      build the module (target/release/libmod_prison.so)
#   make install APXS=apxs    install mod_prison.so (and the a2enmod files on Debian)
#   make deb                  build target/debian/libapache2-mod-prison_<version>_<arch>.deb
#   make deps                 install build and test dependencies (Debian, as root)
#   make demo                 run a jailed httpd on 127.0.0.1 and show what a request sees
#   make test                 all tests (unit + real httpd; as root)
#   make lint                 rustfmt, clippy (Linux and FreeBSD targets)
#   make bench                benchmarks: jailed vs unjailed httpd, as ratios (as root)
#   make fuzz                 fuzz every directive parser (FUZZ_SECONDS each)
#   make stress               graceful restarts under load, jailed vs plain (as root)
#   make peer                 Apache's own test suite, plain and jailed (as root; PEER_MPMS)
#   make test-cgroup2         the httpd tests again in a qemu guest with pure cgroup v2 (as root)
#   make check-freebsd        type-check the FreeBSD backend
#   make check-freebsd-link   link the module for FreeBSD 14 against its libc (PyPI's ziglang)
#   PARANOID=0                build without the PARANOID checks

APXS     ?= apxs
CARGO    ?= cargo
PARANOID ?= 1
FEATURES := $(if $(filter 0,$(PARANOID)),--no-default-features,)
SO       := target/release/libmod_prison.so
FREEBSD  := x86_64-unknown-freebsd

export APXS

.PHONY: all build install deb deps demo test test-cgroup2 lint check-freebsd check-freebsd-link bench fuzz stress clean

all: build

build:
	$(CARGO) build --release $(FEATURES)

install: build
	@libexec="$$($(APXS) -q LIBEXECDIR)"; sysconf="$$($(APXS) -q SYSCONFDIR)"; \
	set -e; \
	install -d "$(DESTDIR)$$libexec"; \
	install -m 755 $(SO) "$(DESTDIR)$$libexec/mod_prison.so"; \
	echo "installed $(DESTDIR)$$libexec/mod_prison.so"; \
	if [ -d "$(DESTDIR)$$sysconf/mods-available" ]; then \
		sed "s#@LIBEXECDIR@#$$libexec#" conf/prison.load > "$(DESTDIR)$$sysconf/mods-available/prison.load"; \
		install -m 644 conf/prison.conf "$(DESTDIR)$$sysconf/mods-available/prison.conf"; \
		echo "installed prison.load and prison.conf in $(DESTDIR)$$sysconf/mods-available: a2enmod prison"; \
	fi

# Debian package with dpkg-deb (packaging/deb): enables and restarts nothing when installed.
deb: build
	bash packaging/deb/build $(SO)

deps:
	bash .ci/deps

demo: build
	bash tests/demo.sh

test:
	$(CARGO) test $(FEATURES) -- --test-threads=2

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --target $(FREEBSD) -- -D warnings
	cd tests/probe && $(CARGO) fmt --check && $(CARGO) clippy --release --target x86_64-unknown-linux-gnu -- -D warnings
	cd fuzz && $(CARGO) fmt --check

check-freebsd:
	$(CARGO) check --target $(FREEBSD)

# See docs/freebsd.md "Linked, not only type-checked".
check-freebsd-link:
	bash tests/freebsd-link/check

clean:
	$(CARGO) clean

bench: build
	python3 tests/bench/bench.py

# Fuzz every directive parser for FUZZ_SECONDS each (cargo install cargo-fuzz; the stable
# toolchain is told to accept the sanitizer flags with RUSTC_BOOTSTRAP=1).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := prison_cpu prison_memory prison_ip prison_bind prison_name prison_processes prison_tmp prison_connect
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	set -e; for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS); \
	done

stress: build
	python3 tests/stress/stress.py

# Debian's copy of httpd's perl-framework, plain and in the prison; see tests/peer/peer.py.
.PHONY: peer
peer: build
	python3 tests/peer/peer.py

# Debian's kernel under qemu (software emulation) with only cgroup2 mounted; see tests/cgroup2.
test-cgroup2:
	bash tests/cgroup2/test
