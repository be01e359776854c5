#!/bin/sh
# Builds the RPM (rpmbuild, from dist/rustlive.spec and a tarball of the checkout) and the .deb
# (dpkg-deb, from a staged `make install DESTDIR=`) into build/packages/, checks that each holds
# exactly the expected files with the expected modes, and installs the .deb into a scratch root
# (dpkg --root) and checks the host could install it (dpkg --dry-run). `make packages` runs it;
# `make test` runs that. Needs rpm, dpkg-dev tools and the release binary (`make build`); the
# man pages are generated on the way (`make man`, from `make install` and the spec's %build).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/packages"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/Cargo.toml" | head -n1)
bin="$top/target/x86_64-unknown-linux-musl/release/rustlive"
say() { printf 'build-packages: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

[ -x "$bin" ] || die "$bin is missing (make build)"
spec_version=$(sed -n 's/^Version: *//p' "$top/dist/rustlive.spec")
[ "$spec_version" = "$version" ] || die "dist/rustlive.spec says $spec_version, Cargo.toml $version"
rm -rf "$out"
mkdir -p "$out"

# The man pages: rustlive.8 and one per subcommand and nested subcommand (examples/mangen.rs).
# A new subcommand gets its page listed here.
man_pages="rustlive rustlive-boot rustlive-config rustlive-inject-secrets rustlive-assemble
rustlive-switch-root rustlive-fetch rustlive-bundle rustlive-bundle-build rustlive-bundle-build-all
rustlive-bundle-seal rustlive-publish rustlive-initramfs rustlive-tpm rustlive-tpm-ek rustlive-image
rustlive-image-check rustlive-torrent rustlive-torrent-create rustlive-torrent-show"

# The documentation: README.md and docs/ as git tracks them (the RPM's tarball is made the same
# way), relative to the repository.
docs() { (cd "$top" && git ls-files README.md docs | while IFS= read -r f; do if [ -e "$f" ]; then printf '%s\n' "$f"; fi; done); }

# The expected files, "MODE PATH" sorted: the module's scripts 0755, its other files 0644, the
# binary in the module and in /usr/bin, the man pages (gzip'd), the README and docs/.
expected() {
	docdir=$1
	{
		for f in "$top"/dracut-module/90rustlive/*; do
			case $f in
			*.sh) m=755 ;;
			*) m=644 ;;
			esac
			echo "$m /usr/lib/dracut/modules.d/90rustlive/${f##*/}"
		done
		echo "755 /usr/lib/dracut/modules.d/90rustlive/rustlive"
		echo "755 /usr/bin/rustlive"
		for p in $man_pages; do echo "644 /usr/share/man/man8/$p.8.gz"; done
		docs | while IFS= read -r f; do echo "644 $docdir/$f"; done
	} | sort
}

# check NAME EXPECTED ACTUAL: identical lists, or the difference and a failure.
check() {
	if ! diff -u "$2" "$3" >"$out/$1.diff"; then
		cat "$out/$1.diff" >&2
		die "$1: the package's files differ from the expected list (above)"
	fi
	say "$1: $(wc -l <"$3") files as expected"
}

# --- .deb ----------------------------------------------------------------------------------------
stage="$out/deb-root"
make -s -C "$top" install DESTDIR="$stage" PREFIX=/usr >/dev/null
install -d -m 0755 "$stage/etc/rustlive/keys/sealed" "$stage/usr/share/doc/rustlive" "$stage/DEBIAN"
docs | while IFS= read -r f; do install -D -m 0644 "$top/$f" "$stage/usr/share/doc/rustlive/$f"; done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: rustlive
Version: $version-1
Architecture: amd64
Maintainer: rustlive maintainers <rustlive@localhost>
Installed-Size: $size
Depends: dracut-core
Recommends: dracut-network
Section: admin
Priority: optional
Description: netboot agent for diskless Linux nodes (dracut module)
 rustlive runs in the initramfs of a diskless node: it downloads the root image
 over HTTP(S) into RAM with retries, resume and SHA-256/minisign verification,
 mounts it under a tmpfs overlay, installs the node's secrets and hands over.
 Add it with: dracut --add "rustlive network-manager". On the boot server,
 rustlive bundle builds the per-node secrets.
EOF
deb="$out/rustlive_${version}-1_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
# dpkg-deb -c: "perms owner/group size date time ./path"; regular files only.
dpkg-deb -c "$deb" | awk '$1 ~ /^-/ { print $1, $2, substr($6, 2) }' >"$out/deb.raw"
awk '$2 != "root/root" { print "not root-owned: " $0; bad = 1 } END { exit bad }' "$out/deb.raw" >&2 ||
	die ".deb: files not owned by root"
awk '{ m = 0; for (i = 2; i <= 10; i++) { m = m * 2 + (substr($1, i, 1) != "-") } printf "%o %s\n", m, $3 }' \
	"$out/deb.raw" | sort >"$out/deb.files"
expected /usr/share/doc/rustlive >"$out/deb.expected"
check .deb "$out/deb.expected" "$out/deb.files"
dpkg-deb -c "$deb" >"$out/deb.list"
grep -q ' \./etc/rustlive/keys/$' "$out/deb.list" || die ".deb: no /etc/rustlive/keys/"
grep -q ' \./etc/rustlive/keys/sealed/$' "$out/deb.list" || die ".deb: no /etc/rustlive/keys/sealed/"

# Installed for real into a scratch root (its own dpkg database), run, then removed.
root="$out/deb-install"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
dpkg --root="$root" --log=/dev/null --force-depends -i "$deb" >"$out/dpkg-install.log" 2>&1 ||
	{
		cat "$out/dpkg-install.log" >&2
		die ".deb: dpkg --root -i failed"
	}
"$root/usr/bin/rustlive" --version | grep -qx "rustlive $version" || die ".deb: the installed binary does not run"
gzip -dc "$root/usr/share/man/man8/rustlive-bundle-seal.8.gz" | grep -q '^\.TH rustlive-bundle-seal 8 ' ||
	die ".deb: rustlive-bundle-seal.8.gz is not a man page"
cmp -s "$bin" "$root/usr/lib/dracut/modules.d/90rustlive/rustlive" || die ".deb: the module's binary is not the build's"
dpkg --root="$root" --log=/dev/null -r rustlive >/dev/null 2>&1 || die ".deb: dpkg -r failed"
[ ! -e "$root/usr/bin/rustlive" ] || die ".deb: dpkg -r left /usr/bin/rustlive"
# And the host itself could install it, dependencies included (dracut-core is a test dependency).
dpkg --dry-run -i "$deb" >"$out/dpkg-dry-run.log" 2>&1 || {
	cat "$out/dpkg-dry-run.log" >&2
	die ".deb: dpkg --dry-run -i failed"
}
say ".deb: installs into a scratch root, runs, removes; host dry-run ok: $deb"

# --- RPM -----------------------------------------------------------------------------------------
rpmtop="$out/rpmbuild"
mkdir -p "$rpmtop/SOURCES"
# The checkout's tracked files as they are now, in the release tarball's layout.
(cd "$top" && git ls-files | while IFS= read -r f; do if [ -e "$f" ]; then printf '%s\n' "$f"; fi; done |
	tar -c --owner=0 --group=0 --transform "s,^,rustlive-$version/," -T - | gzip -n) \
	>"$rpmtop/SOURCES/rustlive-$version.tar.gz"
# --nodeps: the BuildRequires name RPM packages, which a Debian host does not record. The
# checkout's target/ is shared so that only rustlive itself is recompiled (same flags as make).
CARGO_TARGET_DIR="$top/target" rpmbuild --nodeps --quiet --define "_topdir $rpmtop" \
	-bb "$top/dist/rustlive.spec" >"$out/rpmbuild.log" 2>&1 || {
	tail -n 30 "$out/rpmbuild.log" >&2
	die "rpmbuild failed (log: $out/rpmbuild.log)"
}
rpmfile=$(find "$rpmtop/RPMS" -name "rustlive-$version-*.x86_64.rpm" | head -n1)
[ -n "$rpmfile" ] || die "rpmbuild made no rustlive-$version-*.x86_64.rpm"
cp "$rpmfile" "$out/"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpmfile" \
	2>/dev/null >"$out/rpm.raw"
awk '$2 != "root:root" { print "not root-owned: " $0; bad = 1 } END { exit bad }' "$out/rpm.raw" >&2 ||
	die "RPM: files not owned by root"
awk '$1 ~ /^-/ { m = 0; for (i = 2; i <= 10; i++) { m = m * 2 + (substr($1, i, 1) != "-") } printf "%o %s\n", m, $3 }' \
	"$out/rpm.raw" |
	# %doc lands in rustlive/ (RHEL) or rustlive-VERSION/ (this rpm's _docdir_fmt).
	sed "s|^\(644 /usr/share/doc/rustlive\)-$version/|\1/|" | sort >"$out/rpm.files"
expected /usr/share/doc/rustlive >"$out/rpm.expected"
check RPM "$out/rpm.expected" "$out/rpm.files"
grep -q '^d.* /etc/rustlive/keys$' "$out/rpm.raw" || die "RPM: no /etc/rustlive/keys directory"
grep -q '^d.* /etc/rustlive/keys/sealed$' "$out/rpm.raw" || die "RPM: no /etc/rustlive/keys/sealed directory"
rpm -qp --requires "$rpmfile" 2>/dev/null | grep -qx 'dracut' || die "RPM: does not require dracut"
# rpmbuild post-processes the binary (strip, build-id): the one it packaged must still run.
rpm2cpio "$rpmfile" | (cd "$out" && cpio -i --quiet --to-stdout ./usr/bin/rustlive) >"$out/rpm-rustlive"
chmod 0755 "$out/rpm-rustlive"
"$out/rpm-rustlive" --version | grep -qx "rustlive $version" || die "RPM: the packaged binary does not run"
say "RPM: $out/${rpmfile##*/}"
say "ok: the .deb and the RPM are in $out"
