/*
 * sipcluster - per-pair and per-server series for Prometheus, through the
 * stock xhttp_prom module
 *
 * sipcluster_prom_update() (called where the script serves /metrics, just
 * before prom_dispatch()) copies the state of every pair and server out
 * of the readers' view (no lock), then sets xhttp_prom gauges with it,
 * through xhttp_prom's own KEMI functions (gauge_set_l2 / _l3). The gauges are declared in the
 * cfg (modparam xhttp_prom prom_gauge, see the shipped cfg); the module's
 * counters are Kamailio statistics, which xhttp_prom exports itself
 * (xhttp_prom_stats).
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/mem/pkg.h"
#include "../../core/kemi.h"

#include "sc_mod.h"
#include "sc_topo.h"
#include "sc_health.h"

typedef int (*sc_gauge2_f)(sip_msg_t *, str *, str *, str *, str *);
typedef int (*sc_gauge3_f)(sip_msg_t *, str *, str *, str *, str *, str *);

typedef struct sc_prom_pair
{
	char name[SC_NAME_MAX + 1];
	char geo[SC_NAME_MAX + 1];
	int usable, drained;
	unsigned long calls, registers, switchovers, failovers;
} sc_prom_pair_t;

typedef struct sc_prom_srv
{
	char pair[SC_NAME_MAX + 1];
	char name[SC_NAME_MAX + 1];
	char addr[80];
	int active, up, rtt, last_code;
	unsigned long pings, requests;
} sc_prom_srv_t;

static sc_gauge2_f sc_g2 = NULL;
static sc_gauge3_f sc_g3 = NULL;
static int sc_prom_looked = 0;

static int sc_prom_bind(void)
{
	str m = str_init("xhttp_prom"), f2 = str_init("gauge_set_l2"),
		f3 = str_init("gauge_set_l3");
	sr_kemi_t *k2 = NULL, *k3 = NULL;
	sr_kemi_module_t *mods;
	int i, n;

	if(sc_prom_looked)
		return (sc_g2 && sc_g3) ? 0 : -1;
	sc_prom_looked = 1;
	/* sr_kemi_lookup() takes the module's index: find it by name */
	mods = sr_kemi_modules_get();
	n = sr_kemi_modules_size_get();
	for(i = 0; mods && i < n; i++) {
		if(mods[i].mname.len == m.len
				&& strncmp(mods[i].mname.s, m.s, m.len) == 0) {
			k2 = sr_kemi_lookup(&m, i, &f2);
			k3 = sr_kemi_lookup(&m, i, &f3);
			break;
		}
	}
	if(k2 == NULL || k3 == NULL) {
		LM_ERR("sipcluster_prom_update() needs the xhttp_prom module loaded "
			   "(and the sipcluster gauges declared, see the shipped cfg)\n");
		return -1;
	}
	sc_g2 = (sc_gauge2_f)k2->func;
	sc_g3 = (sc_gauge3_f)k3->func;
	return 0;
}

static void sc_cstr(str *s, const char *c)
{
	s->s = (char *)c;
	s->len = strlen(c);
}

static void sc_set2(sip_msg_t *msg, const char *metric, double v,
		const char *l1, const char *l2)
{
	char num[40];
	str n, val, a, b;

	snprintf(num, sizeof(num), "%.0f", v);
	sc_cstr(&n, metric);
	sc_cstr(&val, num);
	sc_cstr(&a, l1);
	sc_cstr(&b, l2);
	sc_g2(msg, &n, &val, &a, &b);
}

static void sc_set3(sip_msg_t *msg, const char *metric, double v,
		const char *l1, const char *l2, const char *l3)
{
	char num[40];
	str n, val, a, b, c;

	snprintf(num, sizeof(num), "%.0f", v);
	sc_cstr(&n, metric);
	sc_cstr(&val, num);
	sc_cstr(&a, l1);
	sc_cstr(&b, l2);
	sc_cstr(&c, l3);
	sc_g3(msg, &n, &val, &a, &b, &c);
}

int ki_sipcluster_prom_update(sip_msg_t *msg)
{
	sc_topo_t *t;
	sc_prom_pair_t *pp = NULL;
	sc_prom_srv_t *ps = NULL;
	int np = 0, ns = 0, i, j, k;

	if(sc_prom_bind() < 0)
		return -1;
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
		pp[i].calls = p->h.calls;
		pp[i].registers = p->h.registers;
		pp[i].switchovers = p->h.switchovers;
		pp[i].failovers = p->h.failovers;
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
			ps[k].pings = s->h.pings;
			ps[k].requests = s->h.requests;
		}
	}
	ns = k;
	sc_view_put();

	for(i = 0; i < np; i++) {
		sc_set2(msg, "sipcluster_pair_in_service", pp[i].usable, pp[i].name,
				pp[i].geo);
		sc_set2(msg, "sipcluster_pair_drained", pp[i].drained, pp[i].name,
				pp[i].geo);
		sc_set2(msg, "sipcluster_pair_calls", pp[i].calls, pp[i].name,
				pp[i].geo);
		sc_set2(msg, "sipcluster_pair_registers", pp[i].registers, pp[i].name,
				pp[i].geo);
		sc_set2(msg, "sipcluster_pair_switchovers", pp[i].switchovers,
				pp[i].name, pp[i].geo);
		sc_set2(msg, "sipcluster_pair_failovers", pp[i].failovers, pp[i].name,
				pp[i].geo);
	}
	for(i = 0; i < ns; i++) {
		sc_set3(msg, "sipcluster_server_active", ps[i].active, ps[i].pair,
				ps[i].name, ps[i].addr);
		sc_set3(msg, "sipcluster_server_up", ps[i].up, ps[i].pair, ps[i].name,
				ps[i].addr);
		sc_set3(msg, "sipcluster_server_rtt_ms", ps[i].rtt, ps[i].pair,
				ps[i].name, ps[i].addr);
		sc_set3(msg, "sipcluster_server_last_code", ps[i].last_code, ps[i].pair,
				ps[i].name, ps[i].addr);
		sc_set3(msg, "sipcluster_server_pings", ps[i].pings, ps[i].pair,
				ps[i].name, ps[i].addr);
		sc_set3(msg, "sipcluster_server_requests", ps[i].requests, ps[i].pair,
				ps[i].name, ps[i].addr);
	}
	pkg_free(pp);
	pkg_free(ps);
	return 1;
}
