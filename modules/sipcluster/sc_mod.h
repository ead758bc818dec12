/*
 * sipcluster - shared state and globals of the Kamailio glue
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_MOD_H_
#define _SC_MOD_H_

#include "../../core/str.h"
#include "../../core/locking.h"
#include "../../core/counters.h"
#include "../../core/parser/msg_parser.h"
#include "sc_topo.h"
#include "sc_select.h"
#include "sc_rcu.h"

#define SC_MAX_ALIVE_CODES 16

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

/* everything every process sees; lives in shm. The writers (reload, health
 * transitions, operator RPCs, the sync process) serialise on lock; request
 * processing reads view without it. */
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

extern sc_shared_t *sc_shared;

/* modparams */
extern char *sc_cluster_file;
extern char *sc_schema_file;
extern str sc_proxy_name;
extern str sc_geo_location;
extern int sc_oos_check;
extern int sc_oos_force;
extern int sc_alive_codes[SC_MAX_ALIVE_CODES + 1];
extern str sc_ping_from;
extern int sc_ping_tick;
extern str sc_event_route_name;
extern int sc_cross_dc_failover;
extern int sc_rr_handover;
extern int sc_log_interval;

/* statistics */
extern stat_var *sc_st_pings;
extern stat_var *sc_st_ping_failures;
extern stat_var *sc_st_switchovers;
extern stat_var *sc_st_reloads;
extern stat_var *sc_st_routed;
extern stat_var *sc_st_failovers;
extern stat_var *sc_st_cross_dc;
extern stat_var *sc_st_unavailable;
extern stat_var *sc_st_retargeted;
extern stat_var *sc_st_handed_over;
extern stat_var *sc_st_xgr_used;
extern stat_var *sc_st_xgr_dropped;
extern stat_var *sc_st_refused;
extern stat_var *sc_st_reload_failures;
extern stat_var *sc_st_replies_dropped;
extern stat_var *sc_st_flood_dropped;

/* clocks in ms */
long long sc_now_ms(void);	/* monotonic */
long long sc_wall_ms(void); /* wall clock */

/* effective timing of a pair (document attribute or modparam) */
void sc_pair_hcfg(const sc_pair_t *p, sc_hcfg_t *c);

/* log lines, statistics and event_route for transitions; call WITHOUT the
 * lock held: the snapshot says what changed */
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

/* routing (sc_route.c) */
int sc_route_init(void);
int ki_sipcluster_route(sip_msg_t *msg);
int ki_sipcluster_next(sip_msg_t *msg);
int ki_sipcluster_record_route(sip_msg_t *msg);
int ki_sipcluster_dialog(sip_msg_t *msg);
int ki_sipcluster_loose_route(sip_msg_t *msg);
int ki_sipcluster_x_genesys_route(sip_msg_t *msg);
int ki_sipcluster_check_relay(sip_msg_t *msg);
int ki_sipcluster_deny(sip_msg_t *msg, int code, str *reason);
int ki_sipcluster_from_server(sip_msg_t *msg);
int ki_sipcluster_from_proxy(sip_msg_t *msg);
int ki_sipcluster_from_sbc(sip_msg_t *msg);
int ki_sipcluster_from_cluster(sip_msg_t *msg);
int ki_sipcluster_from_peer(sip_msg_t *msg);
int ki_sipcluster_flood_drop(sip_msg_t *msg);
int ki_sipcluster_check_reply(sip_msg_t *msg);
struct cell;
/* 1 when rpl comes from where branch of t went (sc_reply_src_ok) */
int sc_reply_from_branch(struct cell *t, int branch, sip_msg_t *rpl);
/* the proxy a cluster-channel message comes from (TCP/TLS only), NULL */
sc_proxy_t *sc_src_peer(sc_view_t *v, sip_msg_t *msg);
int ki_sipcluster_set_socket(sip_msg_t *msg);
/* this proxy's listen socket for a transport (NULL when none), on its
 * document address, or for another address family (dual stack) */
struct socket_info *sc_own_socket(int proto);
struct socket_info *sc_own_socket_af(int proto, int af);
int ki_sipcluster_seen_request(sip_msg_t *msg);
sc_server_t *sc_src_server(sc_topo_t *t, sip_msg_t *msg);
void sc_msg_ip(sip_msg_t *msg, sc_ip_t *ip);
/* who sent msg (sc_src_t), computed once per message */
int sc_msg_src(sip_msg_t *msg);
/* log why msg is dropped or refused (code 0: dropped), at most once per
 * source and log_interval */
void sc_refuse_log(sip_msg_t *msg, int code, const char *why);
/* refuse msg: reply code/reason (stateless) and log it, at most once per
 * source and log_interval; returns 0 (the script stops) */
int sc_refuse(sip_msg_t *msg, int code, const char *reason, const char *why);
int sc_refuse_init(void);
void sc_refuse_destroy(void);
/* "sip:ip:port[;transport=x]" of the message's source into buf */
int sc_src_flow(sip_msg_t *msg, char *buf, int len);
void sc_route_remember(const char *pair, const char *server);
extern char sc_route_reason[128];

/* registrar (sc_reg.c) */
int sc_reg_init(void);
int sc_reg_child_init(int rank);
int ki_sipcluster_register(sip_msg_t *msg);
extern int sc_max_contacts;
extern int sc_max_expires;
extern int sc_min_expires;
extern int sc_default_expires;
extern int sc_case_sensitive;
extern str sc_usrloc_domain;
extern stat_var *sc_st_reg_relayed;
extern stat_var *sc_st_reg_stored;
extern stat_var *sc_st_reg_removed;
extern stat_var *sc_st_reg_refused;

/* sipcluster.which: what a new call / a REGISTER of aor would get now
 * (pair and server names up to SC_NAME_MAX); lock held */
int sc_which_new(char *pair, int plen, char *server, int slen, char *uri,
		int ulen, int *remote);
int sc_which_aor(const str *aor, char *pair, char *server, char *uri, int ulen,
		int *remote);

/* validate a cluster document as a reload would, without loading it */
int sc_check_file(const char *file, char *msg, int msglen);

/* Prometheus series through xhttp_prom (sc_prom.c) */
int ki_sipcluster_prom_update(sip_msg_t *msg);

/* RPC (sc_rpc.c) */
int sc_rpc_init(void);

/* The read side: the current view, held without a lock until
 * sc_view_put() (nested calls return the same view). A writer never waits
 * for it; what it retired is freed once no reader holds it. */
sc_view_t *sc_view_get(void);
void sc_view_put(void);
/* Writers, lock held: publish a view of sc_shared->topo (after a reload or
 * a change of which pairs can take traffic) and retire the old one (with
 * its topology when that was replaced: old_topo non-NULL). */
int sc_view_publish(sc_topo_t *old_topo);
/* Writers, lock held, before they unlock: publish a new view when a pair's
 * usability changed (sc_transition_fill marks it) and free the retired
 * views and topologies no reader holds any more */
void sc_view_update(void);
/* reload the cluster document; on error fills msg and returns -1 */
int sc_reload(char *msg, int msglen);

/* OPTIONS pinging (sc_ping.c) */
int sc_ping_init(void);
void sc_ping_utimer(unsigned int ticks, void *param);

#endif
