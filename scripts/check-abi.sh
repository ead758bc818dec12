#!/bin/bash
# check-abi.sh MODULE.so: the module must carry exactly the version and
# compile-flags strings of the installed kamailio binary, or the binary's
# loader refuses it (ksr_version_control) at run time. Fail the build now,
# with a clear message, instead.
set -u
so=$1
if ! command -v kamailio >/dev/null; then
	echo "check-abi: kamailio is not installed: run 'make deps'" >&2
	exit 1
fi
ver=$(kamailio -v 2>/dev/null | sed -n 's/^version: \(.*[^ ]\) *$/\1/p')
flags=$(kamailio -v 2>/dev/null | sed -n 's/^flags: //p')
if ! strings "$so" | grep -qxF "$ver"; then
	echo "check-abi: $so was built for another Kamailio version; installed: '$ver'" >&2
	echo "check-abi: module has: $(strings "$so" | grep -E '^kamailio [0-9]' | head -1)" >&2
	echo "check-abi: run 'make deps' (re-fetches the matching source) and 'make clean all'" >&2
	rm -f "$so"
	exit 1
fi
if ! strings "$so" | grep -qxF "$flags"; then
	echo "check-abi: $so compile flags differ from the installed kamailio's:" >&2
	echo "  kamailio: $flags" >&2
	echo "  module:   $(strings "$so" | grep -E '^USE_TCP' | head -1)" >&2
	echo "check-abi: run 'make deps' and 'make clean all'" >&2
	rm -f "$so"
	exit 1
fi
echo "check-abi: $so matches $ver"
