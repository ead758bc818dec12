/*
 * sipcluster - per-pair and per-server series for Prometheus, through the
 * stock xhttp_prom module
 *
 * sipcluster_prom_update() (called where the script serves /metrics, just
 * before prom_dispatch()) reads the state of every pair and server from
 * the readers' view (no lock) and hands it to xhttp_prom through its own
 * KEMI functions, as two kinds of series declared in the cfg (see the
 * shipped cfg):
 *   - gauges (prom_gauge, gauge_set_l2/_l3): in service, drained, active,
 *     up, round-trip time, last reply code;
 *   - counters (prom_counter, counter_inc_l2/_l3, names ending in _total):
 *     calls, REGISTERs, switchovers, failovers, pings, requests. xhttp_prom
 *     counters can only be added to, so each scrape adds what the module's
 *     counter grew by since the last one (h.exported, claimed with a
 *     compare-and-swap, so two scrapes at once never add the same growth
 *     twice); a counter that went back (a pair re-created by a reload) is
 *     reset first: Prometheus sees a counter reset, as rate() expects.
 * The module's own totals are Kamailio statistics, which xhttp_prom exports
 * itself (xhttp_prom_stats).
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
typedef int (*sc_cinc2_f)(sip_msg_t *, str *, int, str *, str *);
typedef int (*sc_cinc3_f)(sip_msg_t *, str *, int, str *, str *, str *);
typedef int (*sc_crst2_f)(sip_msg_t *, str *, str *, str *);
typedef int (*sc_crst3_f)(sip_msg_t *, str *, str *, str *, str *);

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

static sc_gauge2_f sc_g2 = NULL;
static sc_gauge3_f sc_g3 = NULL;
static sc_cinc2_f sc_i2 = NULL;
static sc_cinc3_f sc_i3 = NULL;
static sc_crst2_f sc_r2 = NULL;
static sc_crst3_f sc_r3 = NULL;
static int sc_prom_looked = 0;

static int sc_prom_bind(void)
{
	static const char *names[6] = {"gauge_set_l2", "gauge_set_l3",
			"counter_inc_l2", "counter_inc_l3", "counter_reset_l2",
			"counter_reset_l3"};
	str m = str_init("xhttp_prom"), f;
	sr_kemi_t *k[6] = {NULL};
	sr_kemi_module_t *mods;
	int i, j, n;

	if(sc_prom_looked)
		return (sc_g2 && sc_g3 && sc_i2 && sc_i3 && sc_r2 && sc_r3) ? 0 : -1;
	sc_prom_looked = 1;
	/* sr_kemi_lookup() takes the module's index: find it by name */
	mods = sr_kemi_modules_get();
	n = sr_kemi_modules_size_get();
	for(i = 0; mods && i < n; i++) {
		if(mods[i].mname.len == m.len
				&& strncmp(mods[i].mname.s, m.s, m.len) == 0) {
			for(j = 0; j < 6; j++) {
				f.s = (char *)names[j];
				f.len = strlen(names[j]);
				k[j] = sr_kemi_lookup(&m, i, &f);
			}
			break;
		}
	}
	for(j = 0; j < 6; j++) {
		if(k[j] == NULL) {
			LM_ERR("sipcluster_prom_update() needs the xhttp_prom module "
				   "loaded (and the sipcluster gauges and counters declared, "
				   "see the shipped cfg)\n");
			return -1;
		}
	}
	sc_g2 = (sc_gauge2_f)k[0]->func;
	sc_g3 = (sc_gauge3_f)k[1]->func;
	sc_i2 = (sc_cinc2_f)k[2]->func;
	sc_i3 = (sc_cinc3_f)k[3]->func;
	sc_r2 = (sc_crst2_f)k[4]->func;
	sc_r3 = (sc_crst3_f)k[5]->func;
	return 0;
}

/* claim what the counter cur grew by since *exported was last moved */
static void sc_prom_claim(unsigned long cur, unsigned long *exported,
		sc_prom_add_t *a)
{
	unsigned long old = __atomic_load_n(exported, __ATOMIC_RELAXED);

	a->add = 0;
	a->reset = 0;
	for(;;) {
		if(cur == old)
			return;
		if(__atomic_compare_exchange_n(exported, &old, cur, 0,
				   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
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

/* a counter with labels l1, l2 (and l3 when not NULL): reset when the
 * module's counter went back, then the growth added (in int steps) */
static void sc_count(sip_msg_t *msg, const char *metric,
		const sc_prom_add_t *a, const char *l1, const char *l2, const char *l3)
{
	str n, x, y, z;
	unsigned long left = a->add;
	int step;

	sc_cstr(&n, metric);
	sc_cstr(&x, l1);
	sc_cstr(&y, l2);
	if(l3)
		sc_cstr(&z, l3);
	if(a->reset) {
		if(l3)
			sc_r3(msg, &n, &x, &y, &z);
		else
			sc_r2(msg, &n, &x, &y);
	}
	/* an increment of 0 still marks the series used (xhttp_prom_timeout) */
	do {
		step = left > 0x7fffffffUL ? 0x7fffffff : (int)left;
		if(l3)
			sc_i3(msg, &n, step, &x, &y, &z);
		else
			sc_i2(msg, &n, step, &x, &y);
		left -= step;
	} while(left > 0);
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
		sc_prom_claim(SC_RD(p->h.calls), &p->h.exported[0], &pp[i].c[0]);
		sc_prom_claim(
				SC_RD(p->h.registers), &p->h.exported[1], &pp[i].c[1]);
		sc_prom_claim(
				SC_RD(p->h.switchovers), &p->h.exported[2], &pp[i].c[2]);
		sc_prom_claim(
				SC_RD(p->h.failovers), &p->h.exported[3], &pp[i].c[3]);
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
			sc_prom_claim(
					SC_RD(s->h.pings), &s->h.exported[0], &ps[k].c[0]);
			sc_prom_claim(
					SC_RD(s->h.requests), &s->h.exported[1], &ps[k].c[1]);
		}
	}
	ns = k;
	sc_view_put();

	for(i = 0; i < np; i++) {
		sc_set2(msg, "sipcluster_pair_in_service", pp[i].usable, pp[i].name,
				pp[i].geo);
		sc_set2(msg, "sipcluster_pair_drained", pp[i].drained, pp[i].name,
				pp[i].geo);
		sc_count(msg, "sipcluster_pair_calls_total", &pp[i].c[0], pp[i].name,
				pp[i].geo, NULL);
		sc_count(msg, "sipcluster_pair_registers_total", &pp[i].c[1],
				pp[i].name, pp[i].geo, NULL);
		sc_count(msg, "sipcluster_pair_switchovers_total", &pp[i].c[2],
				pp[i].name, pp[i].geo, NULL);
		sc_count(msg, "sipcluster_pair_failovers_total", &pp[i].c[3],
				pp[i].name, pp[i].geo, NULL);
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
		sc_count(msg, "sipcluster_server_pings_total", &ps[i].c[0],
				ps[i].pair, ps[i].name, ps[i].addr);
		sc_count(msg, "sipcluster_server_requests_total", &ps[i].c[1],
				ps[i].pair, ps[i].name, ps[i].addr);
	}
	pkg_free(pp);
	pkg_free(ps);
	return 1;
}
