/*
 * sipcluster - the shared state of the glue (sc_state.c): views, writers'
 * lock, reload, transitions. The bottom layer of the glue: it calls only
 * the pure floor and Kamailio's core.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_STATE_H_
#define _SC_STATE_H_

#include "../../core/str.h"
#include "../../core/counters.h"
#include "../../core/sr_module.h"
#include "sc_topo.h"
#include "sc_select.h"
#include "sc_rcu.h"

/* what a request reads: published whole by pointer, never changed in place
 * (the pairs' live health state inside topo excepted: single words, read
 * with SC_RD); a new one on every reload and every change of the set of
 * pairs that can take traffic. Readers hold it between sc_view_get() and
 * sc_view_put() without any lock. */
typedef struct sc_view
{
	sc_topo_t *topo;
	int self;			   /* index of this proxy in topo->proxies */
	unsigned int topo_gen; /* bumped on every (re)load */
	sc_sched_t local;	   /* SWRR cycle over local pairs */
	sc_sched_t remote;	   /* ... over the other data centers' pairs */
	sc_rcu_node_t rcu;
} sc_view_t;

/* modparams of this layer */
extern char *sc_cluster_file;
extern char *sc_schema_file;
extern str sc_proxy_name;
extern str sc_geo_location; /* this proxy's, from the document if unset */
extern int sc_oos_check;
extern int sc_oos_force;
extern str sc_event_route_name;
extern str sc_event_callback;
extern int sc_cross_dc_failover;
extern int sc_log_interval;
/* modparam cluster_file (checks the document under kamailio -c) */
int sc_param_cluster_file(modparam_t type, void *val);

/* statistics of this layer */
extern stat_var *sc_st_switchovers;
extern stat_var *sc_st_reloads;
extern stat_var *sc_st_reload_failures;
counter_val_t sc_stat_pairs_oos(void);

/* life cycle: mod_init (after the modparams), child_init, mod_destroy */
int sc_state_init(void);
int sc_state_child_init(int rank);
void sc_state_destroy(void);
/* 1 once sc_state_init() succeeded */
int sc_state_ready(void);

/* clocks in ms */
long long sc_now_ms(void);	/* monotonic */
long long sc_wall_ms(void); /* wall clock */

/* effective timing of a pair (document attribute or modparam) */
void sc_pair_hcfg(const sc_pair_t *p, sc_hcfg_t *c);

/* The read side: the current view, held without a lock until
 * sc_view_put() (nested calls return the same view). A writer never waits
 * for it; what it retired is freed once no reader holds it. */
sc_view_t *sc_view_get(void);
void sc_view_put(void);
/* the topology generation (bumped on every reload), without the lock */
unsigned int sc_state_gen(void);

/* The write side: the lock taken, the live topology returned (its pairs'
 * health state may be changed); sc_state_unlock() publishes a new view
 * when a pair's usability changed (sc_transition_fill marks it), frees
 * what no reader holds any more, and releases the lock. Never call tm,
 * usrloc, dmq or the script in between. */
sc_topo_t *sc_state_lock(void);
void sc_state_unlock(void);
/* index of this proxy in the locked topology */
int sc_state_self(void);

/* figures for sipcluster.status */
typedef struct sc_state_info
{
	unsigned int reloads;
	unsigned int reload_failures;
	long long loaded_at; /* wall-clock ms */
	unsigned int retired_pending;
	unsigned int retired_freed;
} sc_state_info_t;
void sc_state_info(sc_state_info_t *i);
/* this proxy's name in the document */
void sc_state_self_name(char *buf, int len);

/* validate a cluster document as a reload would, without loading it */
int sc_check_file(const char *file, char *msg, int msglen);
/* reload the cluster document; on error fills msg, keeps the running
 * topology and returns -1 */
int sc_reload(char *msg, int msglen);

/* log lines, statistics and event_route for transitions; filled under the
 * lock, reported WITHOUT it: the snapshot says what changed */
typedef struct sc_transition
{
	char pair[64];
	char primary[80];
	char active[64];
	char active_addr[80];
	char previous[64];
	char reason[64];
	int events;
	int usable;
	int alarm;		   /* log the [40001] alarm (SC_EV_DOWN not held back) */
	unsigned int held; /* alarms held back before this one (flapping) */
	int quiet;		   /* SC_EV_UP of a held-back outage: no line */
} sc_transition_t;

void sc_transition_fill(sc_transition_t *tr, sc_pair_t *p, int events,
		int previous, const char *reason);
void sc_transition_report(sc_transition_t *tr);
/* the alarm of a flapping pair held back, due now */
void sc_transition_realarm(sc_transition_t *tr, sc_pair_t *p);
/* the transition event_route / event_callback runs for, NULL outside */
const sc_transition_t *sc_transition_current(void);

#endif
