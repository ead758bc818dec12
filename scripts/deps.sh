#!/bin/bash
# make deps: install everything sipcluster needs on Debian bookworm (as root)
# and fetch + configure the exact Kamailio source matching the installed
# binary into build/ (git-ignored). Idempotent: a second run is fast.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$TOP/build"
PKGS="kamailio sip-tester check pkg-config libxml2-dev libxml2-utils dpkg-dev
	gcc make python3 procps iproute2 nftables clang libclang-rt-14-dev
	kamailio-tls-modules kamailio-lua-modules kamailio-sqlite-modules sqlite3
	kamailio-postgres-modules postgresql
	openssl baresip-core xsltproc docbook-xsl docbook-xml lynx
	debhelper lintian man-db git"
SRCLIST=/etc/apt/sources.list.d/sipcluster-deb-src.sources

log() { echo "deps: $*"; }
die() { echo "deps: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install, apt sources)"
export DEBIAN_FRONTEND=noninteractive

missing=""
for p in $PKGS; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
		|| missing="$missing $p"
done

# deb-src twin of the machine's own Debian apt sources (deb822 and one-line
# formats), written to our own file; the mirror host is taken from them.
add_deb_src() {
	local codename tmp
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	tmp=$(mktemp)
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && [ "$f" != "$SRCLIST" ] || continue
		# copy each stanza whose Types has "deb" and whose Suites name the
		# release, with Types set to deb-src
		awk -v cn="$codename" '
			function flush() {
				if (st != "" && isdeb && suite ~ cn && !disabled) {
					print st; print ""
				}
				st = ""; isdeb = 0; suite = ""; disabled = 0
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			/^Types:/ { if ($0 ~ /[ \t]deb([ \t]|$)/) isdeb = 1;
				st = st "Types: deb-src\n"; next }
			/^Suites:/ { suite = $0 }
			/^Enabled:[ \t]*no/ { disabled = 1 }
			{ st = st $0 "\n" }
			END { flush() }' "$f" >>"$tmp"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v cn="$codename" '$1 == "deb" && $0 ~ cn {
			$1 = "deb-src"; print }' "$f" >>"$tmp"
	done
	if [ ! -s "$tmp" ]; then
		rm -f "$tmp"
		die "no Debian '$codename' apt source found to derive a deb-src entry from"
	fi
	if [ -f "$SRCLIST" ] && cmp -s "$tmp" "$SRCLIST"; then
		rm -f "$tmp"
		return 1
	fi
	# a one-line entry cannot live in a .sources file
	if grep -q '^deb-src ' "$tmp"; then
		SRCLIST=${SRCLIST%.sources}.list
	fi
	mv "$tmp" "$SRCLIST"
	chmod 644 "$SRCLIST"
	log "added deb-src entries in $SRCLIST"
	return 0
}

updated=0
if add_deb_src || [ -n "$missing" ]; then
	log "apt-get update"
	apt-get update -qq
	updated=1
fi
if [ -n "$missing" ]; then
	log "installing:$missing"
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

KVER=$(dpkg-query -W -f '${Version}' kamailio)
KUP=${KVER%-*}
KUP=${KUP#*:}
SRCDIR="$BUILD/kamailio-$KUP"
KS="$BUILD/ksrc"
STAMP="$KS/.sipcluster-configured"

if [ ! -d "$SRCDIR/src/core" ]; then
	if [ $updated = 0 ]; then apt-get update -qq; fi
	log "fetching kamailio $KVER source (apt-get source)"
	mkdir -p "$BUILD/dl" && chmod 777 "$BUILD/dl"
	(cd "$BUILD/dl" && apt-get source -qq "kamailio=$KVER" >/dev/null) \
		|| die "apt-get source kamailio=$KVER failed (is a deb-src entry reachable?)"
	rm -rf "$SRCDIR"
	mv "$BUILD/dl/kamailio-$KUP" "$SRCDIR"
	rm -rf "$BUILD/dl"
fi

# the flags of Debian's own build (debian/rules: hardening=+all)
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
want="$KVER $(kamailio -v 2>/dev/null | sed -n 's/^flags: //p') $(dpkg-buildflags --get LDFLAGS)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
	log "kamailio $KVER source configured in $KS (nothing to do)"
	exit 0
fi

log "configuring kamailio $KVER source like debian/rules (make cfg)"
rm -rf "$KS"
mkdir -p "$KS/modules"
(cd "$SRCDIR/src" && cp -a Makefile Makefile.* main.c core lib "$KS/")
for m in tm usrloc registrar dmq dmq_usrloc dialog sl rr; do
	cp -a "$SRCDIR/src/modules/$m" "$KS/modules/"
done
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
(cd "$KS" && make -s cfg prefix=/usr cfg_target=/etc/kamailio/ \
	FLAVOUR=kamailio LIBDIR="lib/$MA" group_include=kstandard \
	CC_EXTRA_OPTS="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -DVERSION_NODATE" \
	LD_EXTRA_OPTS="$(dpkg-buildflags --get LDFLAGS)" >/dev/null) \
	|| die "make cfg failed in $KS"
echo "$want" >"$STAMP"
log "done: kamailio $KVER source configured in $KS"
