#!/bin/bash
# release-root.sh SUITE [COMMAND]: run COMMAND (default: make deps && make
# test) on a copy of this working tree inside a Debian SUITE root (bookworm
# or trixie), as root. The root is made once with debootstrap from this
# machine's own Debian mirror and cached in build/roots/SUITE (git-ignored;
# `make distclean` removes it); the tree is copied to /sipcluster in it, its
# build/ (the Kamailio source `make deps` fetched there) kept between runs.
# /proc, /sys, /dev, /dev/pts and /dev/shm are bound in for the run and
# unbound after it. The network (loopback included) is the host's: the
# suite's 127.x addresses must not be in use outside while it runs.
#
#   scripts/release-root.sh trixie                     the whole suite
#   scripts/release-root.sh trixie 'make deps && make lab && make lab-stop'
#   scripts/release-root.sh trixie shell               an interactive shell
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${1:?usage: release-root.sh SUITE [COMMAND]}
shift
CMD=${*:-make deps && make test}
ROOTS="$TOP/build/roots"
ROOT="$ROOTS/$SUITE"
STAMP="$ROOT/.sipcluster-root"

log() { echo "release-root($SUITE): $*"; }
die() { echo "release-root($SUITE): ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"
case "$SUITE" in bookworm | trixie) ;; *) die "unknown suite '$SUITE' (bookworm or trixie)" ;; esac

# the machine's own Debian mirror (deb822 or one-line sources)
mirror() {
	local m
	m=$(sed -nE 's/^URIs: *([^ ]+).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v -- '-security' | head -n 1)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	echo "${m:-http://deb.debian.org/debian}"
}

bound=()
unbind() {
	local i
	for ((i = ${#bound[@]} - 1; i >= 0; i--)); do
		umount -l "${bound[$i]}" 2>/dev/null || true
	done
	bound=()
}
trap unbind EXIT

make_root() {
	local tmp="$ROOT.tmp" m
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	}
	m=$(mirror)
	log "debootstrap --variant=minbase $SUITE from $m (once; cached in $ROOT)"
	rm -rf "$tmp"
	debootstrap --variant=minbase --include=ca-certificates,git,make \
		"$SUITE" "$tmp" "$m" >"$ROOTS/$SUITE.debootstrap.log" 2>&1 ||
		die "debootstrap failed: see $ROOTS/$SUITE.debootstrap.log"
	# no service starts inside the root (a package's postinst)
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	rm -rf "$ROOT"
	mv "$tmp" "$ROOT"
	date -u +%FT%TZ >"$STAMP"
}

mkdir -p "$ROOTS"
if [ ! -f "$STAMP" ]; then
	# a run killed earlier may have left binds in a half-made root
	for d in dev/shm dev/pts dev sys proc; do
		umount -l "$ROOT.tmp/$d" 2>/dev/null || true
		umount -l "$ROOT/$d" 2>/dev/null || true
	done
	make_root
fi

for d in proc sys dev dev/pts dev/shm; do
	mkdir -p "$ROOT/$d"
	if mountpoint -q "$ROOT/$d"; then
		continue # left by a run that was killed: reuse it
	fi
	mount --bind "/$d" "$ROOT/$d"
	bound+=("$ROOT/$d")
done
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

# the working tree (tracked and new files, never build outputs) over the
# copy in the root, whose own build/ stays
DST="$ROOT/sipcluster"
mkdir -p "$DST"
find "$DST" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
	xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
	tar --null -T - -cf -) | tar -xf - -C "$DST"

log "running '$CMD' in $ROOT ($(. "$ROOT/etc/os-release" && echo "$PRETTY_NAME"))"
if [ "$CMD" = shell ]; then
	chroot "$ROOT" env -i HOME=/root TERM="${TERM:-dumb}" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		bash -c 'cd /sipcluster && exec bash -i'
	exit $?
fi
set +e
chroot "$ROOT" env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	SIPCLUSTER_RELEASE_ROOT="$SUITE" ${BENCH_ONLY:+BENCH_ONLY="$BENCH_ONLY"} \
	bash -c "cd /sipcluster && $CMD"
rc=$?
set -e
log "'$CMD' exited $rc"
exit $rc
