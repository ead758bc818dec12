/*
 * sipcluster - the cluster registrar
 *
 * sipcluster_register() (request_route, REGISTER from an endpoint or SBC):
 *   - checks the REGISTER: Call-ID, CSeq, To, Contacts (at most
 *     max_contacts, "*" only alone with Expires: 0), every Expires value
 *     strictly numeric; a Path only from an SBC listed in the cluster
 *     document and only with "Supported: path" (RFC 3327);
 *   - picks the pair for the AoR by rendezvous hashing over the local pairs
 *     in service (a pair leaving moves only its own AoRs), $du = its active
 *     member: the SIP Server authenticates;
 *   - copies what the binding needs from the request (contacts, Call-ID,
 *     CSeq, User-Agent, source flow, socket, Path from an SBC) into one shm
 *     block handed to a tm TMCB_RESPONSE_OUT callback.
 * The callback runs once, for the final reply tm relayed to the endpoint
 * (what the endpoint was told; a late 200 of an abandoned branch is never
 * relayed). On a 2xx it applies RFC 3261 10.3: the 200 lists the bindings
 * that remain, so a request contact the 200 does not list is removed, one
 * it lists gets the expiry the 200 gives it (its expires parameter, else
 * the Expires header), within [min_expires, max_expires]. Stored with a
 * Path naming this proxy with the endpoint's flow (;received=), this
 * proxy's server_id. dmq_usrloc replicates every insert/update/delete.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../core/dprint.h"
#include "../../core/mem/shm.h"
#include "../../core/globals.h"
#include "../../core/qvalue.h"
#include "../../core/strutils.h"
#include "../../core/ut.h"
#include "../../core/utils/sruid.h"
#include "../../core/trim.h"
#include "../../core/dset.h"
#include "../../core/data_lump_rpl.h"
#include "../../core/tcp_conn.h"
#include "../../core/timer_ticks.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../core/parser/parse_to.h"
#include "../../core/parser/parse_param.h"
#include "../../core/parser/parse_methods.h"
#include "../../core/parser/parse_supported.h"
#include "../../core/parser/contact/parse_contact.h"
#include "../../modules/tm/tm_load.h"
#include "../../modules/usrloc/usrloc.h"

#include "sc_reg.h"
#include "sc_msg.h"
#include "sc_state.h"
#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"
#include "sc_codec.h"
#include "sc_syncd.h"

/* contacts one REGISTER may carry, whatever max_contacts says */
#define SC_REG_MAX_CONTACTS 16
#define SC_AOR_MAX 256
/* seconds a registered TCP/TLS flow outlives its binding */
#define SC_FLOW_GRACE 30

typedef struct sc_reg_contact
{
	str uri;
	int expires; /* from the request's contact param, -1 none */
} sc_reg_contact_t;

typedef struct sc_reg_ctx
{
	str aor;
	str callid;
	str ua;
	str received; /* sip:ip:port[;transport=x] of the endpoint/SBC */
	str path;	  /* the Path vector to store: ours, then the SBC's */
	int cseq;
	int expires_hdr; /* -1 none */
	int star;
	int ncontacts;
	sc_reg_contact_t c[SC_REG_MAX_CONTACTS];
	struct socket_info *sock;
	int tcpconn_id;
	char pair[SC_NAME_MAX + 1];
	char data[]; /* the strings */
} sc_reg_ctx_t;

static struct tm_binds sc_reg_tmb;
static usrloc_api_t sc_ul;
static udomain_t *sc_dom = NULL;
static sruid_t sc_sruid;
static int sc_reg_enabled = 0;

int sc_max_contacts = 10;
int sc_max_expires = 86400;
int sc_min_expires = 0;
int sc_default_expires = 3600;
int sc_case_sensitive = 0;
str sc_usrloc_domain = str_init("location");

stat_var *sc_st_reg_relayed = NULL;
stat_var *sc_st_reg_stored = NULL;
stat_var *sc_st_reg_removed = NULL;
stat_var *sc_st_reg_refused = NULL;

int sc_reg_init(void)
{
	bind_usrloc_t bind_usrloc;

	if(sc_max_expires < 0 || sc_min_expires < 0 || sc_default_expires < 1
			|| (sc_max_expires > 0 && sc_min_expires > sc_max_expires)) {
		LM_ERR("expiry limits: need 0 <= min_expires <= max_expires (0 = no "
			   "limit) and default_expires > 0\n");
		return -1;
	}
	if(load_tm_api(&sc_reg_tmb) < 0)
		return -1;
	bind_usrloc = (bind_usrloc_t)find_export("ul_bind_usrloc", 1, 0);
	if(bind_usrloc == NULL) {
		LM_INFO("usrloc not loaded: sipcluster_register() is disabled\n");
		return 0;
	}
	if(bind_usrloc(&sc_ul) < 0) {
		LM_ERR("cannot bind usrloc: load usrloc.so before sipcluster.so\n");
		return -1;
	}
	if(sc_ul.register_udomain(sc_usrloc_domain.s, &sc_dom) < 0) {
		LM_ERR("cannot register usrloc domain '%.*s'\n", sc_usrloc_domain.len,
				sc_usrloc_domain.s);
		return -1;
	}
	if(sruid_init(&sc_sruid, '-', "scul", SRUID_INC) < 0)
		return -1;
	sc_reg_enabled = 1;
	return sc_sync_init(&sc_ul, sc_dom, sc_max_expires);
}

int sc_reg_child_init(int rank)
{
	if(sc_reg_enabled && sruid_init(&sc_sruid, '-', "scul", SRUID_INC) < 0)
		return -1;
	return 0;
}

/* ---- request side ---- */

/* The AoR exactly as registrar's extract_aor() builds it (so lookup()
 * finds what we store): the unescaped user, "@" and the host when usrloc
 * uses domains, the host in lower case; all of it in lower case unless
 * case_sensitive is 1 (set it like registrar's parameter of that name;
 * both default to 0). */
static int sc_reg_aor(sip_msg_t *msg, str *aor, char *buf, int len)
{
	struct to_body *to;
	struct sip_uri pu;
	str u;
	int i, ulen;

	if(parse_to_header(msg) < 0 || (to = get_to(msg)) == NULL)
		return -1;
	if(parse_uri(to->uri.s, to->uri.len, &pu) < 0)
		return -1;
	if(pu.user.len + pu.host.len + 1 >= len || pu.user.len > 64
			|| pu.host.len > 64)
		return -1;
	u.s = buf;
	u.len = 0;
	if(un_escape(&pu.user, &u) < 0)
		return -1;
	ulen = u.len;
	if(sc_ul.use_domain) {
		if(ulen)
			buf[u.len++] = '@';
		memcpy(buf + u.len, pu.host.s, pu.host.len);
		for(i = u.len; i < u.len + pu.host.len; i++)
			if(buf[i] >= 'A' && buf[i] <= 'Z')
				buf[i] += 'a' - 'A';
		u.len += pu.host.len;
	}
	if(!sc_case_sensitive)
		for(i = 0; i < u.len; i++)
			if(buf[i] >= 'A' && buf[i] <= 'Z')
				buf[i] += 'a' - 'A';
	if(u.len <= 0)
		return -1;
	*aor = u;
	return 0;
}

static void sc_reg_free(void *p)
{
	if(p)
		shm_free(p);
}

static void sc_reg_cb(struct cell *t, int type, struct tmcb_params *ps);

typedef struct sc_rv_ctx
{
	sc_topo_t *t;
	int *idx;
} sc_rv_ctx_t;

static int sc_rv_ok(int i, void *arg)
{
	sc_rv_ctx_t *c = (sc_rv_ctx_t *)arg;
	sc_pair_t *p = &c->t->pairs[c->idx[i]];
	return sc_pair_usable(p) && p->weight > 0;
}

/* pair of view v for an AoR: rendezvous over local pairs, else the other
 * data centers'; fills uri/pair/server (and *remote), counts the REGISTER
 * unless dry */
static int sc_reg_pick_v(sc_view_t *v, const str *aor, char *uri, int ulen,
		char *pair, char *server, int *remote, int dry)
{
	sc_topo_t *t = v->topo;
	sc_proxy_t *self = &t->proxies[v->self];
	int idx[t->npairs > 0 ? t->npairs : 1];
	str names[t->npairs > 0 ? t->npairs : 1];
	int n, i, pass, best = -1;
	sc_rv_ctx_t ctx;

	for(pass = 0; pass < 2 && best < 0; pass++) {
		if(pass == 1 && !sc_cross_dc_failover)
			break;
		n = 0;
		for(i = 0; i < t->npairs; i++) {
			sc_pair_t *p = &t->pairs[i];
			int same = (p->geo.len == self->geo.len
						&& memcmp(p->geo.s, self->geo.s, p->geo.len) == 0);
			if(same != (pass == 0))
				continue;
			idx[n] = i;
			names[n] = p->name;
			n++;
		}
		ctx.t = t;
		ctx.idx = idx;
		i = sc_rendezvous(aor, names, n, sc_rv_ok, &ctx);
		if(i >= 0) {
			best = idx[i];
			if(remote)
				*remote = pass;
		}
	}
	if(best < 0) {
		sc_why_set("no SIP Server in service in %.*s to authenticate REGISTER",
				self->geo.len, self->geo.s);
		return -1;
	}
	{
		sc_pair_t *p = &t->pairs[best];
		int a = sc_pair_active_index(p);
		if(!dry) {
			SC_INC(p->h.registers);
			SC_INC(p->h.calls);
		}
		snprintf(uri, ulen, "%.*s", p->srv[a]->uri.len, p->srv[a]->uri.s);
		snprintf(pair, SC_NAME_MAX + 1, "%.*s", p->name.len, p->name.s);
		snprintf(server, SC_NAME_MAX + 1, "%.*s", p->srv[a]->name.len,
				p->srv[a]->name.s);
	}
	return 0;
}

/* the same on the readers' view: no lock */
static int sc_reg_pick_ex(const str *aor, char *uri, int ulen, char *pair,
		char *server, int *remote, int dry)
{
	int r = sc_reg_pick_v(
			sc_view_get(), aor, uri, ulen, pair, server, remote, dry);

	sc_view_put();
	return r;
}

static int sc_reg_pick(
		const str *aor, char *uri, int ulen, char *pair, char *server)
{
	return sc_reg_pick_ex(aor, uri, ulen, pair, server, NULL, 0);
}

/* where a REGISTER (and so the binding's SIP Server) of aor would go now
 * (sipcluster.which) */
int sc_which_aor(const str *aor, char *pair, char *server, char *uri, int ulen,
		int *remote)
{
	*remote = 0;
	return sc_reg_pick_ex(aor, uri, ulen, pair, server, remote, 1);
}

/* count bindings of aor that are not among the request's contacts */
static int sc_reg_would_exceed(sc_reg_ctx_t *x)
{
	urecord_t *r = NULL;
	ucontact_t *c;
	int n = 0, i, known, res;
	time_t now = time(NULL);

	if(sc_max_contacts <= 0 || x->star)
		return 0;
	sc_ul.lock_udomain(sc_dom, &x->aor);
	res = sc_ul.get_urecord(sc_dom, &x->aor, &r);
	if(res == 0 && r) {
		for(c = r->contacts; c; c = c->next) {
			if(c->expires != 0 && c->expires <= now)
				continue;
			known = 0;
			for(i = 0; i < x->ncontacts; i++)
				if(c->c.len == x->c[i].uri.len
						&& memcmp(c->c.s, x->c[i].uri.s, c->c.len) == 0)
					known = 1;
			if(!known)
				n++;
		}
		sc_ul.release_urecord(r);
	}
	sc_ul.unlock_udomain(sc_dom, &x->aor);
	for(i = 0; i < x->ncontacts; i++)
		if(x->c[i].expires != 0
				&& !(x->c[i].expires < 0 && x->expires_hdr == 0))
			n++;
	return n > sc_max_contacts;
}

/* the strict value of an Expires header or ;expires= parameter */
static int sc_expires_of(str *s, int *out)
{
	unsigned int v;

	if(sc_expires_parse(s->s, s->len, &v) < 0)
		return -1;
	*out = v > 0x7fffffff ? 0x7fffffff : (int)v;
	return 0;
}

/* our Path entry: this proxy, with the flow it holds (;received=) */
static int sc_reg_our_path(str *rcv, char *buf, int len)
{
	char esc[SC_FLOW_MAX * 3 + 1];
	sc_view_t *v;
	sc_proxy_t *self;
	int n, plen;

	n = sc_flow_encode(rcv, esc, sizeof(esc));
	if(n <= 0)
		return -1;
	v = sc_view_get();
	self = &v->topo->proxies[v->self];
	plen = snprintf(buf, len, "<sip:%s%.*s%s:%d;%slr;received=%.*s>",
			self->ip.af == AF_INET6 ? "[" : "", self->address.len,
			self->address.s, self->ip.af == AF_INET6 ? "]" : "", self->port,
			self->transport == SC_TP_TCP	? "transport=tcp;"
			: self->transport == SC_TP_TLS	? "transport=tls;"
			: self->transport == SC_TP_SCTP ? "transport=sctp;"
											: "",
			n, esc);
	sc_view_put();
	return (plen > 0 && plen < len) ? plen : -1;
}

int ki_sipcluster_register(sip_msg_t *msg)
{
	char aorbuf[SC_AOR_MAX], uri[256], pair[SC_NAME_MAX + 1];
	char server[SC_NAME_MAX + 1], rcv[SC_FLOW_MAX + 1], ourpath[512];
	str aor, rcvs, s;
	contact_t *ct;
	struct hdr_field *h;
	sc_reg_ctx_t *x;
	int size, i, r, plen, src, expires_hdr = -1, ncontacts = 0, star = 0;
	char *p;
	struct sip_uri pu;

	if(!sc_reg_enabled) {
		LM_ERR("sipcluster_register() needs usrloc loaded before "
			   "sipcluster\n");
		return -1;
	}
	if(msg->first_line.type != SIP_REQUEST
			|| msg->first_line.u.request.method_value != METHOD_REGISTER)
		return -1;
	/* a proxy that just started stores nothing before it merged the
	 * other proxies' bindings (and before DMQ replicates its own) */
	if(!sc_sync_is_ready()) {
		sc_why_set("registrations are being synchronised from the other "
				   "proxies");
		update_stat(sc_st_unavailable, 1);
		return -1;
	}
	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return sc_refuse(msg, 400, "Bad Request", "unparsable REGISTER");
	if(msg->callid == NULL || msg->cseq == NULL || msg->to == NULL)
		return sc_refuse(msg, 400, "Bad Request",
				"REGISTER without Call-ID, CSeq or To");
	if(sc_reg_aor(msg, &aor, aorbuf, sizeof(aorbuf)) < 0)
		return sc_refuse(
				msg, 400, "Bad To header", "REGISTER without a usable To URI");

	/* Path: only from a listed SBC, and only when the UA supports it */
	src = sc_msg_src(msg);
	if(msg->path != NULL) {
		if(src != SC_SRC_SBC)
			return sc_refuse(msg, 403, "Path not allowed",
					"REGISTER with a Path header from a source that is "
					"not an SBC of the cluster document");
		if(parse_supported(msg) < 0
				|| !(get_supported(msg) & F_OPTION_TAG_PATH)) {
			add_lump_rpl(msg, "Unsupported: path\r\n", 19, LUMP_RPL_HDR);
			return sc_refuse(msg, 420, "Bad Extension",
					"REGISTER with a Path header but without "
					"\"Supported: path\"");
		}
	}

	/* every expiry strictly numeric */
	if(msg->expires) {
		if(sc_expires_of(&msg->expires->body, &expires_hdr) < 0)
			return sc_refuse(msg, 400, "Invalid Expires",
					"REGISTER with a non-numeric Expires header");
	}
	if(parse_contact_headers(msg) < 0)
		return sc_refuse(msg, 400, "Bad Contact", "unparsable Contact");
	for(h = msg->contact; h; h = next_sibling_hdr(h)) {
		contact_body_t *cb = (contact_body_t *)h->parsed;
		if(cb == NULL)
			continue;
		if(cb->star)
			star++;
		for(ct = cb->contacts; ct; ct = ct->next) {
			int e;
			ncontacts++;
			if(ct->expires && sc_expires_of(&ct->expires->body, &e) < 0)
				return sc_refuse(msg, 400, "Invalid expires parameter",
						"REGISTER with a non-numeric ;expires= parameter");
			if(parse_uri(ct->uri.s, ct->uri.len, &pu) < 0)
				return sc_refuse(msg, 400, "Bad Contact URI",
						"REGISTER with an unparsable Contact URI");
		}
	}
	if(star && (ncontacts > 0 || star > 1 || expires_hdr != 0))
		return sc_refuse(msg, 400, "Invalid Contact *",
				"REGISTER with \"Contact: *\" not alone or without "
				"\"Expires: 0\"");
	if(ncontacts > SC_REG_MAX_CONTACTS
			|| (sc_max_contacts > 0 && ncontacts > sc_max_contacts)) {
		update_stat(sc_st_reg_refused, 1);
		return sc_refuse(msg, 403, "Too many contacts",
				"REGISTER with more contacts than max_contacts");
	}

	if(get_src_uri(msg, 0, &rcvs) < 0 || rcvs.len >= (int)sizeof(rcv))
		return -1;
	memcpy(rcv, rcvs.s, rcvs.len);
	rcv[rcvs.len] = '\0';
	rcvs.s = rcv;
	plen = sc_reg_our_path(&rcvs, ourpath, sizeof(ourpath));
	if(plen < 0)
		return -1;

	r = sc_reg_pick(&aor, uri, sizeof(uri), pair, server);
	if(r < 0) {
		update_stat(sc_st_unavailable, 1);
		return -1;
	}

	/* size the shm block */
	size = sizeof(sc_reg_ctx_t) + aor.len + msg->callid->body.len + rcvs.len
		   + plen + 8;
	if(msg->user_agent)
		size += msg->user_agent->body.len;
	for(h = msg->path; h; h = next_sibling_hdr(h))
		size += h->body.len + 1;
	for(h = msg->contact; h; h = next_sibling_hdr(h)) {
		if(h->parsed == NULL)
			continue;
		for(ct = ((contact_body_t *)h->parsed)->contacts; ct; ct = ct->next)
			size += ct->uri.len;
	}
	x = shm_mallocxz(size);
	if(x == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	p = x->data;
#define SC_CP(dst, src)                \
	do {                               \
		memcpy(p, (src).s, (src).len); \
		(dst).s = p;                   \
		(dst).len = (src).len;         \
		p += (src).len;                \
	} while(0)
	SC_CP(x->aor, aor);
	SC_CP(x->callid, msg->callid->body);
	trim(&x->callid);
	if(msg->user_agent) {
		SC_CP(x->ua, msg->user_agent->body);
		trim(&x->ua);
	}
	SC_CP(x->received, rcvs);
	/* path: ours first, then whatever the SBC put */
	x->path.s = p;
	memcpy(p, ourpath, plen);
	p += plen;
	for(h = msg->path; h; h = next_sibling_hdr(h)) {
		*p++ = ',';
		s = h->body;
		trim(&s);
		memcpy(p, s.s, s.len);
		p += s.len;
	}
	x->path.len = p - x->path.s;
	x->cseq = 0;
	if(str2int(&get_cseq(msg)->number, (unsigned int *)&x->cseq) < 0)
		x->cseq = 0;
	x->expires_hdr = expires_hdr;
	x->star = star;
	for(h = msg->contact; h; h = next_sibling_hdr(h)) {
		contact_body_t *cb = (contact_body_t *)h->parsed;
		if(cb == NULL)
			continue;
		for(ct = cb->contacts; ct; ct = ct->next) {
			i = x->ncontacts++;
			SC_CP(x->c[i].uri, ct->uri);
			x->c[i].expires = -1;
			if(ct->expires)
				sc_expires_of(&ct->expires->body, &x->c[i].expires);
		}
	}
#undef SC_CP
	x->sock = msg->rcv.bind_address;
	x->tcpconn_id =
			(msg->rcv.proto == PROTO_UDP) ? -1 : msg->rcv.proto_reserved1;
	snprintf(x->pair, sizeof(x->pair), "%s", pair);
	if(sc_reg_would_exceed(x)) {
		shm_free(x);
		update_stat(sc_st_reg_refused, 1);
		return sc_refuse(msg, 503, "Too many registered contacts",
				"the AoR would have more than max_contacts bindings");
	}
	if(sc_reg_tmb.register_tmcb(
			   msg, 0, TMCB_RESPONSE_OUT, sc_reg_cb, x, sc_reg_free)
			<= 0) {
		LM_ERR("cannot register the REGISTER reply callback\n");
		shm_free(x);
		return -1;
	}
	s.s = uri;
	s.len = strlen(uri);
	if(set_dst_uri(msg, &s) < 0)
		return -1;
	ruri_mark_new();
	sc_remember_cstr(pair, server);
	update_stat(sc_st_reg_relayed, 1);
	LM_DBG("REGISTER for %.*s relayed to %s (%s)\n", aor.len, aor.s, server,
			uri);
	return 1;
}

/* ---- reply side ---- */

/* RFC 3261 10.3: the expiry the 200 gives request contact i; 0 when the
 * 200 does not list it (the binding does not remain) */
static int sc_granted(sc_reg_ctx_t *x, int i, sip_msg_t *rpl)
{
	struct hdr_field *h;
	contact_t *ct;
	int e;

	for(h = rpl->contact; h; h = next_sibling_hdr(h)) {
		contact_body_t *cb;
		if(h->parsed == NULL && parse_contact(h) < 0)
			continue;
		cb = (contact_body_t *)h->parsed;
		for(ct = cb->contacts; ct; ct = ct->next) {
			if(cmp_uri_str(&ct->uri, &x->c[i].uri) != 0)
				continue;
			if(ct->expires && sc_expires_of(&ct->expires->body, &e) == 0)
				return e;
			if(rpl->expires && sc_expires_of(&rpl->expires->body, &e) == 0)
				return e;
			return sc_default_expires;
		}
	}
	return 0;
}

/* a registered TCP/TLS flow lives as long as its binding (the default
 * tcp_connection_lifetime is short, for connections nobody registered) */
static void sc_reg_keep_flow(int conid, int secs)
{
	struct tcp_connection *con;

	if(conid <= 0 || secs <= 0)
		return;
	con = tcpconn_get(conid, 0, 0, 0, 0);
	if(con == NULL)
		return;
	con->lifetime = S_TO_TICKS(secs + SC_FLOW_GRACE);
	con->timeout = get_ticks_raw() + con->lifetime;
	tcpconn_put(con);
}

static void sc_reg_store(sc_reg_ctx_t *x, sip_msg_t *rpl)
{
	urecord_t *r = NULL;
	ucontact_t *c = NULL;
	ucontact_info_t ci;
	int i, res, granted, stored = 0, removed = 0, count, longest = 0;
	time_t now = time(NULL);
	str ua = x->ua.len ? x->ua : (str)str_init("n/a");

	/* the version of an explicit unregister: its tombstones stop an older
	 * copy from coming back (sc_syncd.c sends them to every peer) */
	sc_sync_unreg_begin((long long)now, x->cseq, &x->callid);
	sc_ul.lock_udomain(sc_dom, &x->aor);
	res = sc_ul.get_urecord(sc_dom, &x->aor, &r);
	if(res < 0) {
		LM_ERR("usrloc lookup of %.*s failed\n", x->aor.len, x->aor.s);
		goto done;
	}
	if(x->star) {
		if(res == 0) {
			ucontact_t *next;
			for(c = r->contacts; c; c = next) {
				next = c->next;
				sc_ul.delete_ucontact(r, c);
				removed++;
			}
		}
		goto done;
	}
	if(res > 0) {
		if(sc_ul.insert_urecord(sc_dom, &x->aor, &r) < 0) {
			LM_ERR("cannot create the usrloc record of %.*s\n", x->aor.len,
					x->aor.s);
			r = NULL;
			goto done;
		}
	}
	for(i = 0; i < x->ncontacts; i++) {
		granted = (int)sc_expires_clamp((unsigned int)sc_granted(x, i, rpl),
				(unsigned int)sc_min_expires, (unsigned int)sc_max_expires);
		c = NULL;
		res = sc_ul.get_ucontact(
				r, &x->c[i].uri, &x->callid, &x->path, x->cseq, &c);
		if(res == -1 || res == -2) {
			/* an older or the same CSeq: a retransmitted 200 */
			LM_DBG("binding %.*s of %.*s already up to date\n", x->c[i].uri.len,
					x->c[i].uri.s, x->aor.len, x->aor.s);
			continue;
		}
		if(granted == 0) {
			if(res == 0 && c) {
				sc_ul.delete_ucontact(r, c);
				removed++;
			}
			continue;
		}
		if(res == 1 && sc_max_contacts > 0) {
			ucontact_t *k;
			count = 0;
			for(k = r->contacts; k; k = k->next)
				if(k->expires == 0 || k->expires > now)
					count++;
			if(count >= sc_max_contacts) {
				LM_NOTICE("binding %.*s of %.*s not stored: max_contacts (%d) "
						  "reached\n",
						x->c[i].uri.len, x->c[i].uri.s, x->aor.len, x->aor.s,
						sc_max_contacts);
				update_stat(sc_st_reg_refused, 1);
				continue;
			}
		}
		memset(&ci, 0, sizeof(ci));
		ci.c = &x->c[i].uri;
		ci.received = x->received;
		ci.path = &x->path;
		ci.expires = now + granted;
		ci.q = Q_UNSPECIFIED;
		ci.callid = &x->callid;
		ci.cseq = x->cseq;
		ci.user_agent = &ua;
		ci.sock = x->sock;
		ci.methods = ALL_METHODS;
		ci.server_id = server_id;
		ci.tcpconn_id = x->tcpconn_id;
		ci.last_modified = now;
		if(res == 1) {
			if(sruid_next_safe(&sc_sruid) < 0) {
				LM_ERR("cannot generate a ruid\n");
				continue;
			}
			ci.ruid = sc_sruid.uid;
			if(sc_ul.insert_ucontact(r, &x->c[i].uri, &ci, &c) < 0) {
				LM_ERR("cannot store binding %.*s of %.*s\n", x->c[i].uri.len,
						x->c[i].uri.s, x->aor.len, x->aor.s);
				continue;
			}
		} else {
			if(sc_ul.update_ucontact(r, c, &ci) < 0) {
				LM_ERR("cannot update binding %.*s of %.*s\n", x->c[i].uri.len,
						x->c[i].uri.s, x->aor.len, x->aor.s);
				continue;
			}
		}
		stored++;
		if(granted > longest)
			longest = granted;
		LM_DBG("binding %.*s of %.*s stored for %d s via %s\n", x->c[i].uri.len,
				x->c[i].uri.s, x->aor.len, x->aor.s, granted, x->pair);
	}
done:
	if(r)
		sc_ul.release_urecord(r);
	sc_ul.unlock_udomain(sc_dom, &x->aor);
	/* the tombstones of what this REGISTER removed, to every peer */
	sc_sync_unreg_end();
	if(stored)
		update_stat(sc_st_reg_stored, stored);
	if(removed)
		update_stat(sc_st_reg_removed, removed);
	if(longest > 0)
		sc_reg_keep_flow(x->tcpconn_id, longest);
}

/* TMCB_RESPONSE_OUT: the final reply tm relayed to the endpoint */
static void sc_reg_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	sc_reg_ctx_t *x;

	if(ps == NULL || ps->param == NULL || *ps->param == NULL)
		return;
	x = (sc_reg_ctx_t *)(*ps->param);
	if(ps->code < 200)
		return;
	if(ps->code >= 300) {
		/* 401/407 challenges, 403, 423, 5xx: relayed, nothing stored */
		if(ps->code != 401 && ps->code != 407)
			update_stat(sc_st_reg_refused, 1);
		return;
	}
	/* a 2xx tm made up itself is not the SIP Server's */
	if(ps->rpl == NULL || ps->rpl == FAKED_REPLY)
		return;
	/* only the SIP Server's own reply: from where the branch went (the
	 * cfg's reply_route drops any other before tm sees it; this holds
	 * for a cfg without it too) and from a cluster SIP Server */
	{
		int from_server;
		from_server = sc_src_server(sc_view_get()->topo, ps->rpl) != NULL;
		sc_view_put();
		if(!from_server
				|| !sc_reply_from_branch(t, t->relayed_reply_branch, ps->rpl)) {
			update_stat(sc_st_replies_dropped, 1);
			sc_refuse_log(ps->rpl, 0,
					"2xx to a REGISTER not from the SIP Server it was sent "
					"to: no binding stored");
			return;
		}
	}
	if(ps->rpl->msg_flags & FL_SHM_CLONE) {
		/* a 2xx is relayed as it arrives, from the pkg copy: never here */
		LM_WARN("2xx to REGISTER of %.*s not stored: reply is a "
				"transaction copy\n",
				x->aor.len, x->aor.s);
		return;
	}
	if(parse_headers(ps->rpl, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the 2xx to REGISTER of %.*s\n", x->aor.len,
				x->aor.s);
		return;
	}
	sc_reg_store(x, ps->rpl);
}
