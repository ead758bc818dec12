/*
 * sipcluster - what every entry point needs to know about one message
 *
 * Layer: above sc_state, below the routing (sc_route.c), the registrar
 * (sc_reg.c), the sync (sc_syncd.c) and the pinger (sc_ping.c); it calls
 * only sc_state, the pure floor, the core and the sl/tm APIs.
 *   - who sent it: sc_msg_src() classifies the source once per message
 *     (SIP Server of the document, proxy, SBC, or outsider), from the
 *     address, port and transport it really came from, never from what
 *     the message says; sc_src_server(), sc_src_peer();
 *   - refusals: sc_refuse() answers statelessly, sc_refuse_log() logs a
 *     drop; one line per source and log_interval, whatever the rate;
 *   - flows and sockets: sc_src_flow() (the flow a message came over),
 *     sc_own_socket*() (this proxy's listen socket per transport);
 *   - per-transaction memory, $xavp(sipcluster): "cur" (the server of the
 *     current branch) and "tried" (";name;name;"), kept by tm for
 *     failure_route;
 *   - replies: sc_reply_from_branch(), a reply only from where its branch
 *     went;
 *   - why the last pick found nothing ($sipcluster(why)): sc_why_set().
 * Per process, no shared state of its own but the refusal-log table (a
 * race between two processes costs at most one extra line).
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdarg.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/mem/shm.h"
#include "../../core/xavp.h"
#include "../../core/ip_addr.h"
#include "../../core/socket_info.h"
#include "../../core/forward.h"
#include "../../core/hashes.h"
#include "../../core/ut.h"
#include "../../core/trim.h"
#include "../../core/strutils.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../modules/sl/sl.h"
#include "../../modules/tm/tm_load.h"

#include "sc_msg.h"
#include "sc_state.h"
#include "sc_topo.h"
#include "sc_codec.h"

#define SC_TRIED_MAX 1024

static sl_api_t sc_slb;
static struct tm_binds sc_msg_tmb;
static str sc_xavp_root = str_init("sipcluster");
static str sc_xavp_cur = str_init("cur");
static str sc_xavp_tried = str_init("tried");
static char sc_why_buf[128] = "";

static int sc_refuse_init(void);
static void sc_refuse_destroy(void);

stat_var *sc_st_refused = NULL;
stat_var *sc_st_replies_dropped = NULL;
stat_var *sc_st_flood_dropped = NULL;
stat_var *sc_st_unavailable = NULL;

int sc_msg_init(void)
{
	if(sl_load_api(&sc_slb) < 0) {
		LM_ERR("cannot bind the sl API: load sl.so before sipcluster.so\n");
		return -1;
	}
	if(load_tm_api(&sc_msg_tmb) < 0) {
		LM_ERR("cannot bind the tm API: load tm.so before sipcluster.so\n");
		return -1;
	}
	return sc_refuse_init();
}

void sc_msg_destroy(void)
{
	sc_refuse_destroy();
}

/* ---- why the last pick found nothing (per process) ---- */

void sc_why_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sc_why_buf, sizeof(sc_why_buf), fmt, ap);
	va_end(ap);
}

void sc_why_clear(void)
{
	sc_why_buf[0] = '\0';
}

const char *sc_why(void)
{
	return sc_why_buf;
}

/* the server name of the current branch ($xavp(sipcluster=>cur)) */
int sc_cur_get(str *out)
{
	sr_xavp_t *x = xavp_get_child_with_sval(&sc_xavp_root, &sc_xavp_cur);

	if(x == NULL)
		return -1;
	*out = x->val.v.s;
	return 0;
}

void sc_msg_ip(sip_msg_t *msg, sc_ip_t *ip)
{
	memset(ip, 0, sizeof(*ip));
	ip->af = msg->rcv.src_ip.af;
	memcpy(ip->ip, msg->rcv.src_ip.u.addr, msg->rcv.src_ip.len);
}

/* ---- who sent it ---- */

/* the configured SIP Server of t the message comes from */
sc_server_t *sc_src_server(sc_topo_t *t, sip_msg_t *msg)
{
	sc_ip_t ip;

	sc_msg_ip(msg, &ip);
	return sc_topo_server_by_src(t, &ip, msg->rcv.src_port, msg->rcv.proto);
}

/* per process: the class of the last message asked about */
static struct
{
	unsigned int id;
	int pid;
	unsigned int gen;
	int src;
} sc_src_cache = {0, 0, 0, -1};

int sc_msg_src(sip_msg_t *msg)
{
	sc_view_t *v;
	sc_topo_t *t;
	sc_ip_t ip;
	int src = SC_SRC_OUTSIDER;
	unsigned int gen;

	if(msg == NULL || msg == FAKED_REPLY)
		return SC_SRC_OUTSIDER;
	if(sc_src_cache.src >= 0 && sc_src_cache.id == msg->id
			&& sc_src_cache.pid == msg->pid
			&& sc_src_cache.gen == sc_state_gen())
		return sc_src_cache.src;
	sc_msg_ip(msg, &ip);
	v = sc_view_get();
	t = v->topo;
	gen = v->topo_gen;
	if(sc_topo_server_by_src(t, &ip, msg->rcv.src_port, msg->rcv.proto))
		src = SC_SRC_SERVER;
	else if(sc_topo_proxy_by_src(t, &ip, msg->rcv.src_port, msg->rcv.proto)
			|| sc_topo_peer_by_src(t, &ip, msg->rcv.src_port, msg->rcv.proto))
		src = SC_SRC_PROXY; /* or its connection from its listen port */
	else if(sc_topo_sbc_by_src(t, &ip, msg->rcv.src_port, msg->rcv.proto))
		src = SC_SRC_SBC;
	sc_view_put();
	sc_src_cache.id = msg->id;
	sc_src_cache.pid = msg->pid;
	sc_src_cache.gen = gen;
	sc_src_cache.src = src;
	return src;
}

int ki_sipcluster_from_server(sip_msg_t *msg)
{
	return sc_msg_src(msg) == SC_SRC_SERVER ? 1 : -1;
}

int ki_sipcluster_from_proxy(sip_msg_t *msg)
{
	return sc_msg_src(msg) == SC_SRC_PROXY ? 1 : -1;
}

int ki_sipcluster_from_cluster(sip_msg_t *msg)
{
	return sc_src_trusted(sc_msg_src(msg)) ? 1 : -1;
}

int ki_sipcluster_from_sbc(sip_msg_t *msg)
{
	return sc_msg_src(msg) == SC_SRC_SBC ? 1 : -1;
}

/* the proxy a cluster-channel message comes from (sc_topo_peer_by_src):
 * over TCP/TLS from a proxy's address and listen port, never ourselves */
sc_proxy_t *sc_src_peer(sc_view_t *v, sip_msg_t *msg)
{
	sc_ip_t ip;
	sc_proxy_t *p;

	if(msg == NULL || msg == FAKED_REPLY)
		return NULL;
	sc_msg_ip(msg, &ip);
	p = sc_topo_peer_by_src(v->topo, &ip, msg->rcv.src_port, msg->rcv.proto);
	if(p == &v->topo->proxies[v->self])
		return NULL;
	return p;
}

int ki_sipcluster_from_peer(sip_msg_t *msg)
{
	int ok = sc_src_peer(sc_view_get(), msg) != NULL;

	sc_view_put();
	return ok ? 1 : -1;
}

/* a request over the per-source limit (pike): dropped without an answer
 * (answering a flood would reflect it), but counted (flood_dropped) and
 * logged once per source per log_interval, so an operator sees a site NAT
 * or a trunk that needs listing as an SBC; returns 1 */
int ki_sipcluster_flood_drop(sip_msg_t *msg)
{
	update_stat(sc_st_flood_dropped, 1);
	sc_refuse_log(msg, 0,
			"over the per-source request limit (PIKE_DENSITY per 2 s): "
			"dropped without an answer (a trunk, SBC or site NAT: list it "
			"as <sbc>, or raise PIKE_DENSITY)");
	return 1;
}

int sc_src_flow(sip_msg_t *msg, char *buf, int len)
{
	const char *tp;
	int v6 = (msg->rcv.src_ip.af == AF_INET6), n;

	switch(msg->rcv.proto) {
		case PROTO_TCP:
			tp = ";transport=tcp";
			break;
		case PROTO_TLS:
			tp = ";transport=tls";
			break;
		case PROTO_SCTP:
			tp = ";transport=sctp";
			break;
		default:
			tp = "";
	}
	n = snprintf(buf, len, "sip:%s%s%s:%d%s", v6 ? "[" : "",
			ip_addr2a(&msg->rcv.src_ip), v6 ? "]" : "", msg->rcv.src_port, tp);
	return (n > 0 && n < len) ? n : -1;
}

/* ---- this proxy's own sockets ---- */

/* per process: the listen socket of this proxy for each transport and
 * address family: the one on its address in the document, or (dual stack,
 * the other family) the first one of that transport and family */
static struct
{
	unsigned int gen;
	struct socket_info *si[SC_TP_SCTP + 1][2];
	int looked[SC_TP_SCTP + 1][2];
} sc_socks;

struct socket_info *sc_own_socket_af(int proto, int af)
{
	sc_view_t *v;
	sc_proxy_t *self;
	char host[64];
	str h;
	int port, myaf, k;
	struct socket_info *si = NULL, **list;

	if(proto < SC_TP_UDP || proto > SC_TP_SCTP)
		proto = SC_TP_UDP;
	k = (af == AF_INET6) ? 1 : 0;
	v = sc_view_get();
	if(sc_socks.gen != v->topo_gen) {
		memset(&sc_socks, 0, sizeof(sc_socks));
		sc_socks.gen = v->topo_gen;
	}
	if(sc_socks.looked[proto][k]) {
		sc_view_put();
		return sc_socks.si[proto][k];
	}
	self = &v->topo->proxies[v->self];
	snprintf(host, sizeof(host), "%.*s", self->address.len, self->address.s);
	port = self->port;
	myaf = self->ip.af;
	sc_view_put();
	if(af == 0 || af == myaf) {
		h.s = host;
		h.len = strlen(host);
		si = grep_sock_info(&h, port, proto);
		if(si == NULL)
			si = grep_sock_info(&h, 0, proto);
	} else {
		list = get_sock_info_list((unsigned short)proto);
		for(si = list ? *list : NULL; si; si = si->next)
			if(si->address.af == af)
				break;
	}
	sc_socks.si[proto][k] = si;
	sc_socks.looked[proto][k] = 1;
	return si;
}

struct socket_info *sc_own_socket(int proto)
{
	return sc_own_socket_af(proto, 0);
}

/* requests leave from this proxy's own address and port (with
 * tcp_reuse_port also over TCP/TLS): the next hop knows who sends */
void sc_force_socket(sip_msg_t *msg, int proto, int af)
{
	struct socket_info *si = sc_own_socket_af(proto, af);

	if(si != NULL)
		set_force_socket(msg, si);
}

/* the transport a URI asks for (UDP when it names none) and the address
 * family of its host (0 for a name) */
int sc_uri_proto(str *uri, int *af)
{
	struct sip_uri pu;
	sc_ip_t ip;

	*af = 0;
	if(uri == NULL || uri->len <= 0 || parse_uri(uri->s, uri->len, &pu) < 0)
		return SC_TP_UDP;
	if(sc_ip_parse(pu.host.s, pu.host.len, &ip) == 0)
		*af = ip.af;
	if(pu.proto != PROTO_NONE)
		return pu.proto;
	return (pu.type == SIPS_URI_T) ? SC_TP_TLS : SC_TP_UDP;
}

int ki_sipcluster_set_socket(sip_msg_t *msg)
{
	int af, proto;

	if(msg->force_send_socket != NULL)
		return 1;
	proto = sc_uri_proto(
			msg->dst_uri.len > 0 ? &msg->dst_uri : GET_RURI(msg), &af);
	sc_force_socket(msg, proto, af);
	return 1;
}

/* ---- refusing, with logs an outage or an attack cannot flood ---- */

/* when each source was last logged: one shm table for all processes,
 * indexed by a hash of the address; a race between two processes costs at
 * most one extra line */
#define SC_RL_SLOTS 4096

typedef struct sc_rl_slot
{
	unsigned int key;  /* hash of the address, 0 free */
	unsigned int last; /* seconds (monotonic) */
	unsigned int suppressed;
} sc_rl_slot_t;

static sc_rl_slot_t *sc_rl = NULL;

static int sc_refuse_init(void)
{
	sc_rl = shm_mallocxz(SC_RL_SLOTS * sizeof(sc_rl_slot_t));
	if(sc_rl == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	return 0;
}

static void sc_refuse_destroy(void)
{
	if(sc_rl)
		shm_free(sc_rl);
	sc_rl = NULL;
}

/* 1 when this source may be logged now; *suppressed = lines skipped since */
static int sc_rl_allow(sip_msg_t *msg, unsigned int *suppressed)
{
	sc_ip_t ip;
	unsigned int h = 2166136261u, now;
	int i, n;
	sc_rl_slot_t *sl;

	*suppressed = 0;
	if(sc_rl == NULL || sc_log_interval == 0)
		return 1;
	sc_msg_ip(msg, &ip);
	n = ip.af == AF_INET6 ? 16 : 4;
	for(i = 0; i < n; i++) {
		h ^= ip.ip[i];
		h *= 16777619u;
	}
	if(h == 0)
		h = 1;
	now = (unsigned int)(sc_now_ms() / 1000) + 1;
	sl = &sc_rl[h % SC_RL_SLOTS];
	if(sl->key == h && now - sl->last < (unsigned int)sc_log_interval) {
		sl->suppressed++;
		return 0;
	}
	if(sl->key == h)
		*suppressed = sl->suppressed;
	sl->key = h;
	sl->last = now;
	sl->suppressed = 0;
	return 1;
}

void sc_refuse_log(sip_msg_t *msg, int code, const char *why)
{
	unsigned int sup;
	char more[64];

	if(code > 0)
		update_stat(sc_st_refused, 1);
	if(!sc_rl_allow(msg, &sup))
		return;
	more[0] = '\0';
	if(sup)
		snprintf(more, sizeof(more), " [%u more from this source not logged]",
				sup);
	if(msg->first_line.type != SIP_REQUEST)
		LM_NOTICE("dropped a reply from %s:%d (%s): %s%s\n",
				ip_addr2a(&msg->rcv.src_ip), msg->rcv.src_port,
				proto2a(msg->rcv.proto), why, more);
	else if(code > 0)
		LM_NOTICE("refused %.*s from %s:%d (%s) with %d: %s%s\n",
				msg->first_line.u.request.method.len,
				msg->first_line.u.request.method.s, ip_addr2a(&msg->rcv.src_ip),
				msg->rcv.src_port, proto2a(msg->rcv.proto), code, why, more);
	else
		LM_NOTICE("%.*s from %s:%d (%s): %s%s\n",
				msg->first_line.u.request.method.len,
				msg->first_line.u.request.method.s, ip_addr2a(&msg->rcv.src_ip),
				msg->rcv.src_port, proto2a(msg->rcv.proto), why, more);
}

int sc_refuse(sip_msg_t *msg, int code, const char *reason, const char *why)
{
	str r;

	sc_refuse_log(msg, code, why);
	if(msg->first_line.type == SIP_REQUEST
			&& msg->first_line.u.request.method_value != METHOD_ACK) {
		r.s = (char *)reason;
		r.len = strlen(reason);
		if(sc_slb.freply(msg, code, &r) < 0)
			LM_ERR("cannot send the %d reply\n", code);
	}
	return 0;
}

int ki_sipcluster_deny(sip_msg_t *msg, int code, str *reason)
{
	char rb[128], why[160];

	if(code < 300 || code > 699)
		code = 403;
	snprintf(rb, sizeof(rb), "%.*s", reason->len, reason->s);
	snprintf(why, sizeof(why), "%s (cfg)", rb);
	return sc_refuse(msg, code, rb, why);
}


/* ---- per-transaction memory ---- */

void sc_tried_get(str *out)
{
	sr_xavp_t *x = xavp_get_child_with_sval(&sc_xavp_root, &sc_xavp_tried);
	if(x) {
		*out = x->val.v.s;
	} else {
		out->s = NULL;
		out->len = 0;
	}
}

int sc_tried_has(const str *tried, const str *name)
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
void sc_remember(const str *pair, const str *server)
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

void sc_remember_cstr(const char *pair, const char *server)
{
	str p, sv;

	p.s = (char *)pair;
	p.len = strlen(pair);
	sv.s = (char *)server;
	sv.len = strlen(server);
	sc_remember(&p, &sv);
}

/* ---- replies: only from where their branch went ---- */

int sc_reply_from_branch(struct cell *t, int branch, sip_msg_t *rpl)
{
	struct ip_addr ip;
	struct dest_info *dst;
	sc_addr_t d, s;
	sc_ip_t sip, dip;
	sc_view_t *v;
	sc_server_t *srv;
	sc_proxy_t *px;
	int any_port = 0;

	if(t == NULL || rpl == NULL || rpl == FAKED_REPLY)
		return 1; /* tm's own reply */
	if(branch < 0 || branch >= (int)t->nr_of_outgoings)
		return 0;
	dst = &t->uac[branch].request.dst;
	su2ip_addr(&ip, &dst->to);
	memset(&d, 0, sizeof(d));
	d.af = ip.af;
	memcpy(d.ip, ip.u.addr, ip.len);
	d.port = su_getport(&dst->to);
	d.proto = dst->proto;
	memset(&s, 0, sizeof(s));
	s.af = rpl->rcv.src_ip.af;
	memcpy(s.ip, rpl->rcv.src_ip.u.addr, rpl->rcv.src_ip.len);
	s.port = rpl->rcv.src_port;
	s.proto = rpl->rcv.proto;
	if(d.port != s.port && d.proto != PROTO_UDP && d.proto != PROTO_SCTP) {
		/* a document element whose port the document leaves open may
		 * answer over a connection it opened itself (as for requests) */
		sc_msg_ip(rpl, &sip);
		memset(&dip, 0, sizeof(dip));
		dip.af = ip.af;
		memcpy(dip.ip, ip.u.addr, ip.len);
		v = sc_view_get();
		srv = sc_topo_server_by_src(v->topo, &sip, s.port, s.proto);
		px = sc_topo_proxy_by_src(v->topo, &sip, s.port, s.proto);
		any_port = (srv && sc_ip_eq(&srv->ip, &dip))
				   || (px && sc_ip_eq(&px->ip, &dip));
		sc_view_put();
	}
	return sc_reply_src_ok(&d, &s, any_port);
}

/* reply_route (before tm sees the reply): a reply that matches a
 * transaction but does not come from where the branch it matches went is
 * dropped (returns -1); tm's reference is released here */
int ki_sipcluster_check_reply(sip_msg_t *msg)
{
	struct cell *t;
	int branch = -1;
	char why[160];
	struct ip_addr ip;

	if(msg == NULL || msg == FAKED_REPLY || msg->first_line.type != SIP_REPLY)
		return 1;
	if(sc_msg_tmb.t_check(msg, &branch) != 1)
		return 1; /* no transaction: tm's on_sl_reply route drops it */
	t = sc_msg_tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED)
		return 1;
	if(sc_reply_from_branch(t, branch, msg))
		return 1;
	update_stat(sc_st_replies_dropped, 1);
	if(branch >= 0 && branch < (int)t->nr_of_outgoings) {
		su2ip_addr(&ip, &t->uac[branch].request.dst.to);
		snprintf(why, sizeof(why),
				"%d for %.*s of branch %d sent to %s:%d (%s): not from "
				"there (forged?)",
				msg->first_line.u.reply.statuscode, t->method.len, t->method.s,
				branch, ip_addr2a(&ip),
				su_getport(&t->uac[branch].request.dst.to),
				proto2a(t->uac[branch].request.dst.proto));
	} else {
		snprintf(why, sizeof(why), "matches no branch");
	}
	sc_refuse_log(msg, 0, why);
	sc_msg_tmb.t_unref(msg);
	return -1;
}
