/*
 * sipcluster - routing functions for the cfg (and KEMI)
 *
 *  sipcluster_route()         new request from an endpoint: $du = active
 *                             member of a local pair chosen by SWRR (or of
 *                             another data center's pair)
 *  sipcluster_next()          failure_route: the partner member, then the
 *                             next pair (the failed member is probed at once)
 *  sipcluster_record_route()  branch_route: Record-Route with ;scp=<pair>
 *                             (and its MAC) and ;scf=<the endpoint's flow>
 *  sipcluster_loose_route()   the Route set of an initial request
 *  sipcluster_dialog()        in-dialog request: the Route set, then the
 *                             pinned pair's active member (from endpoints)
 *                             or the next hop / the endpoint's flow (from
 *                             the cluster)
 *  sipcluster_x_genesys_route() honour X-Genesys-Route from a SIP Server,
 *                             strip it from anybody else
 *  sipcluster_check_relay()   onsend_route: an outsider's request leaves
 *                             only towards a cluster SIP Server
 *
 * The trust rule (who may send a request where) is one function,
 * sc_route_plan() in sc_codec.c; this file feeds it the classified Route
 * entries and the source of the message (sc_msg_src(), once per message).
 *
 * Layer: above sc_msg (who sent it, refusals, the per-transaction memory
 * $xavp(sipcluster)) and sc_state (views, the writers' lock); called by
 * the exports (sipcluster_mod.c) and sipcluster.which (sc_rpc.c) only.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/mem/shm.h"
#include "../../core/dset.h"
#include "../../core/xavp.h"
#include "../../core/data_lump.h"
#include "../../core/forward.h"
#include "../../core/onsend.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../core/parser/parse_rr.h"
#include "../../core/parser/hf.h"
#include "../../core/parser/parse_to.h"
#include "../../core/trim.h"
#include "../../core/strutils.h"
#include "../../core/ut.h"
#include "../../core/resolve.h"
#include "../../modules/rr/api.h"

#include "sc_route.h"
#include "sc_msg.h"
#include "sc_state.h"
#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"
#include "sc_codec.h"

#define SC_URI_BUF 256
#define SC_PIN_BUF (SC_NAME_MAX + SC_MAC_HEX + 2)
/* Route entries one request may carry */
#define SC_ROUTES_MAX 64

static struct rr_binds sc_rrb;
static str sc_xgr_name = str_init("X-Genesys-Route");

/* modparam: a request from the cluster that reaches a proxy by its data
 * center's rr-host goes on to the proxy holding the endpoint's flow: 0
 * never, 1 for connection-oriented flows (TCP, TLS, WS), 2 always */
int sc_rr_handover = 1;

stat_var *sc_st_routed = NULL;
stat_var *sc_st_failovers = NULL;
stat_var *sc_st_cross_dc = NULL;
stat_var *sc_st_retargeted = NULL;
stat_var *sc_st_handed_over = NULL;
stat_var *sc_st_xgr_used = NULL;
stat_var *sc_st_xgr_dropped = NULL;

int sc_route_init(void)
{
	if(load_rr_api(&sc_rrb) < 0) {
		LM_ERR("cannot bind the rr API: load rr.so before sipcluster.so\n");
		return -1;
	}
	if(sc_rr_handover < 0 || sc_rr_handover > 2) {
		LM_ERR("rr_handover must be 0 (never), 1 (TCP/TLS/WS flows) or 2 "
			   "(always), not %d\n",
				sc_rr_handover);
		return -1;
	}
	return 0;
}

/* ---- lines an outage would repeat for every request ---- */

enum
{
	SC_RL_ROUTE = 0, /* no pair to route a new request to */
	SC_RL_NEXT,		 /* no failover destination left */
	SC_RL_FAILOVER,	 /* a member did not answer, failing over */
	SC_RL_KINDS
};

/* per process: 1 when a line of this kind may be logged now, with
 * *suppressed the number not logged since the last one */
static int sc_rl_kind(int kind, unsigned int *suppressed)
{
	static long long last[SC_RL_KINDS];
	static unsigned int skipped[SC_RL_KINDS];
	long long now = sc_now_ms();

	*suppressed = 0;
	if(sc_log_interval > 0 && last[kind] != 0
			&& now - last[kind] < (long long)sc_log_interval * 1000) {
		skipped[kind]++;
		return 0;
	}
	*suppressed = skipped[kind];
	skipped[kind] = 0;
	last[kind] = now;
	return 1;
}

/* ---- the Route set ---- */

/* what the Route set of the current message decided (per process, for the
 * message being routed: computed once, lumps added once) */
typedef struct sc_rset
{
	unsigned int id;
	int pid;
	int valid;
	int src;
	int verdict;
	int consumed;
	int has_next;
	char next[SC_URI_BUF]; /* the next hop: a Route entry kept in place */
	int next_kind;
	sc_ip_t next_ip; /* the next entry's address when it is an IP */
	int next_port;
	int next_proxy;				/* proxy index when next_kind is SC_HOP_PROXY */
	int next_handover;			/* the next proxy holds the endpoint's flow */
	unsigned int gen;			/* topology the indexes belong to */
	char pin[SC_PIN_BUF];		/* ;scp= of a consumed cluster entry */
	char flow[SC_FLOW_MAX + 1]; /* ;scf= or ;received= of our own entry */
	int flow_len;
} sc_rset_t;

static sc_rset_t sc_rs;

typedef struct sc_rentry
{
	struct hdr_field *h;
	rr_t *r;
	int kind;
	int proxy; /* index of the proxy it names */
	sc_ip_t ip;
	int port;
	int has_ip;
	str host;
	int uport; /* the URI's port, 0 when it names none */
	int handover;
	int wants_holder; /* its flow is one to hand to its holder */
	str params;
} sc_rentry_t;

/* a flow parameter asking to be handed to its holder (rr_handover);
 * decided before the topology is looked at */
static int sc_rr_wants_handover(sc_rentry_t *e)
{
	char flow[SC_FLOW_MAX + 1];
	int n, af;
	str v, f;

	if(sc_rr_handover == 0 || sc_uri_param(&e->params, SC_FLOW_PARAM, &v) < 0
			|| sc_flow_decode(&v, flow, sizeof(flow), &n) < 0 || n <= 0)
		return 0;
	if(sc_rr_handover == 2)
		return 1;
	f.s = flow;
	f.len = n;
	return sc_uri_proto(&f, &af) != SC_TP_UDP;
}

/* an entry naming a data center's rr-host: one of that geo-location's
 * proxies. Ours: consumed here, unless a request from the cluster must
 * reach the endpoint over a flow another proxy of ours holds (sch=);
 * another data center's: its holder, else its first proxy. */
static void sc_rr_classify(sc_topo_t *t, int self, sc_rentry_t *e, int trusted)
{
	sc_proxy_t *g, *h = NULL, *me = &t->proxies[self];
	unsigned int id;
	str v;

	g = sc_topo_proxy_by_rr_host(t, &e->host, e->uport);
	if(g == NULL)
		return; /* an alias of ours (check_self) stays ours */
	if(sc_uri_param(&e->params, SC_HOLDER_PARAM, &v) == 0 && v.len > 0
			&& v.len <= 3 && str2int(&v, &id) == 0) {
		h = sc_topo_proxy_by_id(t, (int)id);
		if(h
				&& (h->geo.len != g->geo.len
						|| memcmp(h->geo.s, g->geo.s, g->geo.len) != 0))
			h = NULL;
	}
	if(g->geo.len == me->geo.len
			&& memcmp(g->geo.s, me->geo.s, me->geo.len) == 0) {
		e->kind = SC_HOP_SELF;
		if(trusted && h != NULL && h->index != self && e->wants_holder) {
			e->kind = SC_HOP_PROXY;
			e->proxy = h->index;
			e->handover = 1;
		}
		return;
	}
	e->kind = SC_HOP_PROXY;
	e->proxy = h ? h->index : g->index;
}

/* remove the first k entries of e[] from the message with one lump per
 * header */
static int sc_rset_remove(sip_msg_t *msg, sc_rentry_t *e, int n, int k)
{
	int i = 0, off, len;

	while(i < k) {
		struct hdr_field *h = e[i].h;
		int j = i;
		while(j < n && e[j].h == h)
			j++;
		/* entries i..j-1 belong to h */
		if(j <= k) {
			off = h->name.s - msg->buf;
			len = h->len;
		} else {
			off = e[i].r->nameaddr.name.s - msg->buf;
			len = e[k].r->nameaddr.name.s - e[i].r->nameaddr.name.s;
		}
		if(del_lump(msg, off, len, 0) == NULL) {
			LM_ERR("cannot remove a Route header\n");
			return -1;
		}
		i = j;
	}
	return 0;
}

static sc_rset_t *sc_rset_get(sip_msg_t *msg)
{
	sc_rentry_t e[SC_ROUTES_MAX];
	int kinds[SC_ROUTES_MAX];
	struct hdr_field *h;
	struct sip_uri pu;
	rr_t *r;
	int n = 0, i, self;
	sc_plan_t plan;
	sc_view_t *view;
	sc_topo_t *t;
	str v;

	if(sc_rs.valid && sc_rs.id == msg->id && sc_rs.pid == msg->pid)
		return &sc_rs;
	memset(&sc_rs, 0, sizeof(sc_rs));
	sc_rs.src = sc_msg_src(msg);
	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return NULL;
	for(h = msg->route; h; h = next_sibling_hdr(h)) {
		if(h->parsed == NULL && parse_rr(h) < 0)
			return NULL;
		for(r = (rr_t *)h->parsed; r; r = r->next) {
			if(n >= SC_ROUTES_MAX) {
				LM_DBG("more than %d Route entries\n", SC_ROUTES_MAX);
				return NULL;
			}
			memset(&e[n], 0, sizeof(e[n]));
			e[n].proxy = -1;
			e[n].h = h;
			e[n].r = r;
			if(parse_uri(r->nameaddr.uri.s, r->nameaddr.uri.len, &pu) < 0)
				return NULL;
			e[n].params = pu.params;
			e[n].host = pu.host;
			e[n].uport = pu.port_no;
			e[n].port = pu.port_no ? pu.port_no : SC_DEFAULT_PORT;
			e[n].has_ip = (sc_ip_parse(pu.host.s, pu.host.len, &e[n].ip) == 0);
			e[n].kind = SC_HOP_FOREIGN;
			if(check_self(&pu.host, pu.port_no ? pu.port_no : SIP_PORT, 0) == 1)
				e[n].kind = SC_HOP_SELF;
			/* a name may be a data center's rr-host (classified on the
			 * view below): what its flow asks for is known without it */
			if(!e[n].has_ip && sc_src_trusted(sc_rs.src))
				e[n].wants_holder = sc_rr_wants_handover(&e[n]);
			n++;
		}
	}
	view = sc_view_get();
	t = view->topo;
	self = view->self;
	sc_rs.gen = view->topo_gen;
	for(i = 0; i < n; i++) {
		sc_proxy_t *px;
		if(!e[i].has_ip) {
			sc_rr_classify(t, self, &e[i], sc_src_trusted(sc_rs.src));
			continue;
		}
		if(e[i].kind == SC_HOP_SELF)
			continue;
		/* a proxy's Record-Route names whichever of its sockets the call
		 * crossed (udp/tcp or tls, two with r2): by address and port,
		 * else by address alone unless that address:port is a server's */
		px = sc_topo_proxy_by_addr(t, &e[i].ip, e[i].port, 0);
		if(px == NULL
				&& sc_topo_server_by_addr(t, &e[i].ip, e[i].port, 0) != NULL) {
			e[i].kind = SC_HOP_SERVER;
			continue;
		}
		if(px == NULL)
			px = sc_topo_proxy_by_addr(t, &e[i].ip, 0, 0);
		if(px != NULL) {
			e[i].kind = (px->index == self) ? SC_HOP_SELF : SC_HOP_PROXY;
			e[i].proxy = px->index;
		}
	}
	sc_view_put();
	for(i = 0; i < n; i++)
		kinds[i] = e[i].kind;
	sc_route_plan(sc_rs.src, kinds, n, &plan);
	sc_rs.verdict = plan.verdict;
	sc_rs.consumed = plan.consume;
	if(plan.verdict == SC_PLAN_OK) {
		for(i = 0; i < plan.consume; i++) {
			/* the pin of a cluster proxy's entry (ours or another's) */
			if(sc_rs.pin[0] == '\0'
					&& sc_uri_param(&e[i].params, SC_RR_PARAM, &v) == 0
					&& v.len > 0 && v.len < SC_PIN_BUF)
				snprintf(sc_rs.pin, SC_PIN_BUF, "%.*s", v.len, v.s);
			/* a flow only from our own entry: our Record-Route (scf) or
			 * our Path entry (received) */
			if(e[i].kind == SC_HOP_SELF && sc_rs.flow_len == 0
					&& (sc_uri_param(&e[i].params, SC_FLOW_PARAM, &v) == 0
							|| sc_uri_param(&e[i].params, "received", &v) == 0)
					&& sc_flow_decode(&v, sc_rs.flow, sizeof(sc_rs.flow),
							   &sc_rs.flow_len)
							   < 0)
				sc_rs.flow_len = 0;
		}
		if(plan.next >= 0) {
			str u = e[plan.next].r->nameaddr.uri;
			if(u.len >= SC_URI_BUF)
				return NULL;
			sc_rs.has_next = 1;
			snprintf(sc_rs.next, SC_URI_BUF, "%.*s", u.len, u.s);
			sc_rs.next_kind = e[plan.next].kind;
			sc_rs.next_ip = e[plan.next].ip;
			sc_rs.next_port = e[plan.next].port;
			sc_rs.next_proxy = e[plan.next].proxy;
			sc_rs.next_handover = e[plan.next].handover;
		}
		if(plan.consume > 0 && sc_rset_remove(msg, e, n, plan.consume) < 0)
			return NULL;
	}
	sc_rs.id = msg->id;
	sc_rs.pid = msg->pid;
	sc_rs.valid = 1;
	return &sc_rs;
}

/* ---- choosing ---- */

typedef struct sc_tried_ctx
{
	sc_topo_t *t;
	str tried;
} sc_tried_ctx_t;

/* skip a pair already tried, or one that left service since the view's
 * schedule was built (a writer publishes a new one at once; a request that
 * read the old view just before does not take the pair) */
static int sc_pair_tried(int idx, void *arg)
{
	sc_tried_ctx_t *c = (sc_tried_ctx_t *)arg;
	return !sc_pair_usable(&c->t->pairs[idx])
		   || sc_tried_has(&c->tried, &c->t->pairs[idx].name);
}

/* copies of what the caller needs once the view is put back */
typedef struct sc_dest
{
	char uri[96];
	char pair[64];
	char server[64];
	int remote;
	int transport;
	int af;
} sc_dest_t;

static void sc_dest_fill(sc_dest_t *d, sc_pair_t *p, int srv, int remote)
{
	snprintf(d->uri, sizeof(d->uri), "%.*s", p->srv[srv]->uri.len,
			p->srv[srv]->uri.s);
	snprintf(d->pair, sizeof(d->pair), "%.*s", p->name.len, p->name.s);
	snprintf(d->server, sizeof(d->server), "%.*s", p->srv[srv]->name.len,
			p->srv[srv]->name.s);
	d->remote = remote;
	d->transport = p->srv[srv]->transport;
	d->af = p->srv[srv]->ip.af;
}

/* pick a new pair (not tried yet): local first, then other data centers;
 * no lock: the view's schedules and an atomic cursor */
static int sc_pick_pair(sc_dest_t *d, const str *tried)
{
	sc_tried_ctx_t ctx;
	int idx, remote = 0, r = -1;
	sc_view_t *v;
	sc_pair_t *p;

	v = sc_view_get();
	ctx.t = v->topo;
	ctx.tried = *tried;
	idx = sc_sched_pick(&v->local, sc_pair_tried, &ctx);
	if(idx < 0 && sc_cross_dc_failover) {
		idx = sc_sched_pick(&v->remote, sc_pair_tried, &ctx);
		remote = 1;
	}
	if(idx < 0) {
		sc_why_set("no SIP Server in service in %.*s%s", sc_geo_location.len,
				sc_geo_location.s,
				sc_cross_dc_failover ? " nor in any other data center"
									 : " (cross-data-center failover off)");
		goto done;
	}
	p = &v->topo->pairs[idx];
	SC_INC(p->h.calls);
	sc_dest_fill(d, p, sc_pair_active_index(p), remote);
	r = 0;
done:
	sc_view_put();
	return r;
}

/* what a new call would get now (sipcluster.which), without taking it */
int sc_which_new(char *pair, int plen, char *server, int slen, char *uri,
		int ulen, int *remote)
{
	int idx;
	sc_view_t *v;
	sc_pair_t *p;
	int a;

	*remote = 0;
	v = sc_view_get();
	idx = sc_sched_peek(&v->local);
	if(idx < 0 && sc_cross_dc_failover) {
		idx = sc_sched_peek(&v->remote);
		*remote = 1;
	}
	if(idx < 0) {
		sc_view_put();
		return -1;
	}
	p = &v->topo->pairs[idx];
	a = sc_pair_active_index(p);
	snprintf(pair, plen, "%.*s", p->name.len, p->name.s);
	snprintf(server, slen, "%.*s", p->srv[a]->name.len, p->srv[a]->name.s);
	snprintf(uri, ulen, "%.*s", p->srv[a]->uri.len, p->srv[a]->uri.s);
	sc_view_put();
	return 0;
}

static int sc_set_du(sip_msg_t *msg, const char *uri)
{
	str s;

	s.s = (char *)uri;
	s.len = strlen(uri);
	if(set_dst_uri(msg, &s) < 0) {
		LM_ERR("cannot set the destination URI to %s\n", uri);
		return -1;
	}
	ruri_mark_new();
	return 0;
}

static int sc_go(sip_msg_t *msg, sc_dest_t *d)
{
	str pair, server;

	if(sc_set_du(msg, d->uri) < 0)
		return -1;
	sc_force_socket(msg, d->transport, d->af);
	pair.s = d->pair;
	pair.len = strlen(d->pair);
	server.s = d->server;
	server.len = strlen(d->server);
	sc_remember(&pair, &server);
	LM_DBG("routing %.*s to pair %s member %s (%s)%s\n",
			msg->first_line.u.request.method.len,
			msg->first_line.u.request.method.s, d->pair, d->server, d->uri,
			d->remote ? " in another data center" : "");
	return d->remote ? 2 : 1;
}

int ki_sipcluster_route(sip_msg_t *msg)
{
	sc_dest_t d;
	str tried;
	int r;
	sc_rset_t *rs;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	/* the Route set of an initial request: ours (an outbound proxy's
	 * preloaded Route) consumed, anything else refused */
	rs = sc_rset_get(msg);
	if(rs == NULL)
		return sc_refuse(msg, 400, "Bad Route header", "unparsable Route set");
	if(rs->verdict == SC_PLAN_DENY)
		return sc_refuse(msg, 403, "Not a cluster destination",
				"its Route set leads outside the cluster");
	sc_why_clear();
	sc_tried_get(&tried);
	r = sc_pick_pair(&d, &tried);
	if(r < 0) {
		update_stat(sc_st_unavailable, 1);
		unsigned int sup;
		if(sc_rl_kind(SC_RL_ROUTE, &sup))
			LM_NOTICE("cannot route %.*s from %s:%d: %s (%u more since the "
					  "last such line)\n",
					msg->first_line.u.request.method.len,
					msg->first_line.u.request.method.s,
					ip_addr2a(&msg->rcv.src_ip), msg->rcv.src_port,
					sc_why(), sup);
		return -1;
	}
	update_stat(sc_st_routed, 1);
	if(d.remote)
		update_stat(sc_st_cross_dc, 1);
	return sc_go(msg, &d);
}

/* an in-dialog request only fails over to its pair's partner */
static int sc_in_dialog(sip_msg_t *msg)
{
	if(parse_headers(msg, HDR_TO_F, 0) < 0 || msg->to == NULL)
		return 0;
	if(msg->to->parsed == NULL && parse_to_header(msg) < 0)
		return 0;
	return get_to(msg)->tag_value.len > 0;
}

int ki_sipcluster_next(sip_msg_t *msg)
{
	str cur, tried;
	sc_server_t *s;
	sc_pair_t *p;
	sc_dest_t d;
	sc_hcfg_t c;
	int r = -1, partner;

	if(sc_cur_get(&cur) < 0) {
		LM_DBG("no sipcluster routing state in this transaction\n");
		return -1;
	}
	sc_tried_get(&tried);
	sc_why_clear();

	/* a writer: the member failed us */
	s = sc_topo_server_by_name(sc_state_lock(), &cur);
	if(s != NULL) {
		p = s->pair;
		sc_pair_hcfg(p, &c);
		SC_INC(p->h.failovers);
		/* the member failed us: probe it now */
		sc_health_suspect(p, &c, s->index, sc_now_ms());
		partner = (p->nservers == 2) ? 1 - s->index : -1;
		/* never the partner that just failed a probe */
		if(partner >= 0 && p->srv[partner]->h.admin != SC_ADMIN_OOS
				&& p->h.admin != SC_ADMIN_OOS
				&& !sc_srv_recently_failed(p->srv[partner], sc_wall_ms(),
						(long long)c.check + 2LL * c.force)
				&& !sc_tried_has(&tried, &p->srv[partner]->name)) {
			sc_dest_fill(&d, p, partner, 0);
			r = 0;
		}
	}
	sc_state_unlock();
	if(r < 0 && !sc_in_dialog(msg))
		r = sc_pick_pair(&d, &tried);
	if(r < 0) {
		if(sc_why()[0] == '\0')
			sc_why_set("every SIP Server tried");
		unsigned int sup;
		if(sc_rl_kind(SC_RL_NEXT, &sup))
			LM_NOTICE("no failover destination left after %.*s: %s (%u more "
					  "since the last such line)\n",
					cur.len, cur.s, sc_why(), sup);
		update_stat(sc_st_unavailable, 1);
		return -1;
	}
	update_stat(sc_st_failovers, 1);
	if(d.remote)
		update_stat(sc_st_cross_dc, 1);
	{
		unsigned int sup;
		if(sc_rl_kind(SC_RL_FAILOVER, &sup))
			LM_INFO("failover: %.*s did not answer, trying %s of pair %s (%u "
					"more failovers since the last such line)\n",
					cur.len, cur.s, d.server, d.pair, sup);
	}
	return sc_go(msg, &d);
}

/* the server of t a URI points to (by host:port), or NULL */
static sc_server_t *sc_uri_server(sc_topo_t *t, str *uri)
{
	struct sip_uri pu;
	sc_ip_t ip;
	int port;

	if(uri == NULL || uri->len <= 0 || parse_uri(uri->s, uri->len, &pu) < 0)
		return NULL;
	if(sc_ip_parse(pu.host.s, pu.host.len, &ip) < 0)
		return NULL;
	port = pu.port_no ? pu.port_no : SC_DEFAULT_PORT;
	return sc_topo_server_by_addr(t, &ip, port, 0);
}

/* 1 when uri names an element of the cluster t (proxy or server) */
static int sc_uri_in_cluster(sc_topo_t *t, str *uri)
{
	struct sip_uri pu;
	sc_ip_t ip;
	int port;

	if(uri == NULL || uri->len <= 0 || parse_uri(uri->s, uri->len, &pu) < 0)
		return 0;
	if(sc_ip_parse(pu.host.s, pu.host.len, &ip) < 0)
		return 0;
	port = pu.port_no ? pu.port_no : SC_DEFAULT_PORT;
	return sc_topo_server_by_addr(t, &ip, port, 0) != NULL
		   || sc_topo_proxy_by_addr(t, &ip, port, 0) != NULL;
}

int ki_sipcluster_record_route(sip_msg_t *msg)
{
	str *target, param = STR_NULL, callid = STR_NULL;
	sc_view_t *v;
	sc_server_t *s;
	sc_proxy_t *me;
	char buf[SC_PIN_BUF + SC_FLOW_MAX * 3 + 32], flow[SC_FLOW_MAX + 1];
	char rrh[256];
	int n = 0, m, src, ep_dst = 0, sid = 0;
	str f, host;

	if(parse_headers(msg, HDR_CALLID_F, 0) < 0 || msg->callid == NULL)
		return -1;
	callid = msg->callid->body;
	trim(&callid);
	src = sc_msg_src(msg);
	target = (msg->dst_uri.len > 0) ? &msg->dst_uri : GET_RURI(msg);
	v = sc_view_get();
	/* a request from a SIP Server pins to that server's pair, one to a SIP
	 * Server to the pair of its destination */
	s = (src == SC_SRC_SERVER) ? sc_src_server(v->topo, msg) : NULL;
	if(s == NULL)
		s = sc_uri_server(v->topo, target);
	if(s != NULL)
		n = sc_pin_encode(&s->pair->name, &callid,
				v->topo->has_key ? v->topo->key : NULL, buf, SC_PIN_BUF);
	if(!sc_src_trusted(src) || msg->dst_uri.len > 0)
		ep_dst = !sc_uri_in_cluster(v->topo, target);
	/* the data center's Record-Route name, and who holds the flow */
	me = &v->topo->proxies[v->self];
	rrh[0] = '\0';
	if(me->rr_host.len > 0 && me->rr_host.len < (int)sizeof(rrh)) {
		memcpy(rrh, me->rr_host.s, me->rr_host.len);
		rrh[me->rr_host.len] = '\0';
		sid = me->server_id;
	}
	sc_view_put();
	if(n < 0)
		n = 0;
	/* the endpoint's flow, for later requests towards it: the source of a
	 * request from the endpoint side, or the destination of one towards
	 * an endpoint */
	m = -1;
	if(!sc_src_trusted(src))
		m = sc_src_flow(msg, flow, sizeof(flow));
	else if(ep_dst && msg->dst_uri.len > 0 && msg->dst_uri.len <= SC_FLOW_MAX) {
		m = msg->dst_uri.len;
		memcpy(flow, msg->dst_uri.s, m);
		flow[m] = '\0';
	}
	if(m > 0) {
		int k;
		f.s = flow;
		f.len = m;
		k = snprintf(buf + n, sizeof(buf) - n, ";" SC_FLOW_PARAM "=");
		if(k > 0 && n + k < (int)sizeof(buf)) {
			int e = sc_flow_encode(&f, buf + n + k, sizeof(buf) - n - k);
			if(e > 0)
				n += k + e;
		}
	}
	if(rrh[0]) {
		m = snprintf(buf + n, sizeof(buf) - n, ";" SC_HOLDER_PARAM "=%d", sid);
		if(m > 0 && n + m < (int)sizeof(buf))
			n += m;
		param.s = buf;
		param.len = n;
		host.s = rrh;
		host.len = strlen(rrh);
		/* parameters first: rr keeps them for the header it builds next */
		if(sc_rrb.add_rr_param(msg, &param) < 0
				|| sc_rrb.record_route_advertised_address(msg, &host) < 0) {
			LM_ERR("record_route with the rr-host %s failed\n", rrh);
			return -1;
		}
		return 1;
	}
	if(n > 0) {
		param.s = buf;
		param.len = n;
	}
	if(sc_rrb.record_route(msg, n > 0 ? &param : NULL) < 0) {
		LM_ERR("record_route failed\n");
		return -1;
	}
	return 1;
}

/* $du = uri; a flow over TCP/TLS is only ever reused, never re-opened
 * (the endpoint is behind NAT, RFC 5626 style) */
static int sc_set_du_flow(sip_msg_t *msg, const char *uri, int flow)
{
	str s;
	int proto, af;

	s.s = (char *)uri;
	s.len = strlen(uri);
	if(set_dst_uri(msg, &s) < 0) {
		LM_ERR("cannot set the destination URI to %s\n", uri);
		return -1;
	}
	ruri_mark_new();
	proto = sc_uri_proto(&s, &af);
	sc_force_socket(msg, proto, af);
	if(flow && proto != SC_TP_UDP && proto != SC_TP_SCTP)
		msg->fwd_send_flags.f |= SND_F_FORCE_CON_REUSE;
	return 0;
}

/* what a trusted source's request follows after our entries: the next
 * Route entry (kept), else the flow our own entry carried; 1 when decided */
static int sc_follow(sip_msg_t *msg, sc_rset_t *rs)
{
	char uri[SC_URI_BUF];

	if(rs->has_next && rs->next_kind == SC_HOP_PROXY) {
		/* another proxy: over the transport and port the document names
		 * for it (how it knows us), whichever of its sockets its
		 * Record-Route happened to name */
		sc_view_t *v = sc_view_get();
		uri[0] = '\0';
		if(rs->gen == v->topo_gen && rs->next_proxy >= 0
				&& rs->next_proxy < v->topo->nproxies) {
			sc_proxy_t *px = &v->topo->proxies[rs->next_proxy];
			snprintf(uri, sizeof(uri), "%.*s", px->uri.len, px->uri.s);
		}
		sc_view_put();
		if(uri[0]) {
			if(rs->next_handover) {
				update_stat(sc_st_handed_over, 1);
				LM_DBG("%.*s handed to the proxy holding the endpoint's "
					   "flow: %s\n",
						msg->first_line.u.request.method.len,
						msg->first_line.u.request.method.s, uri);
			}
			return sc_set_du_flow(msg, uri, 0) < 0 ? -1 : 1;
		}
	}
	if(rs->has_next)
		return sc_set_du_flow(msg, rs->next, 0) < 0 ? -1 : 1;
	if(rs->flow_len > 0)
		return sc_set_du_flow(msg, rs->flow, 1) < 0 ? -1 : 1;
	return 0;
}

int ki_sipcluster_loose_route(sip_msg_t *msg)
{
	sc_rset_t *rs;
	int r;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	rs = sc_rset_get(msg);
	if(rs == NULL)
		return sc_refuse(msg, 400, "Bad Route header", "unparsable Route set");
	if(rs->verdict == SC_PLAN_DENY)
		return sc_refuse(msg, 403, "Not a cluster destination",
				"its Route set leads outside the cluster");
	if(!sc_src_trusted(rs->src))
		return 2; /* consumed; the caller chooses the SIP Server */
	r = sc_follow(msg, rs);
	if(r < 0)
		return -1;
	return r ? 1 : 2;
}

/* the pinned pair of view v an untrusted source's in-dialog request may go
 * to. NULL when refused, with *code and *why set. */
static sc_pair_t *sc_pin_pair(sc_view_t *v, sip_msg_t *msg, sc_rset_t *rs,
		int *code, const char **why)
{
	sc_topo_t *t = v->topo;
	str val, pair, mac, callid;
	sc_pair_t *p;
	sc_proxy_t *self = &t->proxies[v->self];
	int mac_ok, local;

	val.s = rs->pin;
	val.len = strlen(rs->pin);
	if(sc_pin_decode(&val, &pair, &mac) < 0) {
		*code = 400;
		*why = "malformed pin";
		return NULL;
	}
	p = sc_topo_pair_by_name(t, &pair);
	if(p == NULL || p->nservers < 1) {
		*code = 404;
		*why = "pinned to a pair that does not exist";
		return NULL;
	}
	callid.s = NULL;
	callid.len = 0;
	if(msg->callid) {
		callid = msg->callid->body;
		trim(&callid);
	}
	local = (p->geo.len == self->geo.len
			 && memcmp(p->geo.s, self->geo.s, p->geo.len) == 0);
	if(local)
		return p;
	if(!sc_cross_dc_failover) {
		*code = 403;
		*why = "pinned to another data center's pair (cross_dc_failover "
			   "off)";
		return NULL;
	}
	if(!t->has_key)
		return p; /* no secret: a pin cannot be checked (see the docs) */
	mac_ok = sc_pin_verify(&pair, &mac, &callid, t->key);
	/* a pin we cannot vouch for, to another data center: only where a new
	 * call would go there too */
	if(!mac_ok && v->local.len > 0) {
		*code = 403;
		*why = "pinned to another data center's pair without a valid MAC";
		return NULL;
	}
	return p;
}

int ki_sipcluster_dialog(sip_msg_t *msg)
{
	sc_rset_t *rs;
	sc_view_t *v;
	sc_server_t *s = NULL;
	sc_pair_t *p = NULL;
	char uri[SC_URI_BUF], pb[SC_NAME_MAX + 1], sb[SC_NAME_MAX + 1];
	const char *why = NULL;
	int code = 0, a, r, retarget;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	rs = sc_rset_get(msg);
	if(rs == NULL)
		return sc_refuse(msg, 400, "Bad Route header", "unparsable Route set");
	if(rs->verdict == SC_PLAN_DENY)
		return sc_refuse(msg, 403, "Not a cluster destination",
				"its Route set leads outside the cluster");
	if(sc_src_trusted(rs->src)) {
		/* towards an endpoint (or where a SIP Server routes it) */
		r = sc_follow(msg, rs);
		return r < 0 ? -1 : 1; /* r == 0: the R-URI as it is */
	}

	/* from an endpoint: only to the active member of the pinned pair, of
	 * the SIP Server the Route set names next, or of the R-URI's */
	if(parse_sip_msg_uri(msg) < 0)
		return sc_refuse(msg, 400, "Bad Request-URI", "unparsable R-URI");
	v = sc_view_get();
	if(rs->pin[0])
		p = sc_pin_pair(v, msg, rs, &code, &why);
	if(p == NULL && code == 0) {
		if(rs->has_next && rs->next_kind == SC_HOP_SERVER)
			s = sc_topo_server_by_addr(v->topo, &rs->next_ip, rs->next_port, 0);
		if(s == NULL)
			s = sc_uri_server(v->topo, GET_RURI(msg));
		if(s != NULL)
			p = s->pair;
		else {
			code = 404;
			why = "in-dialog request for neither a pinned pair nor a "
				  "cluster SIP Server";
		}
	}
	if(p == NULL) {
		sc_view_put();
		return sc_refuse(
				msg, code, code == 404 ? "Not Here" : "Forbidden", why);
	}
	a = sc_pair_active_index(p);
	if(s == NULL)
		s = sc_uri_server(v->topo, GET_RURI(msg));
	retarget = (s == NULL || s != p->srv[a]);
	snprintf(uri, sizeof(uri), "%.*s", p->srv[a]->uri.len, p->srv[a]->uri.s);
	snprintf(pb, sizeof(pb), "%.*s", p->name.len, p->name.s);
	snprintf(sb, sizeof(sb), "%.*s", p->srv[a]->name.len, p->srv[a]->name.s);
	sc_view_put();
	if(retarget) {
		update_stat(sc_st_retargeted, 1);
		LM_DBG("in-dialog %.*s re-targeted to the active member '%s' of "
			   "pair '%s'\n",
				msg->first_line.u.request.method.len,
				msg->first_line.u.request.method.s, sb, pb);
	}
	/* the partner is the failover of this transaction */
	sc_remember_cstr(pb, sb);
	if(sc_set_du_flow(msg, uri, 0) < 0)
		return -1;
	return 1;
}

/* an X-Genesys-Route hop the document allows: any with
 * x-genesys-route="any", else an IP literal host sc_topo_xgr_allowed()
 * finds among the listed elements */
static int sc_xgr_hop_allowed(const char *uri)
{
	struct sip_uri pu;
	struct ip_addr *ip = NULL;
	sc_ip_t sip;
	int ok, port = 0;
	sc_view_t *v;

	if(parse_uri((char *)uri, strlen(uri), &pu) == 0) {
		ip = str2ip(&pu.host);
		if(ip == NULL)
			ip = str2ip6(&pu.host);
	}
	memset(&sip, 0, sizeof(sip));
	if(ip) {
		sip.af = ip->af;
		memcpy(sip.ip, ip->u.addr, ip->len);
		port = pu.port_no ? pu.port_no
						  : (pu.proto == PROTO_TLS || pu.type == SIPS_URI_T
											? 5061
											: 5060);
	}
	v = sc_view_get();
	ok = v->topo->xgr_any || (ip && sc_topo_xgr_allowed(v->topo, &sip, port));
	sc_view_put();
	return ok;
}

int ki_sipcluster_x_genesys_route(sip_msg_t *msg)
{
	struct hdr_field *h;
	str uri = STR_NULL;
	char ubuf[256];
	int n = 0, from_server, ok = 0, bad = 0;

	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	ubuf[0] = '\0';
	for(h = msg->headers; h; h = h->next) {
		if(h->name.len != sc_xgr_name.len
				|| strncasecmp(h->name.s, sc_xgr_name.s, h->name.len) != 0)
			continue;
		if(n == 0) {
			if(sc_xgr_parse(h->body.s, h->body.len, &uri) == 0
					&& uri.len < (int)sizeof(ubuf)) {
				memcpy(ubuf, uri.s, uri.len);
				ubuf[uri.len] = '\0';
			} else {
				bad = 1;
			}
		}
		if(del_lump(msg, h->name.s - msg->buf, h->len, 0) == NULL)
			LM_ERR("cannot remove X-Genesys-Route\n");
		n++;
	}
	if(n == 0)
		return -1;
	from_server = (sc_msg_src(msg) == SC_SRC_SERVER);
	if(from_server && ubuf[0] && !sc_xgr_hop_allowed(ubuf)) {
		char why[320];
		snprintf(why, sizeof(why),
				"X-Genesys-Route %s is not a hop the cluster document lists "
				"(x-genesys-route=\"any\" allows any): removed and ignored",
				ubuf);
		sc_refuse_log(msg, 0, why);
		ubuf[0] = '\0';
		bad = 0;
	}
	if(from_server && ubuf[0]) {
		if(sc_set_du_flow(msg, ubuf, 0) == 0) {
			ok = 1;
			update_stat(sc_st_xgr_used, 1);
			LM_DBG("X-Genesys-Route: next hop %s\n", ubuf);
		}
	}
	if(!ok) {
		update_stat(sc_st_xgr_dropped, 1);
		if(!from_server)
			sc_refuse_log(msg, 0,
					"X-Genesys-Route from a source that is not a cluster SIP "
					"Server removed and ignored");
		else if(bad)
			LM_WARN("X-Genesys-Route from a SIP Server is not a SIP URI: "
					"removed and ignored\n");
	}
	return ok ? 1 : -1;
}

/* onsend_route: the last check before a request leaves. A request from
 * outside the cluster only ever goes to a cluster SIP Server (whatever the
 * routing script decided). */
int ki_sipcluster_check_relay(sip_msg_t *msg)
{
	struct ip_addr ip;
	sc_ip_t dip;
	int port, ok;
	onsend_info_t *si = get_onsend_info();

	if(msg == NULL || msg == FAKED_REPLY || si == NULL || si->to == NULL)
		return 1;
	if(msg->first_line.type != SIP_REQUEST)
		return 1;
	if(sc_src_trusted(sc_msg_src(msg)))
		return 1;
	su2ip_addr(&ip, si->to);
	port = su_getport(si->to);
	memset(&dip, 0, sizeof(dip));
	dip.af = ip.af;
	memcpy(dip.ip, ip.u.addr, ip.len);
	ok = sc_topo_server_by_addr(sc_view_get()->topo, &dip, port, 0) != NULL;
	sc_view_put();
	if(!ok) {
		char why[128];
		snprintf(why, sizeof(why),
				"relay to %s:%d is not a cluster SIP Server (onsend_route)",
				ip_addr2a(&ip), port);
		sc_refuse_log(msg, 403, why);
		return -1;
	}
	return 1;
}

/* a request from an HA pair member proves it is the active one: only a
 * dialog-forming (INVITE, SUBSCRIBE, REFER) or in-dialog request counts
 * (a backup may well send OPTIONS or REGISTER) */
int ki_sipcluster_seen_request(sip_msg_t *msg)
{
	sc_server_t *s;
	sc_transition_t tr;
	int events = 0, prev = -1, ret = -1, proof;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	if(sc_msg_src(msg) != SC_SRC_SERVER)
		return -1;
	proof = (msg->first_line.u.request.method_value
					& (METHOD_INVITE | METHOD_SUBSCRIBE | METHOD_REFER))
			|| sc_in_dialog(msg);
	/* the common case, the active member in service, without the lock */
	s = sc_src_server(sc_view_get()->topo, msg);
	if(s != NULL) {
		ret = 1;
		if(!proof || !sc_health_seen_changes(s->pair, s->index)) {
			SC_INC(s->h.requests);
			s = NULL;
		}
	}
	sc_view_put();
	if(s == NULL)
		return ret;
	/* news for the state machine: a writer */
	s = sc_src_server(sc_state_lock(), msg);
	if(s != NULL) {
		sc_pair_t *p = s->pair;
		ret = 1;
		if(proof) {
			prev = sc_pair_active_index(p);
			sc_health_seen_request(
					p, s->index, sc_now_ms(), sc_wall_ms(), &events);
			if(events)
				sc_transition_fill(
						&tr, p, events, prev, "request received from it");
		} else {
			SC_INC(s->h.requests);
		}
	}
	sc_state_unlock();
	if(events)
		sc_transition_report(&tr);
	return ret;
}
