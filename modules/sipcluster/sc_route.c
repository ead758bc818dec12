/*
 * sipcluster - routing functions for the cfg (and KEMI)
 *
 *  sipcluster_route()         new request from an endpoint: $du = active
 *                             member of a local pair chosen by SWRR (or of
 *                             another data center's pair)
 *  sipcluster_next()          failure_route: the partner member, then the
 *                             next pair (the failed member is probed at once)
 *  sipcluster_record_route()  branch_route: Record-Route with ;scp=<pair>
 *  sipcluster_dialog()        in-dialog request: consume our Route (any
 *                             proxy of the cluster), send it to the pinned
 *                             pair's active member
 *  sipcluster_x_genesys_route() honour X-Genesys-Route from a SIP Server,
 *                             strip it from anybody else
 *
 * Per-transaction memory is one xavp, $xavp(sipcluster), with children
 * "cur" (server name of the current branch) and "tried" (";name;name;" of
 * pairs and servers already tried). tm keeps it for failure_route.
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
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../core/parser/parse_rr.h"
#include "../../core/parser/hf.h"
#include "../../core/parser/parse_to.h"
#include "../../core/trim.h"
#include "../../core/strutils.h"
#include "../../modules/rr/api.h"

#include "sc_mod.h"
#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"

#define SC_TRIED_MAX 1024

static struct rr_binds sc_rrb;
static str sc_xavp_root = str_init("sipcluster");
static str sc_xavp_cur = str_init("cur");
static str sc_xavp_tried = str_init("tried");
static str sc_xgr_name = str_init("X-Genesys-Route");

char sc_route_reason[128] = "";

int sc_route_init(void)
{
	if(load_rr_api(&sc_rrb) < 0) {
		LM_ERR("cannot bind the rr API: load rr.so before sipcluster.so\n");
		return -1;
	}
	return 0;
}

void sc_msg_ip(sip_msg_t *msg, sc_ip_t *ip)
{
	memset(ip, 0, sizeof(*ip));
	ip->af = msg->rcv.src_ip.af;
	memcpy(ip->ip, msg->rcv.src_ip.u.addr, msg->rcv.src_ip.len);
}

/* the source port identifies a member for UDP/SCTP only: TCP/TLS
 * connections come from ephemeral ports */
int sc_msg_src_port(sip_msg_t *msg)
{
	if(msg->rcv.proto == PROTO_UDP || msg->rcv.proto == PROTO_SCTP)
		return msg->rcv.src_port;
	return 0;
}

/* the configured SIP Server the message comes from; lock held */
sc_server_t *sc_src_server(sip_msg_t *msg)
{
	sc_ip_t ip;

	sc_msg_ip(msg, &ip);
	return sc_topo_server_by_addr(
			sc_shared->topo, &ip, sc_msg_src_port(msg), msg->rcv.proto);
}

int sc_src_is_server(sip_msg_t *msg)
{
	int r;

	lock_get(&sc_shared->lock);
	r = sc_src_server(msg) != NULL;
	lock_release(&sc_shared->lock);
	return r;
}

/* ---- per-transaction memory ---- */

static void sc_tried_get(str *out)
{
	sr_xavp_t *x = xavp_get_child_with_sval(&sc_xavp_root, &sc_xavp_tried);
	if(x) {
		*out = x->val.v.s;
	} else {
		out->s = NULL;
		out->len = 0;
	}
}

static int sc_tried_has(const str *tried, const str *name)
{
	char buf[80];
	int n;

	if(tried->len <= 0)
		return 0;
	n = snprintf(buf, sizeof(buf), ";%.*s;", name->len, name->s);
	if(n <= 0 || n >= (int)sizeof(buf))
		return 0;
	/* tried is not NUL-terminated: bounded search */
	{
		int i;
		for(i = 0; i + n <= tried->len; i++)
			if(memcmp(tried->s + i, buf, n) == 0)
				return 1;
	}
	return 0;
}

/* remember the branch: current server and what has been tried */
static void sc_remember(const str *pair, const str *server)
{
	str old, nv, cur;
	char buf[SC_TRIED_MAX];
	int n;

	sc_tried_get(&old);
	n = snprintf(buf, sizeof(buf), "%.*s%s%.*s;%.*s;", old.len,
			old.s ? old.s : "", old.len ? "" : ";", pair->len, pair->s,
			server->len, server->s);
	if(n <= 0 || n >= (int)sizeof(buf)) {
		LM_WARN("too many tried destinations, not remembering more\n");
		return;
	}
	nv.s = buf;
	nv.len = n;
	cur = *server;
	/* the xavp API copies the values */
	if(xavp_set_child_sval(&sc_xavp_root, &sc_xavp_tried, &nv) < 0
			|| xavp_set_child_sval(&sc_xavp_root, &sc_xavp_cur, &cur) < 0)
		LM_ERR("cannot store the routing state in $xavp(sipcluster)\n");
}

void sc_route_remember(const char *pair, const char *server)
{
	str p, sv;

	p.s = (char *)pair;
	p.len = strlen(pair);
	sv.s = (char *)server;
	sv.len = strlen(server);
	sc_remember(&p, &sv);
}

/* ---- choosing ---- */

static int sc_sched_ready(void)
{
	sc_topo_t *t = sc_shared->topo;
	int need = SC_SCHED_MAX + t->npairs + 1;
	sc_proxy_t *self = &t->proxies[sc_shared->self];

	if(sc_shared->sched_cap < need) {
		int *a = shm_malloc(need * sizeof(int));
		int *b = shm_malloc(need * sizeof(int));
		if(a == NULL || b == NULL) {
			if(a)
				shm_free(a);
			if(b)
				shm_free(b);
			SHM_MEM_ERROR;
			return -1;
		}
		if(sc_shared->sched_local.seq)
			shm_free(sc_shared->sched_local.seq);
		if(sc_shared->sched_remote.seq)
			shm_free(sc_shared->sched_remote.seq);
		sc_shared->sched_local.seq = a;
		sc_shared->sched_remote.seq = b;
		sc_shared->sched_cap = need;
		sc_shared->sched_local.gen = sc_shared->gen - 1;
		sc_shared->sched_remote.gen = sc_shared->gen - 1;
	}
	if(sc_shared->sched_local.gen != sc_shared->gen) {
		sc_sched_build(&sc_shared->sched_local, t, &self->geo, 1);
		sc_shared->sched_local.gen = sc_shared->gen;
	}
	if(sc_shared->sched_remote.gen != sc_shared->gen) {
		sc_sched_build(&sc_shared->sched_remote, t, &self->geo, 0);
		sc_shared->sched_remote.gen = sc_shared->gen;
	}
	return 0;
}

typedef struct sc_tried_ctx
{
	sc_topo_t *t;
	str tried;
} sc_tried_ctx_t;

static int sc_pair_tried(int idx, void *arg)
{
	sc_tried_ctx_t *c = (sc_tried_ctx_t *)arg;
	return sc_tried_has(&c->tried, &c->t->pairs[idx].name);
}

/* copies of what the caller needs once the lock is released */
typedef struct sc_dest
{
	char uri[96];
	char pair[64];
	char server[64];
	int remote;
} sc_dest_t;

static void sc_dest_fill(sc_dest_t *d, sc_pair_t *p, int srv, int remote)
{
	snprintf(d->uri, sizeof(d->uri), "%.*s", p->srv[srv]->uri.len,
			p->srv[srv]->uri.s);
	snprintf(d->pair, sizeof(d->pair), "%.*s", p->name.len, p->name.s);
	snprintf(d->server, sizeof(d->server), "%.*s", p->srv[srv]->name.len,
			p->srv[srv]->name.s);
	d->remote = remote;
}

/* pick a new pair (not tried yet): local first, then other data centers */
static int sc_pick_pair(sc_dest_t *d, const str *tried)
{
	sc_tried_ctx_t ctx;
	int idx, remote = 0;
	sc_pair_t *p;

	ctx.t = sc_shared->topo;
	ctx.tried = *tried;
	if(sc_sched_ready() < 0)
		return -1;
	idx = sc_sched_pick(&sc_shared->sched_local, sc_pair_tried, &ctx);
	if(idx < 0 && sc_cross_dc_failover) {
		idx = sc_sched_pick(&sc_shared->sched_remote, sc_pair_tried, &ctx);
		remote = 1;
	}
	if(idx < 0) {
		snprintf(sc_route_reason, sizeof(sc_route_reason),
				"no SIP Server in service in %.*s%s", sc_geo_location.len,
				sc_geo_location.s,
				sc_cross_dc_failover ? " nor in any other data center"
									 : " (cross-data-center failover off)");
		return -1;
	}
	p = &sc_shared->topo->pairs[idx];
	p->h.calls++;
	sc_dest_fill(d, p, sc_pair_active_index(p), remote);
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

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	sc_route_reason[0] = '\0';
	sc_tried_get(&tried);
	lock_get(&sc_shared->lock);
	r = sc_pick_pair(&d, &tried);
	lock_release(&sc_shared->lock);
	if(r < 0) {
		update_stat(sc_st_unavailable, 1);
		LM_NOTICE("cannot route %.*s from %s:%d: %s\n",
				msg->first_line.u.request.method.len,
				msg->first_line.u.request.method.s, ip_addr2a(&msg->rcv.src_ip),
				msg->rcv.src_port, sc_route_reason);
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
	sr_xavp_t *x;
	str cur, tried;
	sc_server_t *s;
	sc_pair_t *p;
	sc_dest_t d;
	sc_hcfg_t c;
	int r = -1, partner;

	x = xavp_get_child_with_sval(&sc_xavp_root, &sc_xavp_cur);
	if(x == NULL) {
		LM_DBG("no sipcluster routing state in this transaction\n");
		return -1;
	}
	cur = x->val.v.s;
	sc_tried_get(&tried);
	sc_route_reason[0] = '\0';

	lock_get(&sc_shared->lock);
	s = sc_topo_server_by_name(sc_shared->topo, &cur);
	if(s != NULL) {
		p = s->pair;
		sc_pair_hcfg(p, &c);
		/* the member failed us: probe it now */
		sc_health_suspect(p, &c, s->index, sc_now_ms());
		partner = (p->nservers == 2) ? 1 - s->index : -1;
		if(partner >= 0 && p->srv[partner]->h.admin != SC_ADMIN_OOS
				&& p->h.admin != SC_ADMIN_OOS
				&& !sc_tried_has(&tried, &p->srv[partner]->name)) {
			sc_dest_fill(&d, p, partner, 0);
			r = 0;
		}
	}
	if(r < 0 && !sc_in_dialog(msg))
		r = sc_pick_pair(&d, &tried);
	lock_release(&sc_shared->lock);
	if(r < 0) {
		if(sc_route_reason[0] == '\0')
			snprintf(sc_route_reason, sizeof(sc_route_reason),
					"every SIP Server tried");
		LM_NOTICE("no failover destination left after %.*s: %s\n", cur.len,
				cur.s, sc_route_reason);
		update_stat(sc_st_unavailable, 1);
		return -1;
	}
	update_stat(sc_st_failovers, 1);
	if(d.remote)
		update_stat(sc_st_cross_dc, 1);
	LM_INFO("failover: %.*s did not answer, trying %s of pair %s\n", cur.len,
			cur.s, d.server, d.pair);
	return sc_go(msg, &d);
}

/* the pair a URI points to (by host:port), or NULL; lock held */
static sc_server_t *sc_uri_server(str *uri)
{
	struct sip_uri pu;
	sc_ip_t ip;
	int port;

	if(uri == NULL || uri->len <= 0 || parse_uri(uri->s, uri->len, &pu) < 0)
		return NULL;
	if(sc_ip_parse(pu.host.s, pu.host.len, &ip) < 0)
		return NULL;
	port = pu.port_no ? pu.port_no : SC_DEFAULT_PORT;
	return sc_topo_server_by_addr(sc_shared->topo, &ip, port, 0);
}

int ki_sipcluster_record_route(sip_msg_t *msg)
{
	str *target;
	sc_server_t *s;
	char buf[80];
	str param = STR_NULL;
	int n = 0;

	target = (msg->dst_uri.len > 0) ? &msg->dst_uri : GET_RURI(msg);
	lock_get(&sc_shared->lock);
	/* a request from a SIP Server pins to that server's pair, one to a SIP
	 * Server to the pair of its destination */
	s = sc_src_server(msg);
	if(s == NULL)
		s = sc_uri_server(target);
	if(s != NULL)
		n = sc_rr_param_encode(&s->pair->name, buf, sizeof(buf));
	lock_release(&sc_shared->lock);
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

/* remove the first URI of the first Route header */
static int sc_pop_route(sip_msg_t *msg, struct hdr_field *h, rr_t *r)
{
	int off, len;

	if(r->next == NULL) {
		off = h->name.s - msg->buf;
		len = h->len;
	} else {
		off = r->nameaddr.name.s - msg->buf;
		len = r->next->nameaddr.name.s - r->nameaddr.name.s;
	}
	if(del_lump(msg, off, len, 0) == NULL) {
		LM_ERR("cannot remove a Route header\n");
		return -1;
	}
	return 0;
}

int sc_src_proxy_index(sip_msg_t *msg)
{
	sc_ip_t ip;
	sc_proxy_t *p;
	int idx;

	sc_msg_ip(msg, &ip);
	lock_get(&sc_shared->lock);
	p = sc_topo_proxy_by_addr(
			sc_shared->topo, &ip, sc_msg_src_port(msg), msg->rcv.proto);
	idx = p ? p->index : -1;
	lock_release(&sc_shared->lock);
	return idx;
}

/* Route entries that name this proxy are consumed. Entries that name
 * another proxy of the cluster are consumed too when the request goes
 * towards the SIP Servers (any proxy reaches them), but kept as the next hop
 * when it goes towards an endpoint (that proxy holds the endpoint's flow).
 * -1: no Route of ours (let loose_route() decide); -3: an endpoint's request
 * towards something that is not a cluster SIP Server (refused); 1: routed */
int ki_sipcluster_dialog(sip_msg_t *msg)
{
	struct hdr_field *h;
	rr_t *r;
	struct sip_uri pu;
	sc_ip_t ip;
	str pin = STR_NULL, next = STR_NULL, rv = STR_NULL;
	char pinbuf[64], uri[96], nexthop[512], rcvbuf[256];
	int port, popped = 0, from_server, from_proxy, trusted, pidx, self;
	int retarget = 0;
	sc_server_t *s;
	sc_pair_t *p = NULL;
	sc_proxy_t *px;

	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	if(msg->route == NULL)
		return -1;
	from_server = sc_src_is_server(msg);
	from_proxy = (sc_src_proxy_index(msg) >= 0);
	trusted = from_server || from_proxy;
	pinbuf[0] = '\0';
	nexthop[0] = '\0';
	rcvbuf[0] = '\0';
	for(h = msg->route; h; h = next_sibling_hdr(h)) {
		if(h->parsed == NULL && parse_rr(h) < 0)
			return -1;
		for(r = (rr_t *)h->parsed; r; r = r->next) {
			if(parse_uri(r->nameaddr.uri.s, r->nameaddr.uri.len, &pu) < 0)
				return -1;
			pidx = -1;
			if(sc_ip_parse(pu.host.s, pu.host.len, &ip) == 0) {
				port = pu.port_no ? pu.port_no : SC_DEFAULT_PORT;
				lock_get(&sc_shared->lock);
				px = sc_topo_proxy_by_addr(sc_shared->topo, &ip, port, 0);
				pidx = px ? px->index : -1;
				self = sc_shared->self;
				lock_release(&sc_shared->lock);
			} else {
				self = -2;
			}
			if(pidx < 0 || (pidx != self && trusted)) {
				/* the next hop after our entries */
				snprintf(nexthop, sizeof(nexthop), "%.*s", r->nameaddr.uri.len,
						r->nameaddr.uri.s);
				goto done_routes;
			}
			if(sc_uri_param(&pu.params, SC_RR_PARAM, &pin) == 0
					&& sc_rr_param_valid(&pin))
				snprintf(pinbuf, sizeof(pinbuf), "%.*s", pin.len, pin.s);
			/* a Path entry of ours carries the endpoint's flow */
			if(pidx == self && trusted
					&& sc_uri_param(&pu.params, "received", &rv) == 0
					&& rv.len > 0 && rv.len < (int)sizeof(rcvbuf)) {
				str out;
				out.s = rcvbuf;
				out.len = sizeof(rcvbuf) - 1;
				if(unescape_param(&rv, &out) == 0) {
					rcvbuf[out.len] = '\0';
				} else {
					rcvbuf[0] = '\0';
				}
			}
			if(sc_pop_route(msg, h, r) < 0)
				return -1;
			popped++;
			if(r->next != NULL) {
				/* several URIs in one header: only the first can be
				 * removed cleanly with one lump; stop here */
				rr_t *n = r->next;
				snprintf(nexthop, sizeof(nexthop), "%.*s", n->nameaddr.uri.len,
						n->nameaddr.uri.s);
				goto done_routes;
			}
		}
	}
done_routes:
	if(!popped)
		return -1;
	if(nexthop[0] || rcvbuf[0]) {
		/* loose routing on to the next Route entry, or to the flow */
		next.s = nexthop[0] ? nexthop : rcvbuf;
		next.len = strlen(next.s);
		if(set_dst_uri(msg, &next) < 0)
			return -1;
		ruri_mark_new();
		return 1;
	}
	if(trusted)
		return 1; /* towards the endpoint: R-URI as it is */

	if(parse_sip_msg_uri(msg) < 0)
		return -1;
	lock_get(&sc_shared->lock);
	s = sc_uri_server(GET_RURI(msg));
	if(pinbuf[0]) {
		pin.s = pinbuf;
		pin.len = strlen(pinbuf);
		p = sc_topo_pair_by_name(sc_shared->topo, &pin);
	}
	if(p == NULL && s != NULL)
		p = s->pair;
	if(p == NULL) {
		lock_release(&sc_shared->lock);
		LM_NOTICE("in-dialog %.*s from %s:%d is for neither a cluster SIP "
				  "Server nor a pinned pair: refused\n",
				msg->first_line.u.request.method.len,
				msg->first_line.u.request.method.s, ip_addr2a(&msg->rcv.src_ip),
				msg->rcv.src_port);
		return -3;
	}
	{
		int a = sc_pair_active_index(p);
		char pb[64], sb[64];
		str pn, sn;

		snprintf(
				uri, sizeof(uri), "%.*s", p->srv[a]->uri.len, p->srv[a]->uri.s);
		if(s == NULL || s != p->srv[a])
			retarget = 1;
		if(retarget)
			LM_INFO("in-dialog %.*s re-targeted to the active member '%.*s' "
					"of pair '%.*s'\n",
					msg->first_line.u.request.method.len,
					msg->first_line.u.request.method.s, p->srv[a]->name.len,
					p->srv[a]->name.s, p->name.len, p->name.s);
		snprintf(pb, sizeof(pb), "%.*s", p->name.len, p->name.s);
		snprintf(
				sb, sizeof(sb), "%.*s", p->srv[a]->name.len, p->srv[a]->name.s);
		lock_release(&sc_shared->lock);
		/* the partner is the failover of this transaction */
		pn.s = pb;
		pn.len = strlen(pb);
		sn.s = sb;
		sn.len = strlen(sb);
		sc_remember(&pn, &sn);
	}
	if(retarget)
		update_stat(sc_st_retargeted, 1);
	if(sc_set_du(msg, uri) < 0)
		return -1;
	return 1;
}

int ki_sipcluster_x_genesys_route(sip_msg_t *msg)
{
	struct hdr_field *h;
	str val = STR_NULL;
	char uri[256];
	int n = 0, from_server, ok = 0;
	struct sip_uri pu;

	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	uri[0] = '\0';
	for(h = msg->headers; h; h = h->next) {
		if(h->name.len != sc_xgr_name.len
				|| strncasecmp(h->name.s, sc_xgr_name.s, h->name.len) != 0)
			continue;
		if(n == 0) {
			val = h->body;
			trim(&val);
			/* <sip:...> or sip:... */
			if(val.len > 2 && val.s[0] == '<' && val.s[val.len - 1] == '>') {
				val.s++;
				val.len -= 2;
			}
			if(val.len > 0 && val.len < (int)sizeof(uri)) {
				memcpy(uri, val.s, val.len);
				uri[val.len] = '\0';
			}
		}
		if(del_lump(msg, h->name.s - msg->buf, h->len, 0) == NULL)
			LM_ERR("cannot remove X-Genesys-Route\n");
		n++;
	}
	if(n == 0)
		return -1;
	from_server = sc_src_is_server(msg);
	if(from_server && uri[0] && parse_uri(uri, strlen(uri), &pu) == 0
			&& (pu.type == SIP_URI_T || pu.type == SIPS_URI_T)) {
		if(sc_set_du(msg, uri) == 0) {
			ok = 1;
			update_stat(sc_st_xgr_used, 1);
			LM_DBG("X-Genesys-Route: next hop %s\n", uri);
		}
	}
	if(!ok) {
		update_stat(sc_st_xgr_dropped, 1);
		if(!from_server)
			LM_NOTICE("X-Genesys-Route from %s:%d (not a cluster SIP Server) "
					  "removed and ignored\n",
					ip_addr2a(&msg->rcv.src_ip), msg->rcv.src_port);
		else
			LM_WARN("X-Genesys-Route '%s' from a SIP Server is not a SIP URI: "
					"removed and ignored\n",
					uri);
	}
	return ok ? 1 : -1;
}
