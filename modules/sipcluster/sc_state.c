/*
 * sipcluster - the shared state of the glue, and its only owner
 *
 * Layer: right above the pure floor (sc_topo, sc_health, sc_select,
 * sc_rcu), below every other glue file (see README.md, "Architecture").
 * This file alone touches the shm block (sc_shared, static here): the
 * running topology with the pairs' run-time health state, the views the
 * requests read, reload, state transitions and the lock. Everything above
 * goes through this interface:
 *   - readers (every request): v = sc_view_get() ... sc_view_put(), no
 *     lock, never blocked by a writer (sc_rcu);
 *   - writers (probe results, requests that reveal a switchover, failover,
 *     operator RPCs, the sync process): t = sc_state_lock() ...
 *     sc_state_unlock(). A transition is filled under the lock
 *     (sc_transition_fill) and reported after it (sc_transition_report);
 *     sc_state_unlock() publishes a new view when a pair's usability
 *     changed, before the lock is released.
 * Invariants: a published view and its topology are never changed in place
 * (the pairs' health words excepted, single words read with SC_RD); a
 * failed reload leaves topology, view and generation as they were; the
 * lock is never held while calling tm, usrloc, dmq or the script.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <libxml/parser.h>

#include "../../core/sr_module.h"
#include "../../core/dprint.h"
#include "../../core/mem/shm.h"
#include "../../core/mem/pkg.h"
#include "../../core/locking.h"
#include "../../core/ip_addr.h"
#include "../../core/socket_info.h"
#include "../../core/route.h"
#include "../../core/fmsg.h"
#include "../../core/kemi.h"
#include "../../core/globals.h"
#include "../../core/pt.h"

#include "sc_state.h"
#include "sc_topo.h"
#include "sc_health.h"

/* everything every process sees; lives in shm. The writers serialise on
 * lock; requests read view without it. */
typedef struct sc_shared
{
	gen_lock_t lock;
	sc_topo_t *topo;	   /* current topology (with run-time state) */
	unsigned int next_uid; /* next server uid */
	unsigned int reloads;  /* successful reloads */
	unsigned int reload_failures;
	long long loaded_at;   /* wall-clock ms of the last (re)load */
	int self;			   /* index of this proxy in topo->proxies */
	unsigned int topo_gen; /* bumped on every (re)load */
	sc_view_t *view;	   /* what readers see (SC_DEREF) */
	int view_dirty;		   /* a pair's usability changed (or the last
							  * publish failed): publish before unlocking */
	sc_rcu_t rcu;		   /* retired views and topologies */
} sc_shared_t;

static sc_shared_t *sc_shared = NULL;

/* modparams */
char *sc_cluster_file = NULL;
char *sc_schema_file = NULL;
str sc_proxy_name = STR_NULL;
str sc_geo_location = STR_NULL;
int sc_oos_check = 5;
int sc_oos_force = 5;
str sc_event_route_name = str_init("sipcluster:pair-state");
/* KEMI: the function called on a pair transition (the event_route of the
 * native cfg) */
str sc_event_callback = STR_NULL;
int sc_cross_dc_failover = 1;
int sc_log_interval = 60;

stat_var *sc_st_switchovers = NULL;
stat_var *sc_st_reloads = NULL;
stat_var *sc_st_reload_failures = NULL;

static int sc_event_rt = -1;
/* transition being reported by event_route (per process) */
static sc_transition_t *sc_cur_tr = NULL;

long long sc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long sc_wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void sc_pair_hcfg(const sc_pair_t *p, sc_hcfg_t *c)
{
	c->check = (p->oos_check >= 0 ? p->oos_check : sc_oos_check) * 1000;
	c->force = (p->oos_force > 0 ? p->oos_force : sc_oos_force) * 1000;
}

/* Find this proxy in the document: by proxy_name when set, else by one of
 * the listen sockets. Its address must be one Kamailio listens on. */
static int sc_find_self(sc_topo_t *t, char *msg, int len)
{
	int i;
	sc_proxy_t *p;
	str host;

	if(sc_proxy_name.len > 0) {
		p = sc_topo_proxy_by_name(t, &sc_proxy_name);
		if(p == NULL) {
			snprintf(msg, len,
					"[40000] proxy '%.*s' is not found in the list of "
					"proxies of cluster '%.*s' (%.*s)",
					sc_proxy_name.len, sc_proxy_name.s, t->name.len, t->name.s,
					t->file.len, t->file.s);
			return -1;
		}
		host = p->address;
		if(grep_sock_info(
				   &host, (unsigned short)p->port, (unsigned short)p->transport)
				== NULL) {
			snprintf(msg, len,
					"[40000] proxy address (%.*s:%d) is not found in the "
					"list: proxy '%.*s' at %.*s:%d is not a listen socket of "
					"this Kamailio (add listen=%s:%.*s:%d)",
					p->address.len, p->address.s, p->port, p->name.len,
					p->name.s, t->file.len, t->file.s, p->line,
					sc_transport_name(p->transport), p->address.len,
					p->address.s, p->port);
			return -1;
		}
		return p->index;
	}
	for(i = 0; i < t->nproxies; i++) {
		p = &t->proxies[i];
		host = p->address;
		if(grep_sock_info(
				   &host, (unsigned short)p->port, (unsigned short)p->transport)
				!= NULL)
			return i;
	}
	snprintf(msg, len,
			"[40000] proxy address is not found in the list: none of the %d "
			"proxies of cluster '%.*s' (%.*s) is a listen socket of this "
			"Kamailio; set modparam proxy_name or a matching listen=",
			t->nproxies, t->name.len, t->name.s, t->file.len, t->file.s);
	return -1;
}

/* every transport the document uses to reach a server or another proxy
 * needs a listen socket of this proxy (on its own address): TLS, say, is
 * otherwise accepted in the document and then silently never works */
static int sc_check_transports(sc_topo_t *t, int self, char *msg, int len)
{
	sc_proxy_t *me = &t->proxies[self];
	str host = me->address;
	int i, tp, line;
	const char *kind, *name;
	int nlen;

	for(i = 0; i < t->nservers + t->nproxies; i++) {
		if(i < t->nservers) {
			tp = t->servers[i].transport;
			line = t->servers[i].line;
			kind = "server";
			name = t->servers[i].name.s;
			nlen = t->servers[i].name.len;
		} else {
			if(i - t->nservers == self)
				continue;
			tp = t->proxies[i - t->nservers].transport;
			line = t->proxies[i - t->nservers].line;
			kind = "proxy";
			name = t->proxies[i - t->nservers].name.s;
			nlen = t->proxies[i - t->nservers].name.len;
		}
		if(grep_sock_info(&host, 0, (unsigned short)tp) != NULL)
			continue;
		snprintf(msg, len,
				"%.*s:%d: %s '%.*s' is reached over %s, but this proxy has no "
				"%s listen socket on %.*s (add listen=%s:%.*s:PORT%s)",
				t->file.len, t->file.s, line, kind, nlen, name,
				sc_transport_name(tp), sc_transport_name(tp), host.len, host.s,
				sc_transport_name(tp), host.len, host.s,
				tp == SC_TP_TLS ? " and the tls module: WITH_TLS in the "
								  "shipped cfg"
								: "");
		return -1;
	}
	return 0;
}

/* check that the document names this proxy with the same address; returns
 * its index or -1 with msg */
static int sc_check_topo(sc_topo_t *t, char *msg, int len)
{
	int self;
	sc_proxy_t *p;

	self = sc_find_self(t, msg, len);
	if(self < 0)
		return -1;
	p = &t->proxies[self];
	if(sc_geo_location.len > 0
			&& (p->geo.len != sc_geo_location.len
					|| memcmp(p->geo.s, sc_geo_location.s, p->geo.len) != 0)) {
		snprintf(msg, len,
				"%.*s:%d: proxy '%.*s' has geo-location '%.*s' but modparam "
				"geo_location is '%.*s'",
				t->file.len, t->file.s, p->line, p->name.len, p->name.s,
				p->geo.len, p->geo.s, sc_geo_location.len, sc_geo_location.s);
		return -1;
	}
	if(p->server_id != server_id) {
		/* usrloc ownership (who pings a binding) and dialog ids follow it */
		snprintf(msg, len,
				"%.*s:%d: proxy '%.*s' has server-id %d, but this Kamailio "
				"runs with server_id=%d (the shipped cfg takes SERVER_ID from "
				"sipcluster-node.cfg: render it again)",
				t->file.len, t->file.s, p->line, p->name.len, p->name.s,
				p->server_id, server_id);
		return -1;
	}
	if(sc_check_transports(t, self, msg, len) < 0)
		return -1;
	if(shm_mem_size < sc_topo_shm_need(t)) {
		/* refused now rather than out of memory once the probes run */
		snprintf(msg, len,
				"%.*s: %d HA pairs need about %lu MB of shared memory (%lu KB "
				"per pair with its probes in flight), this Kamailio has %lu "
				"MB: start it with -m %lu (sipcluster-proxy --shm, or "
				"SHM_MEMORY in /etc/default/kamailio)",
				t->file.len, t->file.s, t->npairs, sc_topo_shm_need(t) >> 20,
				SC_SHM_PER_PAIR >> 10, shm_mem_size >> 20,
				(sc_topo_shm_need(t) >> 20) + 1);
		return -1;
	}
	return self;
}

/* ---- the read side: views (see sc_rcu.h) ---- */

static int sc_view_depth = 0; /* per process */
static sc_view_t *sc_view_cur = NULL;

sc_view_t *sc_view_get(void)
{
	if(sc_view_depth++ == 0) {
		sc_rcu_enter(&sc_shared->rcu, process_no);
		sc_view_cur = SC_DEREF(sc_shared->view);
	}
	return sc_view_cur;
}

void sc_view_put(void)
{
	if(sc_view_depth <= 0) {
		LM_BUG("sc_view_put() without sc_view_get()\n");
		return;
	}
	if(--sc_view_depth == 0) {
		sc_view_cur = NULL;
		sc_rcu_exit(&sc_shared->rcu, process_no);
	}
}

static void sc_view_free(void *v)
{
	shm_free(v);
}

static void sc_topo_free_v(void *t)
{
	sc_topo_free((sc_topo_t *)t);
}

static int sc_view_publish(sc_topo_t *old_topo)
{
	sc_topo_t *t = sc_shared->topo;
	sc_view_t *v, *old = sc_shared->view;
	int cap = SC_SCHED_MAX + t->npairs + 1;
	sc_proxy_t *self = &t->proxies[sc_shared->self];

	/* a topology replaced before any reader saw it (an earlier publish
	 * failed): only writers, under the lock, ever read it */
	if(old_topo != NULL && old_topo != t
			&& (old == NULL || old->topo != old_topo))
		sc_topo_free(old_topo);
	v = shm_malloc(sizeof(sc_view_t) + 2 * cap * sizeof(int));
	if(v == NULL) {
		SHM_MEM_ERROR;
		/* readers keep the old view (and its topology); the pinger
		 * retries */
		sc_shared->view_dirty = 1;
		return -1;
	}
	memset(v, 0, sizeof(*v));
	v->topo = t;
	v->self = sc_shared->self;
	v->topo_gen = sc_shared->topo_gen;
	v->local.seq = (int *)(v + 1);
	v->remote.seq = v->local.seq + cap;
	/* the cursors go on where they were */
	if(old != NULL) {
		v->local.pos = SC_RD(old->local.pos);
		v->remote.pos = SC_RD(old->remote.pos);
	}
	sc_sched_build(&v->local, t, &self->geo, 1);
	sc_sched_build(&v->remote, t, &self->geo, 0);
	SC_PUBLISH(sc_shared->view, v);
	sc_shared->view_dirty = 0;
	if(old != NULL) {
		if(old->topo != t)
			sc_rcu_retire(&sc_shared->rcu, &old->topo->rcu, old->topo,
					sc_topo_free_v);
		sc_rcu_retire(&sc_shared->rcu, &old->rcu, old, sc_view_free);
	}
	sc_rcu_reclaim(&sc_shared->rcu);
	return 0;
}

static void sc_view_update(void)
{
	if(sc_shared->view_dirty)
		sc_view_publish(NULL);
	else
		sc_rcu_reclaim(&sc_shared->rcu);
}

/* ---- the write side ---- */

sc_topo_t *sc_state_lock(void)
{
	lock_get(&sc_shared->lock);
	return sc_shared->topo;
}

void sc_state_unlock(void)
{
	sc_view_update();
	lock_release(&sc_shared->lock);
}

int sc_state_self(void)
{
	return sc_shared->self;
}

unsigned int sc_state_gen(void)
{
	return SC_RD(sc_shared->topo_gen);
}

int sc_state_ready(void)
{
	return sc_shared != NULL;
}

void sc_state_info(sc_state_info_t *i)
{
	lock_get(&sc_shared->lock);
	i->reloads = sc_shared->reloads;
	i->reload_failures = sc_shared->reload_failures;
	i->loaded_at = sc_shared->loaded_at;
	lock_release(&sc_shared->lock);
	i->retired_pending = SC_RD(sc_shared->rcu.npending);
	i->retired_freed = (unsigned int)SC_RD(sc_shared->rcu.nfreed);
}

void sc_state_self_name(char *buf, int len)
{
	sc_view_t *v = sc_view_get();
	sc_proxy_t *p = &v->topo->proxies[v->self];

	snprintf(buf, len, "%.*s", p->name.len, p->name.s);
	sc_view_put();
}

const sc_transition_t *sc_transition_current(void)
{
	return sc_cur_tr;
}

int sc_check_file(const char *file, char *msg, int msglen)
{
	sc_topo_t *nt;
	sc_error_t err;
	int self;

	nt = sc_topo_load(file, sc_schema_file, &err);
	if(nt == NULL) {
		sc_error_format(&err, msg, msglen);
		return -1;
	}
	self = sc_check_topo(nt, msg, msglen);
	if(self >= 0)
		snprintf(msg, msglen,
				"%s: ok: cluster '%.*s', %d proxies, %d HA pairs, %d servers, "
				"%d SBCs; this is proxy '%.*s'",
				file, nt->name.len, nt->name.s, nt->nproxies, nt->npairs,
				nt->nservers, nt->nsbcs, nt->proxies[self].name.len,
				nt->proxies[self].name.s);
	sc_topo_free(nt);
	return self >= 0 ? 0 : -1;
}

int sc_reload(char *msg, int msglen)
{
	sc_topo_t *nt, *old;
	sc_error_t err;
	int self, i;
	long long now = sc_now_ms();

	nt = sc_topo_load(sc_cluster_file, sc_schema_file, &err);
	if(nt == NULL) {
		sc_error_format(&err, msg, msglen);
		goto failed;
	}
	self = sc_check_topo(nt, msg, msglen);
	if(self < 0) {
		sc_topo_free(nt);
		goto failed;
	}
	lock_get(&sc_shared->lock);
	old = sc_shared->topo;
	sc_topo_carry_state(nt, old, &sc_shared->next_uid);
	for(i = 0; i < nt->npairs; i++) {
		/* a new or changed pair starts probing at once */
		if(nt->pairs[i].h.ping_srv == -1 && nt->pairs[i].h.next_ping == 0
				&& nt->pairs[i].h.ping_seq == 0)
			sc_health_reset(&nt->pairs[i], now);
	}
	sc_shared->topo = nt;
	sc_shared->self = self;
	sc_shared->topo_gen++;
	sc_shared->reloads++;
	sc_shared->loaded_at = sc_wall_ms();
	/* readers move to the new topology; the old one is freed once the last
	 * request that read it is done */
	sc_view_publish(old);
	lock_release(&sc_shared->lock);
	update_stat(sc_st_reloads, 1);
	LM_NOTICE("cluster '%.*s' reloaded from %s: %d proxies, %d HA pairs, %d "
			  "servers\n",
			nt->name.len, nt->name.s, sc_cluster_file, nt->nproxies, nt->npairs,
			nt->nservers);
	return 0;

failed:
	lock_get(&sc_shared->lock);
	sc_shared->reload_failures++;
	lock_release(&sc_shared->lock);
	update_stat(sc_st_reload_failures, 1);
	LM_ERR("reload of the cluster document failed, running topology kept: "
		   "%s\n",
			msg);
	return -1;
}

/* modparam cluster_file: the document is loaded at mod_init; under
 * kamailio -c (which runs no mod_init) it is checked here, in the process
 * heap, so a broken document fails the config check with file:line */
int sc_param_cluster_file(modparam_t type, void *val)
{
	sc_error_t err;
	char buf[1024];

	sc_cluster_file = (char *)val;
	if(!config_check || sc_cluster_file == NULL || sc_cluster_file[0] == '\0')
		return 0;
	if(sc_topo_check_file(sc_cluster_file, sc_schema_file, &err) < 0) {
		sc_error_format(&err, buf, sizeof(buf));
		LM_ERR("cluster document: %s\n", buf);
		return -1;
	}
	return 0;
}

/* statistic pairs_out_of_service */
counter_val_t sc_stat_pairs_oos(void)
{
	sc_topo_t *t;
	int i, n = 0;

	if(sc_shared == NULL)
		return 0;
	t = sc_view_get()->topo;
	for(i = 0; i < t->npairs; i++)
		if(!sc_pair_usable(&t->pairs[i]))
			n++;
	sc_view_put();
	return n;
}

/* ---- transitions: log, statistics, event_route ---- */

void sc_transition_fill(sc_transition_t *tr, sc_pair_t *p, int events,
		int previous, const char *reason)
{
	int a = sc_pair_active_index(p);
	int quiet = p->h.alarm_quiet;

	memset(tr, 0, sizeof(*tr));
	/* the set of pairs that can take traffic changed: new schedules,
	 * published once by the writer before it unlocks (sc_view_update) */
	if(events & (SC_EV_DOWN | SC_EV_UP))
		sc_shared->view_dirty = 1;
	tr->events = events;
	tr->usable = sc_pair_usable(p);
	snprintf(tr->pair, sizeof(tr->pair), "%.*s", p->name.len, p->name.s);
	snprintf(tr->primary, sizeof(tr->primary), "%.*s:%d",
			p->srv[0]->address.len, p->srv[0]->address.s, p->srv[0]->port);
	if(a >= 0) {
		snprintf(tr->active, sizeof(tr->active), "%.*s", p->srv[a]->name.len,
				p->srv[a]->name.s);
		snprintf(tr->active_addr, sizeof(tr->active_addr), "%.*s:%d",
				p->srv[a]->address.len, p->srv[a]->address.s, p->srv[a]->port);
	}
	if((events & SC_EV_ACTIVE) && previous >= 0 && previous < p->nservers)
		snprintf(tr->previous, sizeof(tr->previous), "%.*s",
				p->srv[previous]->name.len, p->srv[previous]->name.s);
	snprintf(tr->reason, sizeof(tr->reason), "%s", reason ? reason : "");
	/* a flapping pair: one alarm per log_interval */
	if(events & SC_EV_DOWN)
		tr->alarm = sc_health_alarm(
				p, sc_wall_ms(), 1000LL * sc_log_interval, &tr->held);
	if(events & SC_EV_UP)
		tr->quiet = quiet;
}

void sc_transition_realarm(sc_transition_t *tr, sc_pair_t *p)
{
	unsigned int held = p->h.alarm_held;

	sc_transition_fill(tr, p, 0, -1, "flapping, out of service now");
	sc_health_alarm(p, sc_wall_ms(), 0, &tr->held);
	tr->held = held;
	tr->alarm = 1;
}

static void sc_run_event_route(sc_transition_t *tr)
{
	int backup_rt;
	sip_msg_t *fmsg;
	sc_transition_t *prev;
	sr_kemi_eng_t *keng = NULL;
	str evname;

	if(sc_event_callback.len > 0) {
		keng = sr_kemi_eng_get();
		if(keng == NULL) {
			LM_ERR("event_callback '%.*s' set, but no KEMI engine "
				   "(cfgengine)\n",
					sc_event_callback.len, sc_event_callback.s);
			return;
		}
	} else if(sc_event_rt < 0) {
		return;
	}
	if(faked_msg_init() < 0) {
		LM_ERR("faked_msg_init() failed\n");
		return;
	}
	fmsg = faked_msg_next();
	prev = sc_cur_tr;
	sc_cur_tr = tr;
	backup_rt = get_route_type();
	set_route_type(EVENT_ROUTE);
	if(keng != NULL) {
		evname = sc_event_route_name;
		if(sr_kemi_route(keng, fmsg, EVENT_ROUTE, &sc_event_callback, &evname)
				< 0)
			LM_ERR("error running event_callback '%.*s'\n",
					sc_event_callback.len, sc_event_callback.s);
	} else {
		run_top_route(event_rt.rlist[sc_event_rt], fmsg, 0);
	}
	set_route_type(backup_rt);
	sc_cur_tr = prev;
}

void sc_transition_report(sc_transition_t *tr)
{
	if(tr->events == 0 && tr->alarm) {
		/* held back while flapping, and out of service at the end */
		LM_WARN("[40001] SIP Server HA pair (%s) is unavailable: pair '%s' "
				"is out of service (flapping: %u more outages in the last "
				"%d s)\n",
				tr->primary, tr->pair, tr->held, sc_log_interval);
		return;
	}
	if(tr->events == 0)
		return;
	if(tr->events & SC_EV_ACTIVE) {
		update_stat(sc_st_switchovers, 1);
		LM_NOTICE("HA pair '%s': member '%s' (%s) is now active%s%s%s (%s)\n",
				tr->pair, tr->active, tr->active_addr,
				tr->previous[0] ? ", was '" : "", tr->previous,
				tr->previous[0] ? "'" : "", tr->reason);
	}
	if((tr->events & SC_EV_DOWN) && tr->alarm && tr->held) {
		LM_WARN("[40001] SIP Server HA pair (%s) is unavailable: pair '%s' "
				"is out of service (%s; flapping: %u more outages held "
				"back since the last alarm)\n",
				tr->primary, tr->pair, tr->reason, tr->held);
	} else if((tr->events & SC_EV_DOWN) && tr->alarm) {
		LM_WARN("[40001] SIP Server HA pair (%s) is unavailable: pair '%s' "
				"is out of service (%s)\n",
				tr->primary, tr->pair, tr->reason);
	} else if(tr->events & SC_EV_DOWN) {
		LM_DBG("pair '%s' out of service again within log_interval: alarm "
			   "held back\n",
				tr->pair);
	}
	if((tr->events & SC_EV_UP) && !tr->quiet) {
		LM_NOTICE("HA pair '%s' (%s) is back in service, active member '%s' "
				  "(%s)\n",
				tr->pair, tr->primary, tr->active, tr->active_addr);
	}
	sc_run_event_route(tr);
}

/* ---- life cycle ---- */

int sc_state_init(void)
{
	sc_topo_t *t;
	sc_error_t err;
	char msg[1024];
	int self, i;
	long long now;

	if(sc_cluster_file == NULL || sc_cluster_file[0] == '\0') {
		LM_ERR("modparam cluster_file is not set: sipcluster needs the "
			   "cluster document\n");
		return -1;
	}
	if(sc_oos_check < 0 || sc_oos_check > 300) {
		LM_ERR("oos_check must be 0 (off) to 300 seconds, not %d\n",
				sc_oos_check);
		return -1;
	}
	if(sc_oos_force < 1 || sc_oos_force > 32) {
		LM_ERR("oos_force must be 1 to 32 seconds, not %d\n", sc_oos_force);
		return -1;
	}
	if(sc_log_interval < 0) {
		LM_ERR("log_interval must be 0 (log every refusal) or more seconds\n");
		return -1;
	}

	xmlInitParser();
	t = sc_topo_load(sc_cluster_file, sc_schema_file, &err);
	if(t == NULL) {
		sc_error_format(&err, msg, sizeof(msg));
		LM_CRIT("cluster document rejected, not starting: %s\n", msg);
		return -1;
	}
	self = sc_check_topo(t, msg, sizeof(msg));
	if(self < 0) {
		LM_CRIT("not starting: %s\n", msg);
		sc_topo_free(t);
		return -1;
	}

	sc_shared = shm_mallocxz(sizeof(sc_shared_t));
	if(sc_shared == NULL) {
		SHM_MEM_ERROR;
		sc_topo_free(t);
		return -1;
	}
	if(lock_init(&sc_shared->lock) == NULL) {
		LM_ERR("cannot init lock\n");
		sc_topo_free(t);
		shm_free(sc_shared);
		sc_shared = NULL;
		return -1;
	}
	sc_shared->next_uid = 1;
	sc_topo_carry_state(t, NULL, &sc_shared->next_uid);
	now = sc_now_ms();
	for(i = 0; i < t->npairs; i++)
		sc_health_reset(&t->pairs[i], now);
	sc_shared->topo = t;
	sc_shared->self = self;
	sc_shared->topo_gen = 1;
	sc_shared->loaded_at = sc_wall_ms();
	/* reader slots are added at PROC_INIT, when the process count is known */
	sc_rcu_init(&sc_shared->rcu, NULL, 0);
	if(sc_view_publish(NULL) < 0)
		return -1;
	if(sc_geo_location.len == 0) {
		/* a private copy: the topology block is freed on reload */
		sc_geo_location.s = pkg_malloc(t->proxies[self].geo.len + 1);
		if(sc_geo_location.s == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		memcpy(sc_geo_location.s, t->proxies[self].geo.s,
				t->proxies[self].geo.len);
		sc_geo_location.s[t->proxies[self].geo.len] = '\0';
		sc_geo_location.len = t->proxies[self].geo.len;
	}

	if(!t->has_key)
		LM_WARN("cluster document %s has no secret: the ;scp= pins of calls "
				"carry no MAC, so an endpoint can pin its requests to any "
				"pair of another data center (cross_dc_failover on); add "
				"secret=\"<16+ random characters>\" to <sip-cluster>\n",
				sc_cluster_file);
	sc_event_rt = route_lookup(&event_rt, sc_event_route_name.s);
	if(sc_event_rt >= 0 && event_rt.rlist[sc_event_rt] == NULL)
		sc_event_rt = -1;
	LM_NOTICE("cluster '%.*s' from %s: this is proxy '%.*s' (%.*s) in "
			  "geo-location '%.*s'; %d proxies, %d HA pairs, %d servers\n",
			t->name.len, t->name.s, sc_cluster_file, t->proxies[self].name.len,
			t->proxies[self].name.s, t->proxies[self].uri.len,
			t->proxies[self].uri.s, sc_geo_location.len, sc_geo_location.s,
			t->nproxies, t->npairs, t->nservers);
	return 0;
}

int sc_state_child_init(int rank)
{
	int n;
	unsigned long *slots;

	if(rank != PROC_INIT)
		return 0;
	/* one read slot per process (process_no), before any fork */
	n = get_max_procs();
	slots = shm_mallocxz(n * sizeof(unsigned long));
	if(slots == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	sc_shared->rcu.slots = slots;
	sc_shared->rcu.nslots = n;
	return 0;
}

void sc_state_destroy(void)
{
	if(sc_shared == NULL)
		return;
	sc_rcu_drain(&sc_shared->rcu);
	if(sc_shared->view)
		shm_free(sc_shared->view);
	sc_shared->view = NULL;
	if(sc_shared->topo)
		sc_topo_free(sc_shared->topo);
	sc_shared->topo = NULL;
	if(sc_shared->rcu.slots)
		shm_free(sc_shared->rcu.slots);
	lock_destroy(&sc_shared->lock);
	shm_free(sc_shared);
	sc_shared = NULL;
}
