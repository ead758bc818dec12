/*
 * sipcluster - RPC commands (kamcmd sipcluster.*)
 *
 * Layer: the top of the work, beside sc_prom.c: it reads the state
 * (sc_state), asks the routing and the registrar what they would do now
 * (sipcluster.which), and is called by nobody but the RPC core (registered
 * from mod_init). The sync's own RPCs live in sc_syncd.c.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/rpc.h"
#include "../../core/rpc_lookup.h"

#include "sc_rpc.h"
#include "sc_state.h"
#include "sc_route.h"
#include "sc_reg.h"
#include "sc_topo.h"
#include "sc_health.h"
#include "sc_codec.h"

static void sc_rpc_server(
		rpc_t *rpc, void *ah, const sc_pair_t *p, int i, long long now)
{
	const sc_server_t *s = p->srv[i];
	void *sh;
	int active = (sc_pair_active_index(p) == i);

	if(rpc->array_add(ah, "{", &sh) < 0)
		return;
	rpc->struct_add(sh, "SSdssS", "name", &s->name, "address", &s->address,
			"port", s->port, "transport", sc_transport_name(s->transport),
			"role", sc_role_name(s->role), "uri", &s->uri);
	rpc->struct_add(sh, "sdsdddLuu", "active", active ? "yes" : "no", "uid",
			(int)s->h.uid, "admin", sc_admin_name(s->h.admin), "last_code",
			s->h.last_code, "fails", s->h.fails, "rtt_ms", s->h.rtt,
			"last_answer_ms", (long long)s->h.last_answer, "pings",
			(unsigned)s->h.pings, "requests", (unsigned)s->h.requests);
	rpc->struct_add(sh, "d", "last_answer_age_ms",
			s->h.last_answer ? (int)(now - s->h.last_answer) : -1);
}

static void sc_rpc_pair(rpc_t *rpc, void *ah, const sc_pair_t *p, long long now)
{
	void *ph, *sh;
	int i, a;
	sc_hcfg_t c;

	if(rpc->array_add(ah, "{", &ph) < 0)
		return;
	sc_pair_hcfg(p, &c);
	a = sc_pair_active_index(p);
	rpc->struct_add(ph, "Sd", "name", &p->name, "weight", p->weight);
	rpc->struct_add(ph, "ssSss", "state",
			sc_pair_usable(p) ? "in-service" : "out-of-service", "probe",
			sc_pair_state_name(p->h.state), "active",
			a >= 0 ? &p->srv[a]->name : &p->name, "mode",
			sc_mode_name(p->h.mode), "admin", sc_admin_name(p->h.admin));
	rpc->struct_add(ph, "dduuuL", "oos_check", c.check / 1000, "oos_force",
			c.force / 1000, "switchovers", (unsigned)p->h.switchovers, "calls",
			(unsigned)p->h.calls, "registers", (unsigned)p->h.registers,
			"since_ms", (long long)p->h.since);
	if(rpc->struct_add(ph, "[", "SERVERS", &sh) < 0)
		return;
	for(i = 0; i < p->nservers; i++)
		sc_rpc_server(rpc, sh, p, i, now);
}

static const char *sc_rpc_list_doc[2] = {
		"Show the cluster topology grouped by geo-location, with the live "
		"state of every HA pair and server; sipcluster.list NAME shows only "
		"the geo-location or the HA pair NAME (a large document's whole "
		"list is more than kamcmd reads)",
		0};

static int sc_str_is(const str *a, const str *b)
{
	return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

static void sc_rpc_list(rpc_t *rpc, void *ctx)
{
	void *th, *gh, *gah, *xh, *ph, *ah;
	sc_view_t *v;
	sc_topo_t *t;
	int g, i, self;
	long long now = sc_wall_ms();
	str geo, name = STR_NULL;
	sc_pair_t *only = NULL;
	int only_geo = -1;
	sc_state_info_t si;

	if(rpc->scan(ctx, "*S", &name) < 1)
		name.len = 0;
	sc_state_info(&si);
	/* O(pairs) of formatting: done on the readers' view, without the lock
	 * (the live counters are read as they are) */
	v = sc_view_get();
	t = v->topo;
	self = v->self;
	if(name.len > 0) {
		for(g = 0; g < t->ngeos; g++)
			if(sc_str_is(&t->geos[g], &name))
				only_geo = g;
		if(only_geo < 0 && (only = sc_topo_pair_by_name(t, &name)) != NULL) {
			for(g = 0; g < t->ngeos; g++)
				if(sc_str_is(&t->geos[g], &only->geo))
					only_geo = g;
		}
		if(only_geo < 0) {
			sc_view_put();
			rpc->fault(ctx, 404, "No geo-location or HA pair named '%.*s'",
					name.len, name.s);
			return;
		}
	}
	if(rpc->add(ctx, "{", &th) < 0) {
		sc_view_put();
		rpc->fault(ctx, 500, "Internal error");
		return;
	}
	rpc->struct_add(th, "SSSS", "cluster", &t->name, "file", &t->file, "proxy",
			&t->proxies[self].name, "geo_location", &t->proxies[self].geo);
	rpc->struct_add(th, "dddduuL", "proxies", t->nproxies, "pairs", t->npairs,
			"servers", t->nservers, "geo_locations", t->ngeos, "reloads",
			si.reloads, "reload_failures", si.reload_failures, "loaded_at_ms",
			si.loaded_at);
	/* versions replaced by reloads and state changes that a request may
	 * still read, and those freed since the start */
	rpc->struct_add(th, "uu", "retired_pending", si.retired_pending,
			"retired_freed", si.retired_freed);
	if(rpc->struct_add(th, "[", "GEO_LOCATIONS", &gah) < 0)
		goto done;
	for(g = 0; g < t->ngeos; g++) {
		if(only_geo >= 0 && g != only_geo)
			continue;
		geo = t->geos[g];
		if(rpc->array_add(gah, "{", &gh) < 0)
			goto done;
		rpc->struct_add(gh, "Ss", "geo_location", &geo, "local",
				(geo.len == t->proxies[self].geo.len
						&& memcmp(geo.s, t->proxies[self].geo.s, geo.len) == 0)
						? "yes"
						: "no");
		/* the Record-Route name of the geo-location, when it has one */
		for(i = 0; i < t->nproxies; i++) {
			sc_proxy_t *p = &t->proxies[i];
			if(p->rr_host.len > 0 && p->geo.len == geo.len
					&& memcmp(p->geo.s, geo.s, geo.len) == 0) {
				rpc->struct_add(gh, "S", "rr_host", &p->rr_host);
				break;
			}
		}
		if(rpc->struct_add(gh, "[", "PROXIES", &ah) < 0)
			goto done;
		for(i = 0; i < t->nproxies; i++) {
			sc_proxy_t *p = &t->proxies[i];
			if(p->geo.len != geo.len || memcmp(p->geo.s, geo.s, geo.len))
				continue;
			if(rpc->array_add(ah, "{", &xh) < 0)
				goto done;
			rpc->struct_add(xh, "SSdsSs", "name", &p->name, "address",
					&p->address, "port", p->port, "transport",
					sc_transport_name(p->transport), "uri", &p->uri, "self",
					i == self ? "yes" : "no");
		}
		if(rpc->struct_add(gh, "[", "PAIRS", &ph) < 0)
			goto done;
		for(i = 0; i < t->npairs; i++) {
			sc_pair_t *p = &t->pairs[i];
			if(p->geo.len != geo.len || memcmp(p->geo.s, geo.s, geo.len))
				continue;
			if(only && p != only)
				continue;
			sc_rpc_pair(rpc, ph, p, now);
		}
	}
done:
	sc_view_put();
}

static const char *sc_rpc_reload_doc[2] = {
		"Re-read the cluster document; on error the running topology is "
		"kept and the fault names file, line and reason",
		0};

static void sc_rpc_reload(rpc_t *rpc, void *ctx)
{
	char msg[1024];

	msg[0] = '\0';
	if(sc_reload(msg, sizeof(msg)) < 0) {
		rpc->fault(ctx, 500, "Reload failed, running topology kept: %s", msg);
		return;
	}
	rpc->rpl_printf(ctx, "Ok. Cluster document reloaded.");
}

static const char *sc_rpc_set_state_doc[2] = {
		"Operator override: sipcluster.set_state NAME active|out-of-service|"
		"auto (NAME is an HA pair or a server)",
		0};

static void sc_rpc_set_state(rpc_t *rpc, void *ctx)
{
	str name = STR_NULL, st = STR_NULL;
	int admin, events = 0, prev = -1, ok = 1;
	sc_pair_t *p = NULL;
	sc_server_t *s;
	sc_topo_t *t;
	sc_transition_t tr;

	if(rpc->scan(ctx, "SS", &name, &st) < 2)
		return;
	if(st.len == 6 && strncmp(st.s, "active", 6) == 0)
		admin = SC_ADMIN_ACTIVE;
	else if((st.len == 14 && strncmp(st.s, "out-of-service", 14) == 0)
			|| (st.len == 3 && strncmp(st.s, "oos", 3) == 0))
		admin = SC_ADMIN_OOS;
	else if(st.len == 4 && strncmp(st.s, "auto", 4) == 0)
		admin = SC_ADMIN_AUTO;
	else {
		rpc->fault(ctx, 400,
				"Unknown state '%.*s': use active, "
				"out-of-service or auto",
				st.len, st.s);
		return;
	}
	t = sc_state_lock();
	p = sc_topo_pair_by_name(t, &name);
	if(p != NULL) {
		prev = sc_pair_active_index(p);
		sc_health_set_pair_admin(p, admin, sc_now_ms(), sc_wall_ms(), &events);
	} else {
		s = sc_topo_server_by_name(t, &name);
		if(s != NULL) {
			p = s->pair;
			prev = sc_pair_active_index(p);
			sc_health_set_server_admin(
					p, s->index, admin, sc_now_ms(), sc_wall_ms(), &events);
		} else {
			ok = 0;
		}
	}
	if(ok && events)
		sc_transition_fill(&tr, p, events, prev, "operator set_state");
	sc_state_unlock();
	if(!ok) {
		rpc->fault(ctx, 404, "No HA pair or server named '%.*s'", name.len,
				name.s);
		return;
	}
	LM_NOTICE("operator set '%.*s' to %.*s\n", name.len, name.s, st.len, st.s);
	if(events)
		sc_transition_report(&tr);
	rpc->rpl_printf(
			ctx, "Ok. %.*s set to %.*s.", name.len, name.s, st.len, st.s);
}

static const char *sc_rpc_check_doc[2] = {
		"Validate a cluster document as sipcluster.reload would (this "
		"proxy in it, its server-id, a socket for every transport) without "
		"loading it: sipcluster.check [FILE] (default: cluster_file)",
		0};

static void sc_rpc_check(rpc_t *rpc, void *ctx)
{
	char msg[1024], path[512];
	str file = STR_NULL;

	if(rpc->scan(ctx, "*S", &file) < 1 || file.len <= 0) {
		snprintf(path, sizeof(path), "%s", sc_cluster_file);
	} else {
		snprintf(path, sizeof(path), "%.*s", file.len, file.s);
	}
	msg[0] = '\0';
	if(sc_check_file(path, msg, sizeof(msg)) < 0) {
		rpc->fault(ctx, 500, "Invalid: %s", msg);
		return;
	}
	rpc->rpl_printf(ctx, "%s", msg);
}

static const char *sc_rpc_which_doc[2] = {
		"Where a request would go now: sipcluster.which new (a new call: the "
		"next pair of the smooth weighted round-robin, without taking it) or "
		"sipcluster.which AOR (a REGISTER of that address-of-record, the "
		"AoR as stored: user, or user@domain with usrloc use_domain)",
		0};

static void sc_rpc_which(rpc_t *rpc, void *ctx)
{
	str what = STR_NULL;
	char pair[SC_NAME_MAX + 1], server[SC_NAME_MAX + 1], uri[256];
	int remote = 0, r;
	void *th;

	if(rpc->scan(ctx, "S", &what) < 1)
		return;
	if(what.len == 3 && strncmp(what.s, "new", 3) == 0)
		r = sc_which_new(pair, sizeof(pair), server, sizeof(server), uri,
				sizeof(uri), &remote);
	else
		r = sc_which_aor(&what, pair, server, uri, sizeof(uri), &remote);
	if(r < 0) {
		rpc->fault(ctx, 503, "No SIP Server in service would take it");
		return;
	}
	if(rpc->add(ctx, "{", &th) < 0) {
		rpc->fault(ctx, 500, "Internal error");
		return;
	}
	rpc->struct_add(th, "Sssss", "for", &what, "pair", pair, "member", server,
			"uri", uri, "data_center", remote ? "other" : "local");
}

/* clang-format off */
static rpc_export_t sc_rpc_cmds[] = {
	{"sipcluster.list", sc_rpc_list, sc_rpc_list_doc, 0},
	{"sipcluster.reload", sc_rpc_reload, sc_rpc_reload_doc, 0},
	{"sipcluster.set_state", sc_rpc_set_state, sc_rpc_set_state_doc, 0},
	{"sipcluster.check", sc_rpc_check, sc_rpc_check_doc, 0},
	{"sipcluster.which", sc_rpc_which, sc_rpc_which_doc, 0},
	{0, 0, 0, 0}
};
/* clang-format on */

int sc_rpc_init(void)
{
	if(rpc_register_array(sc_rpc_cmds) != 0) {
		LM_ERR("failed to register RPC commands\n");
		return -1;
	}
	return 0;
}
