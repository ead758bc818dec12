#!/bin/bash
# make deb: the Debian package kamailio-sipcluster-modules, built with
# dpkg-buildpackage from a copy of the tree (build/pkg/) against the
# Kamailio source `make deps` configured, checked with lintian; the .deb
# lands in build/deb/. Installs debhelper and lintian when missing (root).
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
KSRC=${KSRC:-$TOP/build/ksrc}
OUTDIR="$TOP/build/deb"
die() { echo "deb: ERROR: $*" >&2; exit 1; }

[ -f "$KSRC/config.mak" ] || die "Kamailio source not configured in $KSRC: run 'make deps'"
missing=""
for p in debhelper lintian; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || die "missing packages:$missing (run make deps as root)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# one .deb per Debian release: the version gets +debNN (0.9.0+deb12,
# 0.9.0+deb13), the distribution the release's codename
BASEVER=$(dpkg-parsechangelog -l "$TOP/debian/changelog" -S Version)
DEBMAJOR=$(. /etc/os-release && echo "${VERSION_ID%%.*}")
CODENAME=$(. /etc/os-release && echo "$VERSION_CODENAME")
VER="$BASEVER+deb$DEBMAJOR"
WORK="$TOP/build/pkg"
SRC="$WORK/sipcluster-$VER"
rm -rf "$WORK"
mkdir -p "$SRC"
# the tracked tree (and new files not ignored), never build outputs
list_sources() {
	if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
		git -C "$TOP" ls-files -z --cached --others --exclude-standard
	else
		(cd "$TOP" && find . -path ./build -prune -o -path ./.git -prune -o \
			-type f ! -name '*.o' ! -name '*.d' ! -name '*.so' -print0)
	fi
}
(cd "$TOP" && list_sources |
	xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
	tar --null -T - -cf -) | tar -xf - -C "$SRC"

KVER=$(dpkg-query -W -f '${Version}' kamailio)
{
	printf 'sipcluster (%s) %s; urgency=medium\n\n' "$VER" "$CODENAME"
	printf '  * Built for Debian %s (%s) against kamailio %s.\n\n' "$DEBMAJOR" "$CODENAME" "$KVER"
	# a second after the source entry: reproducible, and newer
	printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$TOP/debian/changelog" -S Maintainer)" \
		"$(date -R -u -d "@$(($(dpkg-parsechangelog -l "$TOP/debian/changelog" -S Timestamp) + 1))")"
	cat "$TOP/debian/changelog"
} >"$SRC/debian/changelog"

echo "deb: dpkg-buildpackage in $SRC (KSRC=$KSRC)"
(cd "$SRC" && KSRC="$KSRC" dpkg-buildpackage -b -us -uc >"$WORK/build.log" 2>&1) || {
	tail -30 "$WORK/build.log" >&2
	die "dpkg-buildpackage failed (log: $WORK/build.log)"
}
DEB=$(ls "$WORK"/kamailio-sipcluster-modules_"$VER"_*.deb)
CHANGES=$(ls "$WORK"/sipcluster_"$VER"_*.changes)

echo "deb: lintian $(basename "$CHANGES")"
if ! lintian --fail-on error,warning --info --display-info "$CHANGES" \
		>"$WORK/lintian.log" 2>&1; then
	cat "$WORK/lintian.log" >&2
	die "lintian found errors or warnings"
fi
grep -v '^N: ' "$WORK/lintian.log" || true

mkdir -p "$OUTDIR"
rm -f "$OUTDIR"/*.deb
cp "$DEB" "$OUTDIR/"
echo "deb: $OUTDIR/$(basename "$DEB")"
dpkg-deb -f "$DEB" Package Version Depends | sed 's/^/deb:   /'
