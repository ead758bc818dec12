/*
 * sipcluster - parsers and encoders of message-derived strings, and the
 * route-set trust rule (see sc_codec.h)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include <strings.h>
#include <stdio.h>

#include "sc_codec.h"

/* ---- SipHash-2-4 ---- */

#define SC_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SC_SIPROUND           \
	do {                      \
		v0 += v1;             \
		v1 = SC_ROTL(v1, 13); \
		v1 ^= v0;             \
		v0 = SC_ROTL(v0, 32); \
		v2 += v3;             \
		v3 = SC_ROTL(v3, 16); \
		v3 ^= v2;             \
		v0 += v3;             \
		v3 = SC_ROTL(v3, 21); \
		v3 ^= v0;             \
		v2 += v1;             \
		v1 = SC_ROTL(v1, 17); \
		v1 ^= v2;             \
		v2 = SC_ROTL(v2, 32); \
	} while(0)

static uint64_t sc_le64(const unsigned char *p)
{
	return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
		   | ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32)
		   | ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48)
		   | ((uint64_t)p[7] << 56);
}

uint64_t sc_siphash(
		const unsigned char key[SC_KEY_LEN], const void *data, size_t len)
{
	const unsigned char *in = (const unsigned char *)data;
	uint64_t k0 = sc_le64(key), k1 = sc_le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = ((uint64_t)len) << 56, m;
	size_t i, full = len - (len % 8);

	for(i = 0; i < full; i += 8) {
		m = sc_le64(in + i);
		v3 ^= m;
		SC_SIPROUND;
		SC_SIPROUND;
		v0 ^= m;
	}
	switch(len & 7) {
		case 7:
			b |= ((uint64_t)in[full + 6]) << 48;
			/* fall through */
		case 6:
			b |= ((uint64_t)in[full + 5]) << 40;
			/* fall through */
		case 5:
			b |= ((uint64_t)in[full + 4]) << 32;
			/* fall through */
		case 4:
			b |= ((uint64_t)in[full + 3]) << 24;
			/* fall through */
		case 3:
			b |= ((uint64_t)in[full + 2]) << 16;
			/* fall through */
		case 2:
			b |= ((uint64_t)in[full + 1]) << 8;
			/* fall through */
		case 1:
			b |= ((uint64_t)in[full]);
			break;
		case 0:
			break;
	}
	v3 ^= b;
	SC_SIPROUND;
	SC_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SC_SIPROUND;
	SC_SIPROUND;
	SC_SIPROUND;
	SC_SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

void sc_key_derive(const char *secret, int len, unsigned char key[SC_KEY_LEN])
{
	static const unsigned char k0[SC_KEY_LEN] = "sipcluster-key-0";
	static const unsigned char k1[SC_KEY_LEN] = "sipcluster-key-1";
	uint64_t a, b;
	int i;

	a = sc_siphash(k0, secret, len > 0 ? (size_t)len : 0);
	b = sc_siphash(k1, secret, len > 0 ? (size_t)len : 0);
	for(i = 0; i < 8; i++) {
		key[i] = (unsigned char)(a >> (8 * i));
		key[8 + i] = (unsigned char)(b >> (8 * i));
	}
}

/* ---- pin ---- */

static int sc_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		   || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int sc_name_valid(const str *s)
{
	int i;

	if(s == NULL || s->s == NULL || s->len <= 0 || s->len > SC_NAME_MAX)
		return 0;
	for(i = 0; i < s->len; i++)
		if(!sc_name_char(s->s[i]))
			return 0;
	return 1;
}

static uint64_t sc_pin_mac(
		const str *pair, const str *callid, const unsigned char *key)
{
	/* pair NUL callid: unambiguous (names have no NUL) */
	unsigned char buf[SC_NAME_MAX + 1 + 512];
	int cl = callid ? callid->len : 0;
	uint64_t h;

	if(cl > 512) {
		/* long Call-IDs: hash the Call-ID first */
		static const unsigned char k2[SC_KEY_LEN] = "sipcluster-cid-2";
		h = sc_siphash(k2, callid->s, cl);
		memcpy(buf + pair->len + 1, &h, sizeof(h));
		cl = sizeof(h);
	} else if(cl > 0) {
		memcpy(buf + pair->len + 1, callid->s, cl);
	}
	memcpy(buf, pair->s, pair->len);
	buf[pair->len] = '\0';
	return sc_siphash(key, buf, pair->len + 1 + cl);
}

int sc_pin_encode(const str *pair, const str *callid, const unsigned char *key,
		char *buf, int len)
{
	int n;

	if(!sc_name_valid(pair) || buf == NULL)
		return -1;
	if(key != NULL)
		n = snprintf(buf, len, ";" SC_RR_PARAM "=%.*s~%016llx", pair->len,
				pair->s, (unsigned long long)sc_pin_mac(pair, callid, key));
	else
		n = snprintf(buf, len, ";" SC_RR_PARAM "=%.*s", pair->len, pair->s);
	if(n < 0 || n >= len)
		return -1;
	return n;
}

int sc_pin_decode(const str *val, str *pair, str *mac)
{
	const char *t;
	int i;

	if(val == NULL || val->s == NULL || val->len <= 0)
		return -1;
	t = memchr(val->s, '~', val->len);
	pair->s = val->s;
	pair->len = t ? (int)(t - val->s) : val->len;
	mac->s = t ? (char *)t + 1 : NULL;
	mac->len = t ? val->len - pair->len - 1 : 0;
	if(!sc_name_valid(pair))
		return -1;
	if(t) {
		if(mac->len != SC_MAC_HEX)
			return -1;
		for(i = 0; i < mac->len; i++) {
			char c = mac->s[i];
			if(!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				return -1;
		}
	}
	return 0;
}

int sc_pin_verify(const str *pair, const str *mac, const str *callid,
		const unsigned char *key)
{
	char want[SC_MAC_HEX + 1];
	unsigned char diff = 0;
	int i;

	if(key == NULL || mac == NULL || mac->len != SC_MAC_HEX
			|| !sc_name_valid(pair))
		return 0;
	snprintf(want, sizeof(want), "%016llx",
			(unsigned long long)sc_pin_mac(pair, callid, key));
	for(i = 0; i < SC_MAC_HEX; i++) /* constant time */
		diff |= (unsigned char)(want[i] ^ mac->s[i]);
	return diff == 0;
}

/* ---- flow token ---- */

/* kept as they are in a URI parameter value (RFC 3261 paramchar, plus the
 * ':' '[' ']' of host:port / IPv6) */
static int sc_param_char(unsigned char c)
{
	if((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			|| (c >= '0' && c <= '9'))
		return 1;
	return strchr("-_.!~*'()[]/:&+$", c) != NULL && c != '\0';
}

int sc_flow_encode(const str *uri, char *out, int len)
{
	static const char hex[] = "0123456789ABCDEF";
	int i, n = 0;

	if(uri == NULL || uri->s == NULL || uri->len <= 0 || uri->len > SC_FLOW_MAX)
		return -1;
	for(i = 0; i < uri->len; i++) {
		unsigned char c = (unsigned char)uri->s[i];
		if(sc_param_char(c)) {
			if(n + 1 >= len)
				return -1;
			out[n++] = (char)c;
		} else {
			if(n + 3 >= len)
				return -1;
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	return n;
}

static int sc_hexval(char c)
{
	if(c >= '0' && c <= '9')
		return c - '0';
	if(c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if(c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* host [":" port] [";transport=" token]* of a decoded flow URI */
static int sc_flow_check(const char *s, int len)
{
	int i = 0, digits;

	if(len >= 4 && strncasecmp(s, "sip:", 4) == 0)
		i = 4;
	else if(len >= 5 && strncasecmp(s, "sips:", 5) == 0)
		i = 5;
	else
		return -1;
	if(i < len && s[i] == '[') {
		i++;
		while(i < len && s[i] != ']') {
			if(!(sc_hexval(s[i]) >= 0 || s[i] == ':' || s[i] == '.'))
				return -1;
			i++;
		}
		if(i >= len)
			return -1;
		i++;
	} else {
		int start = i;
		while(i < len
				&& ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
						|| (s[i] >= '0' && s[i] <= '9') || s[i] == '.'
						|| s[i] == '-'))
			i++;
		if(i == start)
			return -1;
	}
	if(i < len && s[i] == ':') {
		i++;
		digits = 0;
		while(i < len && s[i] >= '0' && s[i] <= '9' && digits < 6) {
			i++;
			digits++;
		}
		if(digits == 0)
			return -1;
	}
	while(i < len) {
		if(len - i < 11 || strncasecmp(s + i, ";transport=", 11) != 0)
			return -1;
		i += 11;
		digits = 0;
		while(i < len
				&& ((s[i] >= 'a' && s[i] <= 'z')
						|| (s[i] >= 'A' && s[i] <= 'Z'))) {
			i++;
			digits++;
		}
		if(digits == 0 || digits > 8)
			return -1;
	}
	return 0;
}

int sc_flow_decode(const str *val, char *out, int len, int *out_len)
{
	int i, n = 0, a, b;

	if(val == NULL || val->s == NULL || val->len <= 0 || out == NULL
			|| len <= 0)
		return -1;
	for(i = 0; i < val->len; i++) {
		char c = val->s[i];
		if(c == '%') {
			if(i + 2 >= val->len)
				return -1;
			a = sc_hexval(val->s[i + 1]);
			b = sc_hexval(val->s[i + 2]);
			if(a < 0 || b < 0)
				return -1;
			c = (char)(a * 16 + b);
			i += 2;
		}
		if((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f)
			return -1;
		if(n + 1 >= len || n >= SC_FLOW_MAX)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	if(sc_flow_check(out, n) < 0)
		return -1;
	if(out_len)
		*out_len = n;
	return 0;
}

/* ---- Expires ---- */

static int sc_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int sc_expires_parse(const char *s, int len, unsigned int *out)
{
	int i = 0, end, digits = 0;
	unsigned long long v = 0;

	if(s == NULL || len <= 0)
		return -1;
	end = len;
	while(i < end && sc_lws(s[i]))
		i++;
	while(end > i && sc_lws(s[end - 1]))
		end--;
	if(i == end)
		return -1;
	for(; i < end; i++) {
		if(s[i] < '0' || s[i] > '9')
			return -1;
		if(v <= 0xffffffffULL) /* saturate, but keep validating */
			v = v * 10 + (unsigned)(s[i] - '0');
		digits++;
	}
	if(digits == 0)
		return -1;
	if(v > 0xffffffffULL)
		v = 0xffffffffULL;
	if(out)
		*out = (unsigned int)v;
	return 0;
}

unsigned int sc_expires_clamp(unsigned int e, unsigned int lo, unsigned int hi)
{
	if(e == 0)
		return 0;
	if(hi > 0 && e > hi)
		e = hi;
	if(e < lo)
		e = lo;
	return e;
}

/* ---- X-Genesys-Route ---- */

int sc_xgr_parse(const char *s, int len, str *uri)
{
	int i = 0, end, j;

	if(s == NULL || len <= 0 || uri == NULL)
		return -1;
	end = len;
	while(i < end && sc_lws(s[i]))
		i++;
	while(end > i && sc_lws(s[end - 1]))
		end--;
	if(end - i >= 2 && s[i] == '<') {
		if(s[end - 1] != '>')
			return -1;
		i++;
		end--;
	}
	if(end - i <= 4 || end - i > 255)
		return -1;
	if(!(strncasecmp(s + i, "sip:", 4) == 0
			   || (end - i > 5 && strncasecmp(s + i, "sips:", 5) == 0)))
		return -1;
	for(j = i; j < end; j++) {
		unsigned char c = (unsigned char)s[j];
		if(c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"'
				|| c == ',')
			return -1;
	}
	uri->s = (char *)s + i;
	uri->len = end - i;
	return 0;
}

/* ---- URI parameters ---- */

int sc_uri_param(const str *params, const char *name, str *val)
{
	int nlen = strlen(name);
	const char *p, *end, *q, *e;

	if(params == NULL || params->s == NULL || params->len <= 0)
		return -1;
	p = params->s;
	end = params->s + params->len;
	while(p < end) {
		while(p < end && (*p == ';' || *p == ' ' || *p == '\t'))
			p++;
		q = p;
		while(q < end && *q != ';')
			q++;
		/* [p, q) is one "name[=value]" */
		e = memchr(p, '=', q - p);
		if((e ? e - p : q - p) == nlen && strncasecmp(p, name, nlen) == 0) {
			if(e) {
				val->s = (char *)e + 1;
				val->len = (int)(q - e - 1);
			} else {
				val->s = (char *)q;
				val->len = 0;
			}
			return 0;
		}
		p = q;
	}
	return -1;
}

/* ---- the route-set rule ---- */

int sc_route_plan(int src, const int *kinds, int n, sc_plan_t *plan)
{
	int i = 0;
	int trusted = sc_src_trusted(src);

	plan->consume = 0;
	plan->next = -1;
	plan->verdict = SC_PLAN_OK;
	while(i < n
			&& (kinds[i] == SC_HOP_SELF
					|| (!trusted && kinds[i] == SC_HOP_PROXY)))
		i++;
	plan->consume = i;
	if(i == n)
		return plan->verdict;
	if(trusted || kinds[i] == SC_HOP_SERVER) {
		plan->next = i;
		return plan->verdict;
	}
	/* an outsider's request would go to a host outside the cluster */
	plan->verdict = SC_PLAN_DENY;
	return plan->verdict;
}

/* ---- where a reply may come from ---- */

int sc_reply_src_ok(const sc_addr_t *dst, const sc_addr_t *src, int any_port)
{
	int n;

	if(dst == NULL || src == NULL || dst->af != src->af
			|| dst->proto != src->proto || dst->proto <= 0)
		return 0;
	if(dst->af == 2)
		n = 4;
	else if(dst->af == 10)
		n = 16;
	else
		return 0;
	if(memcmp(dst->ip, src->ip, n) != 0)
		return 0;
	return any_port || dst->port == src->port;
}
