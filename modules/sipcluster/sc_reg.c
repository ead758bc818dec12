/*
 * sipcluster - the cluster registrar
 *
 * sipcluster_register() (request_route, REGISTER from an endpoint or SBC):
 *   - picks the pair for the AoR by rendezvous hashing over the local pairs
 *     in service (a pair leaving moves only its own AoRs), $du = its active
 *     member: the SIP Server authenticates;
 *   - copies what the binding needs from the request (contacts, Call-ID,
 *     CSeq, User-Agent, source flow, socket, Path from an SBC) into one shm
 *     block handed to a tm TMCB_RESPONSE_IN callback.
 * The callback stores the binding(s) in usrloc only on a 2xx of that very
 * transaction, with the expiry the SIP Server granted, a Path that names
 * this proxy with the endpoint's flow (;received=), this proxy's server_id.
 * dmq_usrloc replicates every insert/update/delete to the other proxies.
 * Every reply is relayed by tm as usual.
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
#include "../../core/utils/sruid.h"
#include "../../core/trim.h"
#include "../../core/dset.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../core/parser/parse_to.h"
#include "../../core/parser/parse_expires.h"
#include "../../core/parser/parse_param.h"
#include "../../core/parser/parse_methods.h"
#include "../../core/parser/contact/parse_contact.h"
#include "../../modules/tm/tm_load.h"
#include "../../modules/usrloc/usrloc.h"

#include "sc_mod.h"
#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"

#define SC_REG_MAX_CONTACTS 16

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
	char pair[64];
	char data[]; /* the strings */
} sc_reg_ctx_t;

static struct tm_binds sc_reg_tmb;
static usrloc_api_t sc_ul;
static udomain_t *sc_dom = NULL;
static sruid_t sc_sruid;
static int sc_reg_enabled = 0;

int sc_max_contacts = 10;
str sc_usrloc_domain = str_init("location");

stat_var *sc_st_reg_relayed = NULL;
stat_var *sc_st_reg_stored = NULL;
stat_var *sc_st_reg_removed = NULL;
stat_var *sc_st_reg_refused = NULL;

int sc_reg_init(void)
{
	bind_usrloc_t bind_usrloc;

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
	return 0;
}

int sc_reg_child_init(int rank)
{
	if(sc_reg_enabled && sruid_init(&sc_sruid, '-', "scul", SRUID_INC) < 0)
		return -1;
	return 0;
}

/* percent-encode a URI for a URI parameter value (path module compatible) */
static int sc_escape(const str *in, char *out, int len)
{
	str si, so;

	si = *in;
	so.s = out;
	so.len = len;
	if(escape_param(&si, &so) < 0)
		return -1;
	return so.len;
}

/* ---- request side ---- */

static int sc_reg_aor(sip_msg_t *msg, str *aor, char *buf, int len)
{
	struct to_body *to;
	struct sip_uri pu;
	int n;

	if(parse_to_header(msg) < 0 || (to = get_to(msg)) == NULL)
		return -1;
	if(parse_uri(to->uri.s, to->uri.len, &pu) < 0 || pu.user.len <= 0)
		return -1;
	if(sc_ul.use_domain)
		n = snprintf(buf, len, "%.*s@%.*s", pu.user.len, pu.user.s, pu.host.len,
				pu.host.s);
	else
		n = snprintf(buf, len, "%.*s", pu.user.len, pu.user.s);
	if(n <= 0 || n >= len)
		return -1;
	aor->s = buf;
	aor->len = n;
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

/* pair for an AoR: rendezvous over local pairs, else the other data
 * centers'; fills uri/pair/server, lock held */
static int sc_reg_pick(
		const str *aor, char *uri, int ulen, char *pair, char *server)
{
	sc_topo_t *t = sc_shared->topo;
	sc_proxy_t *self = &t->proxies[sc_shared->self];
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
		if(i >= 0)
			best = idx[i];
	}
	if(best < 0) {
		snprintf(sc_route_reason, sizeof(sc_route_reason),
				"no SIP Server in service in %.*s to authenticate REGISTER",
				self->geo.len, self->geo.s);
		return -1;
	}
	{
		sc_pair_t *p = &t->pairs[best];
		int a = sc_pair_active_index(p);
		p->h.registers++;
		p->h.calls++;
		snprintf(uri, ulen, "%.*s", p->srv[a]->uri.len, p->srv[a]->uri.s);
		snprintf(pair, 64, "%.*s", p->name.len, p->name.s);
		snprintf(server, 64, "%.*s", p->srv[a]->name.len, p->srv[a]->name.s);
	}
	return 0;
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

/* remember the branch for sipcluster_next(): shared with sc_route.c */
void sc_route_remember(const char *pair, const char *server);

int ki_sipcluster_register(sip_msg_t *msg)
{
	char aorbuf[256], uri[96], pair[64], server[64], rcv[128];
	char ourpath[512], esc[300];
	str aor, rcvs, s;
	contact_t *ct;
	struct hdr_field *h;
	sc_reg_ctx_t *x;
	int size, n, i, r, plen = 0;
	char *p;
	sc_proxy_t *self;
	struct sip_uri pu;

	if(!sc_reg_enabled) {
		LM_ERR("sipcluster_register() needs usrloc loaded before "
			   "sipcluster\n");
		return -1;
	}
	if(msg->first_line.type != SIP_REQUEST
			|| msg->first_line.u.request.method_value != METHOD_REGISTER)
		return -1;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse REGISTER\n");
		return -1;
	}
	if(sc_reg_aor(msg, &aor, aorbuf, sizeof(aorbuf)) < 0) {
		LM_NOTICE("REGISTER from %s:%d without a usable To URI\n",
				ip_addr2a(&msg->rcv.src_ip), msg->rcv.src_port);
		return -2;
	}
	if(msg->callid == NULL || msg->cseq == NULL) {
		return -2;
	}
	if(parse_contact_headers(msg) < 0)
		return -2;
	if(get_src_uri(msg, 0, &rcvs) < 0 || rcvs.len >= (int)sizeof(rcv))
		return -1;
	memcpy(rcv, rcvs.s, rcvs.len);
	rcv[rcvs.len] = '\0';
	rcvs.s = rcv;

	/* our Path entry: this proxy, with the endpoint's (or SBC's) flow */
	lock_get(&sc_shared->lock);
	self = &sc_shared->topo->proxies[sc_shared->self];
	n = sc_escape(&rcvs, esc, sizeof(esc) - 1);
	if(n > 0)
		plen = snprintf(ourpath, sizeof(ourpath),
				"<sip:%s%.*s%s:%d;%slr;received=%.*s>",
				self->ip.af == AF_INET6 ? "[" : "", self->address.len,
				self->address.s, self->ip.af == AF_INET6 ? "]" : "", self->port,
				self->transport == SC_TP_TCP	? "transport=tcp;"
				: self->transport == SC_TP_TLS	? "transport=tls;"
				: self->transport == SC_TP_SCTP ? "transport=sctp;"
												: "",
				n, esc);
	r = sc_reg_pick(&aor, uri, sizeof(uri), pair, server);
	lock_release(&sc_shared->lock);
	if(plen <= 0 || plen >= (int)sizeof(ourpath))
		return -1;
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
	x->expires_hdr = -1;
	if(msg->expires) {
		if(msg->expires->parsed == NULL)
			parse_expires(msg->expires);
		if(msg->expires->parsed)
			x->expires_hdr = ((exp_body_t *)msg->expires->parsed)->val;
	}
	for(h = msg->contact; h; h = next_sibling_hdr(h)) {
		contact_body_t *cb = (contact_body_t *)h->parsed;
		if(cb == NULL)
			continue;
		if(cb->star)
			x->star = 1;
		for(ct = cb->contacts; ct; ct = ct->next) {
			if(x->ncontacts >= SC_REG_MAX_CONTACTS) {
				LM_WARN("REGISTER for %.*s: more than %d contacts, the rest is "
						"ignored\n",
						aor.len, aor.s, SC_REG_MAX_CONTACTS);
				break;
			}
			i = x->ncontacts++;
			SC_CP(x->c[i].uri, ct->uri);
			x->c[i].expires = -1;
			if(ct->expires && ct->expires->body.len > 0) {
				unsigned int e;
				if(str2int(&ct->expires->body, &e) == 0)
					x->c[i].expires = (int)e;
			}
		}
	}
#undef SC_CP
	x->sock = msg->rcv.bind_address;
	x->tcpconn_id =
			(msg->rcv.proto == PROTO_UDP) ? -1 : msg->rcv.proto_reserved1;
	snprintf(x->pair, sizeof(x->pair), "%s", pair);
	/* contacts must be SIP URIs */
	for(i = 0; i < x->ncontacts; i++) {
		if(parse_uri(x->c[i].uri.s, x->c[i].uri.len, &pu) < 0) {
			LM_NOTICE("REGISTER for %.*s: bad contact URI\n", aor.len, aor.s);
			shm_free(x);
			return -2;
		}
	}
	if(sc_reg_would_exceed(x)) {
		LM_NOTICE("REGISTER for %.*s refused: more than max_contacts (%d) "
				  "bindings\n",
				aor.len, aor.s, sc_max_contacts);
		update_stat(sc_st_reg_refused, 1);
		shm_free(x);
		return -3;
	}
	if(sc_reg_tmb.register_tmcb(
			   msg, 0, TMCB_RESPONSE_IN, sc_reg_cb, x, sc_reg_free)
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
	sc_route_remember(pair, server);
	update_stat(sc_st_reg_relayed, 1);
	LM_DBG("REGISTER for %.*s relayed to %s (%s)\n", aor.len, aor.s, server,
			uri);
	return 1;
}

/* ---- reply side ---- */

/* the expiry the SIP Server granted to request contact c */
static int sc_granted(sc_reg_ctx_t *x, int i, sip_msg_t *rpl)
{
	struct hdr_field *h;
	contact_t *ct;
	unsigned int e;
	int nrc = 0, single = -1;

	for(h = rpl->contact; h; h = next_sibling_hdr(h)) {
		contact_body_t *cb;
		if(h->parsed == NULL && parse_contact(h) < 0)
			continue;
		cb = (contact_body_t *)h->parsed;
		for(ct = cb->contacts; ct; ct = ct->next) {
			int ce = -1;
			nrc++;
			if(ct->expires && str2int(&ct->expires->body, &e) == 0)
				ce = (int)e;
			if(ct->uri.len == x->c[i].uri.len
					&& memcmp(ct->uri.s, x->c[i].uri.s, ct->uri.len) == 0) {
				if(ce >= 0)
					return ce;
			}
			single = ce;
		}
	}
	/* one contact each way: the SIP Server rewrote the URI */
	if(nrc == 1 && x->ncontacts == 1 && single >= 0)
		return single;
	if(rpl->expires) {
		if(rpl->expires->parsed == NULL)
			parse_expires(rpl->expires);
		if(rpl->expires->parsed)
			return ((exp_body_t *)rpl->expires->parsed)->val;
	}
	if(x->c[i].expires >= 0)
		return x->c[i].expires;
	if(x->expires_hdr >= 0)
		return x->expires_hdr;
	return 3600;
}

static void sc_reg_store(sc_reg_ctx_t *x, sip_msg_t *rpl)
{
	urecord_t *r = NULL;
	ucontact_t *c = NULL;
	ucontact_info_t ci;
	int i, res, granted, stored = 0, removed = 0, count;
	time_t now = time(NULL);
	str ua = x->ua.len ? x->ua : (str)str_init("n/a");

	sc_ul.lock_udomain(sc_dom, &x->aor);
	res = sc_ul.get_urecord(sc_dom, &x->aor, &r);
	if(res < 0) {
		LM_ERR("usrloc lookup of %.*s failed\n", x->aor.len, x->aor.s);
		goto done;
	}
	if(x->star) {
		if(res == 0) {
			for(c = r->contacts; c; c = c->next)
				removed++;
			sc_ul.delete_urecord(sc_dom, &x->aor, r);
			r = NULL;
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
		granted = sc_granted(x, i, rpl);
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
		LM_DBG("binding %.*s of %.*s stored for %d s via %s\n", x->c[i].uri.len,
				x->c[i].uri.s, x->aor.len, x->aor.s, granted, x->pair);
	}
done:
	if(r)
		sc_ul.release_urecord(r);
	sc_ul.unlock_udomain(sc_dom, &x->aor);
	if(stored)
		update_stat(sc_st_reg_stored, stored);
	if(removed)
		update_stat(sc_st_reg_removed, removed);
}

static void sc_reg_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	sc_reg_ctx_t *x;

	if(ps == NULL || ps->param == NULL || *ps->param == NULL)
		return;
	x = (sc_reg_ctx_t *)(*ps->param);
	if(ps->rpl == NULL || ps->rpl == FAKED_REPLY)
		return;
	if(ps->code < 200)
		return;
	if(ps->code >= 300) {
		/* 401/407 challenges, 403, 423, 5xx: relayed, nothing stored */
		if(ps->code != 401 && ps->code != 407)
			update_stat(sc_st_reg_refused, 1);
		return;
	}
	if(parse_headers(ps->rpl, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the 2xx to REGISTER of %.*s\n", x->aor.len,
				x->aor.s);
		return;
	}
	sc_reg_store(x, ps->rpl);
}
