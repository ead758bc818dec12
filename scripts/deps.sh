#!/bin/bash
# make deps: install everything sipcluster needs on Debian bookworm (as root)
# and fetch + configure the exact Kamailio source matching the installed
# binary into build/ (git-ignored). Idempotent: a second run is fast.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$TOP/build"
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

# What differs between the Debian releases sipcluster supports, in one place
# (Kamailio 5.6 vs 6.0: the KAMAILIO_6 block of kamailio-cfg/kamailio.cfg and
# modules/sipcluster/sc_kcompat.h):
#   bookworm (Debian 12): kamailio 5.6.3, clang 14
#   trixie   (Debian 13): kamailio 6.0.1, clang 19
case "$CODENAME" in
	bookworm) CLANG_RT=libclang-rt-14-dev ;;
	trixie) CLANG_RT=libclang-rt-19-dev ;;
	*) CLANG_RT="" ;; # found from clang's dependency below
esac
PKGS="kamailio sip-tester check pkg-config libxml2-dev libxml2-utils dpkg-dev
	build-essential gcc make python3 procps iproute2 nftables clang
	kamailio-tls-modules kamailio-lua-modules kamailio-sqlite-modules sqlite3
	kamailio-postgres-modules postgresql
	openssl baresip-core xsltproc docbook-xsl docbook-xml lynx
	debhelper lintian man-db git debootstrap curl dnsmasq-base"
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
# libFuzzer's and the sanitizers' runtime of the release's default clang
if [ -z "$CLANG_RT" ]; then
	CLANG_RT=$(apt-cache depends clang 2>/dev/null |
		sed -n 's/^ *Depends: clang-\([0-9][0-9]*\)$/libclang-rt-\1-dev/p' | head -n 1)
	[ -n "$CLANG_RT" ] || die "cannot tell the clang runtime package of '$CODENAME'"
fi
if ! dpkg-query -W -f '${Status}' "$CLANG_RT" 2>/dev/null | grep -q 'ok installed'; then
	[ $updated = 1 ] || { apt-get update -qq; updated=1; }
	log "installing: $CLANG_RT"
	apt-get install -y -qq --no-install-recommends "$CLANG_RT" >/dev/null
fi

KVER=$(dpkg-query -W -f '${Version}' kamailio)
KUP=${KVER%-*}
KUP=${KUP#*:}
SRCDIR="$BUILD/kamailio-$KUP"
KS="$BUILD/ksrc"
STAMP="$KS/.sipcluster-configured"

# The source of the installed kamailio, exactly. apt-get source gives up when
# the mirror lacks a file the Sources index lists (trixie's pool has no
# kamailio_6.0.1.orig.tar.gz.asc); then each other file is fetched by
# apt-helper, which checks it against the SHA256 of the Sources index (signed
# by the archive key, checked by apt-get update), and the .orig and .debian
# tarballs are checked once more against the SHA256 list of the .dsc.
fetch_source() {
	local dl=$1 uri file size hash dsc n=0
	if (cd "$dl" && apt-get source -qq "kamailio=$KVER" >/dev/null 2>"$dl/apt.err"); then
		return 0
	fi
	log "apt-get source failed ($(tail -n 1 "$dl/apt.err")); fetching the files one by one"
	apt-get source --print-uris -qq "kamailio=$KVER" >"$dl/uris" 2>/dev/null ||
		die "apt-get source --print-uris kamailio=$KVER failed (is a deb-src entry reachable?)"
	while read -r uri file size hash; do
		uri=${uri//\'/}
		case "$file" in *.asc) continue ;; esac
		case "$hash" in SHA256:*) ;; *) die "no SHA256 for $file in the Sources index" ;; esac
		/usr/lib/apt/apt-helper -qq download-file "$uri" "$dl/$file" "$hash" >/dev/null ||
			die "could not fetch $uri (or its SHA256 differs from the Sources index)"
		n=$((n + 1))
	done <"$dl/uris"
	[ "$n" -ge 2 ] || die "the Sources index lists no kamailio=$KVER files"
	# the .dsc lists the missing .asc, so dpkg-source must not check (it
	# would stop on it): the tarballs are checked here against the .dsc
	dsc="kamailio_${KVER#*:}.dsc"
	awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 }
		on && NF == 3 && $3 !~ /\.asc$/ { print $1 "  " $3 }' "$dl/$dsc" >"$dl/sums"
	[ -s "$dl/sums" ] || die "no Checksums-Sha256 in $dsc"
	(cd "$dl" && sha256sum --quiet -c sums) ||
		die "the files of kamailio $KVER do not match the checksums of $dsc"
	(cd "$dl" && dpkg-source --no-check -x "$dsc" >/dev/null) ||
		die "dpkg-source -x $dsc failed"
	log "fetched and verified $n files of kamailio $KVER (SHA256 of the signed Sources index)"
}

if [ ! -d "$SRCDIR/src/core" ]; then
	if [ $updated = 0 ]; then apt-get update -qq; fi
	log "fetching kamailio $KVER source (apt-get source)"
	rm -rf "$BUILD/dl"
	mkdir -p "$BUILD/dl" && chmod 777 "$BUILD/dl"
	fetch_source "$BUILD/dl"
	[ -d "$BUILD/dl/kamailio-$KUP/src/core" ] || die "no kamailio-$KUP/src/core in the unpacked source"
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
