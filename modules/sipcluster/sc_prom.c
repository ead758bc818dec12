/*
 * sipcluster - per-pair and per-server series for Prometheus, set by the
 * cfg through the stock xhttp_prom module's own functions
 *
 * The module does not call xhttp_prom (it has no C API): it hands the
 * series to the script one at a time. Where the script serves /metrics,
 * before prom_dispatch():
 *
 *   while(sipcluster_prom_next()) { prom_gauge_set(...) / prom_counter_inc()
 *       with $sipcluster(prom_metric), prom_value, prom_l1..prom_l3 }
 *
 * (route[SIPCLUSTER_PROM] of the shipped cfg; KSR.sipcluster.prom_next()
 * and KSR.pv.get() in KEMI). The first call of a request takes a snapshot
 * of every pair and server from the readers' view (no lock); each call
 * moves to the next series and returns 1, then -1 at the end. Two kinds,
 * as declared in the cfg:
 *   - gauges (prom_kind "gauge"): in service, drained, active, up,
 *     round-trip time, last reply code;
 *   - counters (prom_kind "counter", names ending in _total): calls,
 *     REGISTERs, switchovers, failovers, pings, requests. xhttp_prom
 *     counters can only be added to, so each scrape adds what the module's
 *     counter grew by since the last one (h.exported, claimed with a
 *     compare-and-swap, so two scrapes at once never add the same growth
 *     twice); a counter that went back (a pair re-created by a reload)
 *     comes with prom_reset 1: the script resets it first, and Prometheus
 *     sees a counter reset, as rate() expects.
 * prom_labels says how many labels the series has (2: pair, geo; 3: pair,
 * server, address). The module's own totals are Kamailio statistics, which
 * xhttp_prom exports itself (xhttp_prom_stats).
 *
 * Layer: beside sc_rpc.c at the top of the work; reads sc_state only.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/mem/pkg.h"
#include "../../core/cfg/cfg.h"
#include "../../core/cfg_core.h"

#include "sc_prom.h"
#include "sc_state.h"
#include "sc_topo.h"
#include "sc_health.h"

/* what a scrape adds to one counter: the growth since the last scrape, or,
 * when the module's counter went back, a reset and then its value */
typedef struct sc_prom_add
{
	unsigned long add;
	int reset;
} sc_prom_add_t;

typedef struct sc_prom_pair
{
	char name[SC_NAME_MAX + 1];
	char geo[SC_NAME_MAX + 1];
	int usable, drained;
	sc_prom_add_t c[4]; /* calls, registers, switchovers, failovers */
} sc_prom_pair_t;

typedef struct sc_prom_srv
{
	char pair[SC_NAME_MAX + 1];
	char name[SC_NAME_MAX + 1];
	char addr[80];
	int active, up, rtt, last_code;
	sc_prom_add_t c[2]; /* pings, requests */
} sc_prom_srv_t;

/* claim what the counter cur grew by since *exported was last moved */
static void sc_prom_claim(
		unsigned long cur, unsigned long *exported, sc_prom_add_t *a)
{
	unsigned long old = SC_RD(*exported);

	a->add = 0;
	a->reset = 0;
	for(;;) {
		if(cur == old)
			return;
		if(SC_CAS(*exported, old, cur))
			break;
		/* another scrape moved it: old is its value now */
	}
	if(cur > old) {
		a->add = cur - old;
	} else {
		a->reset = 1;
		a->add = cur;
	}
}

/* the series of one pair and one server, in the order they are handed
 * out */
static const char *sc_pair_metric[6] = {"sipcluster_pair_in_service",
		"sipcluster_pair_drained", "sipcluster_pair_calls_total",
		"sipcluster_pair_registers_total", "sipcluster_pair_switchovers_total",
		"sipcluster_pair_failovers_total"};
static const char *sc_srv_metric[6] = {"sipcluster_server_active",
		"sipcluster_server_up", "sipcluster_server_rtt_ms",
		"sipcluster_server_last_code", "sipcluster_server_pings_total",
		"sipcluster_server_requests_total"};
#define SC_PROM_GAUGES 2  /* per pair; the rest are counters */
#define SC_PROM_SGAUGES 4 /* per server */

/* per process: the snapshot of the request being served, and where the
 * iteration is */
static struct
{
	unsigned int msg_id;
	int msg_pid;
	int active;
	sc_prom_pair_t *pp;
	sc_prom_srv_t *ps;
	int np, ns;
	int pos;			/* series index: 6 per pair, then 6 per server */
	unsigned long left; /* what the current counter still has to add */
	/* the current series */
	const char *metric;
	int counter, reset, nlabels;
	long value;
	const char *l[3];
} sc_pc;

static void sc_prom_end(void)
{
	if(sc_pc.pp)
		pkg_free(sc_pc.pp);
	if(sc_pc.ps)
		pkg_free(sc_pc.ps);
	memset(&sc_pc, 0, sizeof(sc_pc));
}

static int sc_prom_snapshot(sip_msg_t *msg)
{
	sc_topo_t *t;
	sc_prom_pair_t *pp = NULL;
	sc_prom_srv_t *ps = NULL;
	int np, ns, i, j, k;

	sc_prom_end();
	/* a snapshot of the view, without the lock (counters as they are) */
	t = sc_view_get()->topo;
	np = t->npairs;
	ns = t->nservers;
	pp = pkg_mallocxz((np > 0 ? np : 1) * sizeof(*pp));
	ps = pkg_mallocxz((ns > 0 ? ns : 1) * sizeof(*ps));
	if(pp == NULL || ps == NULL) {
		sc_view_put();
		PKG_MEM_ERROR;
		if(pp)
			pkg_free(pp);
		if(ps)
			pkg_free(ps);
		return -1;
	}
	for(i = 0, k = 0; i < np; i++) {
		sc_pair_t *p = &t->pairs[i];
		int a = sc_pair_active_index(p);
		snprintf(
				pp[i].name, sizeof(pp[i].name), "%.*s", p->name.len, p->name.s);
		snprintf(pp[i].geo, sizeof(pp[i].geo), "%.*s", p->geo.len, p->geo.s);
		pp[i].usable = sc_pair_usable(p);
		pp[i].drained = (p->h.admin == SC_ADMIN_OOS);
		sc_prom_claim(SC_RD(p->h.calls), &p->h.exported[0], &pp[i].c[0]);
		sc_prom_claim(SC_RD(p->h.registers), &p->h.exported[1], &pp[i].c[1]);
		sc_prom_claim(SC_RD(p->h.switchovers), &p->h.exported[2], &pp[i].c[2]);
		sc_prom_claim(SC_RD(p->h.failovers), &p->h.exported[3], &pp[i].c[3]);
		for(j = 0; j < p->nservers && k < ns; j++, k++) {
			sc_server_t *s = p->srv[j];
			snprintf(ps[k].pair, sizeof(ps[k].pair), "%s", pp[i].name);
			snprintf(ps[k].name, sizeof(ps[k].name), "%.*s", s->name.len,
					s->name.s);
			snprintf(ps[k].addr, sizeof(ps[k].addr), "%.*s:%d", s->address.len,
					s->address.s, s->port);
			ps[k].active = (a == j);
			ps[k].up = (s->h.fails == 0 && s->h.last_answer > 0);
			ps[k].rtt = s->h.rtt;
			ps[k].last_code = s->h.last_code;
			sc_prom_claim(SC_RD(s->h.pings), &s->h.exported[0], &ps[k].c[0]);
			sc_prom_claim(SC_RD(s->h.requests), &s->h.exported[1], &ps[k].c[1]);
		}
	}
	sc_view_put();
	if(6 * (np + k) > cfg_get(core, core_cfg, max_while_loops)) {
		static long long warned = 0;
		long long now = sc_now_ms();
		if(warned == 0 || now - warned >= 1000LL * sc_log_interval) {
			warned = now;
			LM_WARN("%d Prometheus series (6 per HA pair and per server), but "
					"max_while_loops is %d: a script's while loop over "
					"sipcluster_prom_next() stops short; raise it (the "
					"shipped cfg: PROM_MAX_SERIES)\n",
					6 * (np + k), cfg_get(core, core_cfg, max_while_loops));
		}
	}
	sc_pc.pp = pp;
	sc_pc.ps = ps;
	sc_pc.np = np;
	sc_pc.ns = k;
	sc_pc.pos = -1;
	sc_pc.msg_id = msg ? msg->id : 0;
	sc_pc.msg_pid = msg ? msg->pid : 0;
	sc_pc.active = 1;
	return 0;
}

/* load series pos into sc_pc; counters: their claimed growth in left */
static void sc_prom_load(int pos)
{
	int idx = pos / 6, m = pos % 6;
	const sc_prom_add_t *a = NULL;

	sc_pc.reset = 0;
	if(idx < sc_pc.np) {
		sc_prom_pair_t *p = &sc_pc.pp[idx];
		sc_pc.metric = sc_pair_metric[m];
		sc_pc.nlabels = 2;
		sc_pc.l[0] = p->name;
		sc_pc.l[1] = p->geo;
		sc_pc.l[2] = "";
		sc_pc.counter = (m >= SC_PROM_GAUGES);
		if(sc_pc.counter)
			a = &p->c[m - SC_PROM_GAUGES];
		else
			sc_pc.value = (m == 0) ? p->usable : p->drained;
	} else {
		sc_prom_srv_t *s = &sc_pc.ps[idx - sc_pc.np];
		sc_pc.metric = sc_srv_metric[m];
		sc_pc.nlabels = 3;
		sc_pc.l[0] = s->pair;
		sc_pc.l[1] = s->name;
		sc_pc.l[2] = s->addr;
		sc_pc.counter = (m >= SC_PROM_SGAUGES);
		if(sc_pc.counter)
			a = &s->c[m - SC_PROM_SGAUGES];
		else
			sc_pc.value = (m == 0)	 ? s->active
						  : (m == 1) ? s->up
						  : (m == 2) ? s->rtt
									 : s->last_code;
	}
	if(a != NULL) {
		sc_pc.reset = a->reset;
		sc_pc.left = a->add;
	}
}

int ki_sipcluster_prom_next(sip_msg_t *msg)
{
	int total;

	if(!sc_pc.active || msg == NULL || sc_pc.msg_id != msg->id
			|| sc_pc.msg_pid != msg->pid) {
		if(sc_prom_snapshot(msg) < 0)
			return -1;
	}
	total = 6 * (sc_pc.np + sc_pc.ns);
	if(sc_pc.pos >= 0 && sc_pc.counter && sc_pc.left > 0) {
		/* a growth beyond an int goes out in int steps, no reset again */
		sc_pc.reset = 0;
	} else {
		if(++sc_pc.pos >= total) {
			sc_prom_end();
			return -1;
		}
		sc_prom_load(sc_pc.pos);
	}
	if(sc_pc.counter) {
		/* an increment of 0 still marks the series used
		 * (xhttp_prom_timeout) */
		sc_pc.value = sc_pc.left > 0x7fffffffUL ? 0x7fffffff : (long)sc_pc.left;
		sc_pc.left -= (unsigned long)sc_pc.value;
	}
	return 1;
}

int sc_prom_field(int field, const char **s, long *n)
{
	if(!sc_pc.active || sc_pc.pos < 0)
		return -1;
	*s = NULL;
	switch(field) {
		case SC_PROM_METRIC:
			*s = sc_pc.metric;
			return 0;
		case SC_PROM_KIND:
			*s = sc_pc.counter ? "counter" : "gauge";
			return 0;
		case SC_PROM_VALUE:
			*n = sc_pc.value;
			return 0;
		case SC_PROM_RESET:
			*n = sc_pc.reset;
			return 0;
		case SC_PROM_LABELS:
			*n = sc_pc.nlabels;
			return 0;
		case SC_PROM_L1:
		case SC_PROM_L2:
		case SC_PROM_L3:
			*s = sc_pc.l[field - SC_PROM_L1];
			return 0;
	}
	return -1;
}
