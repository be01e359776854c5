# rustlive — build, test, install. Every target installs what it needs first (scripts/install-deps.sh).
TARGET   := x86_64-unknown-linux-musl
BIN      := target/$(TARGET)/release/rustlive
PREFIX   ?= /usr
DESTDIR  ?=
MODDIR   := $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90rustlive
MAX_SIZE := 6291456
MANDIR   := $(DESTDIR)$(PREFIX)/share/man/man8

.PHONY: all build deps test unit-test qemu-test lint demo demo-standalone man install packages bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --release --target $(TARGET)
	@file $(BIN) | grep -q 'static' || { echo "$(BIN) is not statically linked"; file $(BIN); exit 1; }
	@size=$$(stat -c %s $(BIN)); [ $$size -le $(MAX_SIZE) ] || { echo "$(BIN) is $$size bytes, over 6 MiB"; exit 1; }
	@echo "built $(BIN): $$(stat -c %s $(BIN)) bytes, $$(file -b $(BIN) | cut -d, -f1-2)"

lint: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	shellcheck -x scripts/*.sh .ci/run $$(find dracut-module qemu bench tests -name '*.sh' 2>/dev/null)

# Integration tests mount loop devices, squashfs and overlays: as root they run in a private
# mount namespace so nothing leaks onto the host; as a normal user they skip with a reason.
unit-test: deps
	cargo build --release --target $(TARGET)
	if [ "$$(id -u)" -eq 0 ]; then unshare -m --propagation private cargo test --all-targets; \
	else cargo test --all-targets; fi

qemu-test: build
	qemu/suite.sh

# Every skipped test is a failure here: CI must never pass on a suite that did not run.
test: export RUSTLIVE_NO_SKIP := 1
test: lint unit-test packages qemu-test

demo: build
	qemu/demo.sh

# The same PXE boot with the standalone initramfs (rustlive as /init, no dracut).
demo-standalone: build
	STANDALONE=1 qemu/demo.sh

# Man pages from the clap definitions (examples/mangen.rs; clap_mangen is not in the binary):
# build/man/rustlive.8 and one page per subcommand, rustlive-bundle-seal.8 and so on.
man:
	rm -rf build/man
	cargo run --quiet --example mangen -- build/man >/dev/null

install: build man
	install -d $(MODDIR)
	install -m 0755 dracut-module/90rustlive/*.sh $(MODDIR)/
	install -m 0644 $$(find dracut-module/90rustlive -maxdepth 1 -type f ! -name '*.sh') $(MODDIR)/
	install -m 0755 $(BIN) $(MODDIR)/rustlive
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/rustlive
	install -d $(MANDIR)
	for f in build/man/*.8; do gzip -9nc "$$f" >"$(MANDIR)/$${f##*/}.gz" && chmod 0644 "$(MANDIR)/$${f##*/}.gz" || exit 1; done

# The RPM (from dist/rustlive.spec) and the .deb (from a staged `make install`) into
# build/packages/, their file lists checked and the .deb installed into a scratch root.
packages: build
	scripts/build-packages.sh

bench: build
	bench/fetch-vs-curl.sh
	bench/herd.sh
	bench/boot-vs-livenet.sh

clean:
	cargo clean
	rm -rf build
