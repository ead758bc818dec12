/*
 * libFuzzer target: every parser of message-derived strings the module has
 * of its own (sc_codec.c). The first input byte selects the parser, the rest
 * is the string as it would come off the wire:
 *   0 ;scp= pin value       (decode, verify, re-encode)
 *   1 ;scf= / ;received= flow value (decode, re-encode, decode again)
 *   2 Expires value          (parse, clamp)
 *   3 X-Genesys-Route body
 *   4 URI parameters         (look-up of scp, scf, received, lr)
 *   5 route-set kinds        (the trust rule on arbitrary entry lists)
 * A first byte of 0xf0 or more instead selects the reply-source rule
 * (sc_reply_src_ok) on two addresses made of the rest.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "sc_codec.h"

static unsigned char key[SC_KEY_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	sc_key_derive("fuzzing-secret-0123", 19, key);
	return 0;
}

static void fz_pin(const char *d, int n)
{
	str v = {(char *)d, n}, pair, mac, cid = {"call-id@host", 12};
	char buf[256];

	if(sc_pin_decode(&v, &pair, &mac) < 0)
		return;
	(void)sc_pin_verify(&pair, &mac, &cid, key);
	if(sc_pin_encode(&pair, &cid, key, buf, sizeof(buf)) < 0)
		__builtin_trap(); /* a decoded pair always encodes */
	{
		str v2 = {buf + 5, (int)strlen(buf) - 5}, p2, m2;
		if(sc_pin_decode(&v2, &p2, &m2) < 0
				|| !sc_pin_verify(&p2, &m2, &cid, key))
			__builtin_trap();
	}
}

static void fz_flow(const char *d, int n)
{
	str v = {(char *)d, n};
	char dec[SC_FLOW_MAX + 1], enc[SC_FLOW_MAX * 3 + 1], dec2[SC_FLOW_MAX + 1];
	int dl, el, dl2;

	if(sc_flow_decode(&v, dec, sizeof(dec), &dl) < 0)
		return;
	if((int)strlen(dec) != dl)
		__builtin_trap();
	{
		str u = {dec, dl};
		el = sc_flow_encode(&u, enc, sizeof(enc));
		if(el < 0)
			__builtin_trap();
		u.s = enc;
		u.len = el;
		if(sc_flow_decode(&u, dec2, sizeof(dec2), &dl2) < 0 || dl2 != dl
				|| memcmp(dec, dec2, dl) != 0)
			__builtin_trap();
	}
}

static void fz_expires(const char *d, int n)
{
	unsigned int e;

	if(sc_expires_parse(d, n, &e) < 0)
		return;
	if(sc_expires_clamp(e, 60, 86400) > 86400)
		__builtin_trap();
}

static void fz_xgr(const char *d, int n)
{
	str u;

	if(sc_xgr_parse(d, n, &u) < 0)
		return;
	if(u.s < d || u.s + u.len > d + n || u.len < 5 || u.len > 255)
		__builtin_trap();
}

static void fz_params(const char *d, int n)
{
	static const char *names[] = {"scp", "scf", "received", "lr", "transport"};
	str p = {(char *)d, n}, v;
	int i;

	for(i = 0; i < 5; i++)
		if(sc_uri_param(&p, names[i], &v) == 0
				&& (v.s < d || v.s + v.len > d + n || v.len < 0))
			__builtin_trap();
}

static void fz_plan(const unsigned char *d, int n)
{
	int kinds[64], i, src;
	sc_plan_t plan;

	if(n < 1)
		return;
	src = d[0] % 4;
	d++;
	n--;
	if(n > 64)
		n = 64;
	for(i = 0; i < n; i++)
		kinds[i] = d[i] % 4;
	sc_route_plan(src, kinds, n, &plan);
	if(plan.consume < 0 || plan.consume > n || plan.next >= n)
		__builtin_trap();
	/* the rule: an outsider's request never goes to a foreign entry, and
	 * a next hop follows what was consumed */
	if(plan.verdict == SC_PLAN_OK && plan.next >= 0) {
		if(plan.next != plan.consume)
			__builtin_trap();
		if(!sc_src_trusted(src) && kinds[plan.next] != SC_HOP_SERVER)
			__builtin_trap();
	}
	for(i = 0; i < plan.consume; i++)
		if(kinds[i] == SC_HOP_FOREIGN || kinds[i] == SC_HOP_SERVER)
			__builtin_trap();
}

/* the reply-source rule: a branch's own destination always passes, any
 * difference but the port never does, any_port only frees the port */
static void fz_reply(const unsigned char *d, int n)
{
	sc_addr_t a, b;
	int ok0, ok1;

	if(n < 2 * 22)
		return;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.af = (d[0] & 1) ? 10 : 2;
	memcpy(a.ip, d + 1, 16);
	a.port = (d[17] << 8) | d[18];
	a.proto = d[19] % 8;
	b.af = (d[22] & 1) ? 10 : 2;
	memcpy(b.ip, d + 23, 16);
	b.port = (d[39] << 8) | d[40];
	b.proto = d[41] % 8;
	ok0 = sc_reply_src_ok(&a, &b, 0);
	ok1 = sc_reply_src_ok(&a, &b, 1);
	if(ok0 && !ok1)
		__builtin_trap();
	if(ok1 && (a.af != b.af || a.proto != b.proto || a.proto == 0
			|| memcmp(a.ip, b.ip, a.af == 2 ? 4 : 16) != 0))
		__builtin_trap();
	if(ok0 && a.port != b.port)
		__builtin_trap();
	if(a.proto > 0 && !sc_reply_src_ok(&a, &a, 0))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data + 1;
	int n = (int)size - 1;

	if(size < 1 || size > 4096)
		return 0;
	if(data[0] >= 0xf0) {
		fz_reply((const unsigned char *)d, n);
		return 0;
	}
	switch(data[0] % 6) {
		case 0:
			fz_pin(d, n);
			break;
		case 1:
			fz_flow(d, n);
			break;
		case 2:
			fz_expires(d, n);
			break;
		case 3:
			fz_xgr(d, n);
			break;
		case 4:
			fz_params(d, n);
			break;
		case 5:
			fz_plan((const unsigned char *)d, n);
			break;
	}
	return 0;
}
