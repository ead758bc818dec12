/*
 * sipcluster - parsers and encoders of message-derived strings, and the
 * route-set trust rule
 *
 * Everything here is pure C on bytes (no SIP parser, tm or usrloc), so the
 * Check unit tests and the libFuzzer targets link it directly:
 *   - SipHash-2-4 and the ;scp= pin codec (pair name + MAC over Call-ID),
 *   - the flow token codec (;scf= / ;received= values: an escaped URI),
 *   - strict Expires / ;expires= parsing and clamping,
 *   - the X-Genesys-Route header body,
 *   - URI parameter look-up,
 *   - sc_route_plan(): which Route entries a proxy consumes and where a
 *     request may go, given who sent it,
 *   - sc_reply_src_ok(): whether a reply comes from where its branch went.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_CODEC_H_
#define _SC_CODEC_H_

#include <stdint.h>
#include <stddef.h>
#include "../../core/str.h"

/* Record-Route parameters */
#define SC_RR_PARAM "scp"	/* pinned pair: scp=<pair>[~<16 hex MAC>] */
#define SC_FLOW_PARAM "scf" /* the endpoint's flow: scf=<escaped URI> */
/* the server-id of the proxy that wrote a Record-Route naming its
 * geo-location's rr-host (it holds the endpoint's flow): sch=<1-255> */
#define SC_HOLDER_PARAM "sch"

#define SC_KEY_LEN 16
#define SC_MAC_HEX 16
#define SC_NAME_MAX 63
#define SC_FLOW_MAX 160 /* longest flow URI (unescaped) */

/* ---- SipHash-2-4 (Aumasson, Bernstein), 64-bit output ---- */
uint64_t sc_siphash(
		const unsigned char key[SC_KEY_LEN], const void *data, size_t len);

/* a 128-bit key from a secret string of any length */
void sc_key_derive(const char *secret, int len, unsigned char key[SC_KEY_LEN]);

/* ---- pin: ;scp=<pair>[~<mac>] ---- */

/* a pair name as the document allows it ([A-Za-z0-9._-], 1-63) */
int sc_name_valid(const str *s);

/* ";scp=<pair>~<mac>" (key non-NULL) or ";scp=<pair>" into buf; the MAC
 * binds the pin to the dialog's Call-ID. Returns the length or -1. */
int sc_pin_encode(const str *pair, const str *callid, const unsigned char *key,
		char *buf, int len);

/* split a pin value into pair and MAC (mac->len 0 when absent); 0 when the
 * value is well formed, -1 otherwise */
int sc_pin_decode(const str *val, str *pair, str *mac);

/* 1 when mac is the MAC of (pair, callid) under key */
int sc_pin_verify(const str *pair, const str *mac, const str *callid,
		const unsigned char *key);

/* ---- flow token: an escaped SIP URI in a URI parameter value ---- */

/* escape uri (sip:host:port[;transport=x]) for a URI parameter value */
int sc_flow_encode(const str *uri, char *out, int len);

/* unescape and check a flow value: the result is "sip:" or "sips:", a host
 * (IPv4, [IPv6] or name), an optional port and only ";transport=..."
 * parameters; 0 and out/out_len on success, -1 otherwise */
int sc_flow_decode(const str *val, char *out, int len, int *out_len);

/* ---- Expires ---- */

/* delta-seconds: optional LWS, 1 or more digits, optional LWS; a value
 * above 2^32-1 is 2^32-1 (RFC 3261 20.19). Empty, signed, non-numeric or
 * trailing garbage: -1. */
int sc_expires_parse(const char *s, int len, unsigned int *out);

/* clamp a granted expiry: 0 stays 0 (remove); else into [lo, hi]
 * (hi 0 = no upper bound) */
unsigned int sc_expires_clamp(unsigned int e, unsigned int lo, unsigned int hi);

/* ---- X-Genesys-Route ---- */

/* the next hop named by an X-Genesys-Route header body: "sip:..." or
 * "<sip:...>", optional LWS around it; the URI must be sip:/sips:, without
 * whitespace or control characters, at most 255 bytes. 0 and uri (pointing
 * into s) on success, -1 otherwise. */
int sc_xgr_parse(const char *s, int len, str *uri);

/* ---- URI parameters ---- */

/* value of URI parameter name in params ("a=1;scp=x;lr"): 0 found (val may
 * be empty), -1 not found */
int sc_uri_param(const str *params, const char *name, str *val);

/* ---- the route-set rule ---- */

/* who sent the request */
typedef enum sc_src
{
	SC_SRC_OUTSIDER = 0, /* an endpoint, or anybody not in the document */
	SC_SRC_SBC = 1,		 /* a listed SBC: trusted for Path only */
	SC_SRC_PROXY = 2,	 /* a proxy of the cluster */
	SC_SRC_SERVER = 3	 /* a SIP Server (HA pair member) */
} sc_src_t;

#define sc_src_trusted(s) ((s) >= SC_SRC_PROXY)

/* what one Route entry names */
typedef enum sc_hop_kind
{
	SC_HOP_FOREIGN = 0,
	SC_HOP_SELF = 1,
	SC_HOP_PROXY = 2,
	SC_HOP_SERVER = 3
} sc_hop_kind_t;

typedef enum sc_verdict
{
	SC_PLAN_OK = 0,
	SC_PLAN_DENY = 1
} sc_verdict_t;

typedef struct sc_plan
{
	int consume; /* leading entries to remove */
	int next;	 /* entry that is the next hop, -1 none */
	int verdict; /* sc_verdict_t */
} sc_plan_t;

/* The rule, for a Route set whose entries name kinds[0..n-1]:
 *  - entries naming this proxy are always consumed;
 *  - from an untrusted source (outsider, SBC) entries naming other proxies
 *    are consumed too (any proxy reaches the SIP Servers); what remains
 *    must start with a cluster SIP Server, else the request is refused;
 *  - from a trusted source (proxy, SIP Server) the first entry left is the
 *    next hop (it is another proxy holding an endpoint's flow, or the hop
 *    the SIP Server chose).
 * Returns verdict. */
int sc_route_plan(int src, const int *kinds, int n, sc_plan_t *plan);

/* ---- where a reply may come from ----
 * tm matches a reply to its transaction by the Via branch alone, and the
 * branch is computed from what the request's sender chose: anybody who can
 * send a packet could answer for the SIP Server. A reply counts only when
 * it comes from the destination of the branch it matches: the same address
 * (family and bytes), the same transport (Kamailio's PROTO_* numbers) and
 * the same port, the port excepted where any_port says so (a document
 * element reached over a connection whose port the document leaves open,
 * as for requests: sc_topo_*_by_src). Address bytes past the family's
 * length are ignored. */
typedef struct sc_addr
{
	int af; /* AF_INET (2) or AF_INET6 (10) */
	unsigned char ip[16];
	int port;
	int proto;
} sc_addr_t;

/* 1 when a reply from src may count for a branch sent to dst */
int sc_reply_src_ok(const sc_addr_t *dst, const sc_addr_t *src, int any_port);

#endif
