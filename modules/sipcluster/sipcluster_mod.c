/*
 * sipcluster - Kamailio module: SIP Cluster proxy (Genesys SIP Proxy
 * replacement).
 *
 * This file is the top layer and only that: the exports (cfg functions,
 * modparams, statistics, the $sipcluster() pseudo-variable, KEMI), module
 * init / child init / destroy in the order the layers need, and thin w_
 * wrappers over the ki_ functions of the files below. Nothing below calls
 * into it. The layers, from the top (README.md, "Architecture"):
 *   sc_rpc.c, sc_prom.c      operator interfaces
 *   sc_route.c, sc_reg.c     routing, registrar
 *   sc_syncd.c, sc_ping.c    registration sync, OPTIONS probing
 *   sc_msg.c                 per-message helpers (source, refusals, flows)
 *   sc_state.c               the shared state: views, lock, reload,
 *                            transitions
 *   pure floor               sc_topo, sc_health, sc_select, sc_sync,
 *                            sc_codec, sc_rcu (no Kamailio message path)
 * tests/check-layers.py fails `make test` on any call against that order.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <string.h>

#include "../../core/sr_module.h"
#include "../../core/dprint.h"
#include "../../core/timer_proc.h"
#include "../../core/pvar.h"
#include "../../core/kemi.h"
#include "../../core/mod_fix.h"
#include "../../core/parser/msg_parser.h"

#include "sc_state.h"
#include "sc_msg.h"
#include "sc_ping.h"
#include "sc_syncd.h"
#include "sc_route.h"
#include "sc_reg.h"
#include "sc_rpc.h"
#include "sc_prom.h"

MODULE_VERSION

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);
static int w_sipcluster_seen_request(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_from_server(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_from_proxy(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_from_peer(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_flood_drop(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_check_reply(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_route(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_next(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_record_route(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_dialog(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_x_genesys_route(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_register(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_from_sbc(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_set_socket(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_prom_next(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_from_cluster(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_loose_route(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_check_relay(sip_msg_t *msg, char *p1, char *p2);
static int w_sipcluster_deny(sip_msg_t *msg, char *code, char *reason);
static int pv_parse_sipcluster_name(pv_spec_p sp, str *in);
static int pv_get_sipcluster(
		sip_msg_t *msg, pv_param_t *param, pv_value_t *res);
static int w_sipcluster_synced(sip_msg_t *msg, char *p1, char *p2);

/* clang-format off */
static cmd_export_t cmds[] = {
	{"sipcluster_seen_request", (cmd_function)w_sipcluster_seen_request,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_from_server", (cmd_function)w_sipcluster_from_server,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_from_proxy", (cmd_function)w_sipcluster_from_proxy,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_from_peer", (cmd_function)w_sipcluster_from_peer,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_flood_drop", (cmd_function)w_sipcluster_flood_drop,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_check_reply", (cmd_function)w_sipcluster_check_reply,
		0, 0, 0, ONREPLY_ROUTE},
	{"sipcluster_from_sbc", (cmd_function)w_sipcluster_from_sbc,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_from_cluster", (cmd_function)w_sipcluster_from_cluster,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_prom_next", (cmd_function)w_sipcluster_prom_next,
		0, 0, 0, ANY_ROUTE},
	{"sipcluster_set_socket", (cmd_function)w_sipcluster_set_socket,
		0, 0, 0, REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE},
	{"sipcluster_loose_route", (cmd_function)w_sipcluster_loose_route,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_check_relay", (cmd_function)w_sipcluster_check_relay,
		0, 0, 0, ONSEND_ROUTE},
	{"sipcluster_deny", (cmd_function)w_sipcluster_deny,
		2, fixup_igp_spve, fixup_free_igp_spve, REQUEST_ROUTE},
	{"sipcluster_route", (cmd_function)w_sipcluster_route,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_next", (cmd_function)w_sipcluster_next,
		0, 0, 0, FAILURE_ROUTE},
	{"sipcluster_record_route", (cmd_function)w_sipcluster_record_route,
		0, 0, 0, REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE},
	{"sipcluster_dialog", (cmd_function)w_sipcluster_dialog,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_x_genesys_route", (cmd_function)w_sipcluster_x_genesys_route,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_register", (cmd_function)w_sipcluster_register,
		0, 0, 0, REQUEST_ROUTE},
	{"sipcluster_synced", (cmd_function)w_sipcluster_synced,
		0, 0, 0, ANY_ROUTE},
	{0, 0, 0, 0, 0, 0}
};

static param_export_t params[] = {
	{"cluster_file", PARAM_STRING | PARAM_USE_FUNC,
			(void *)sc_param_cluster_file},
	{"schema_file", PARAM_STRING, &sc_schema_file},
	{"proxy_name", PARAM_STR, &sc_proxy_name},
	{"geo_location", PARAM_STR, &sc_geo_location},
	{"oos_check", PARAM_INT, &sc_oos_check},
	{"oos_force", PARAM_INT, &sc_oos_force},
	{"alive_codes", PARAM_STRING, &sc_alive_codes_str},
	{"ping_from", PARAM_STR, &sc_ping_from},
	{"ping_tick", PARAM_INT, &sc_ping_tick},
	{"event_route", PARAM_STR, &sc_event_route_name},
	{"event_callback", PARAM_STR, &sc_event_callback},
	{"cross_dc_failover", PARAM_INT, &sc_cross_dc_failover},
	{"rr_handover", PARAM_INT, &sc_rr_handover},
	{"max_contacts", PARAM_INT, &sc_max_contacts},
	{"usrloc_domain", PARAM_STR, &sc_usrloc_domain},
	{"max_expires", PARAM_INT, &sc_max_expires},
	{"min_expires", PARAM_INT, &sc_min_expires},
	{"default_expires", PARAM_INT, &sc_default_expires},
	{"case_sensitive", PARAM_INT, &sc_case_sensitive},
	{"log_interval", PARAM_INT, &sc_log_interval},
	{"sync_interval", PARAM_INT, &sc_sync_interval},
	{"sync_wait", PARAM_INT, &sc_sync_wait},
	{"sync_settle", PARAM_INT, &sc_sync_settle},
	{"sync_batch", PARAM_INT, &sc_sync_batch},
	{"max_tombstones", PARAM_INT, &sc_max_tombstones},
	{"tomb_file", PARAM_STRING, &sc_tomb_file},
	{"sync_max_skew", PARAM_INT, &sc_sync_max_skew},
	{0, 0, 0}
};

static pv_export_t mod_pvs[] = {
	{{"sipcluster", sizeof("sipcluster") - 1}, PVT_OTHER, pv_get_sipcluster,
		0, pv_parse_sipcluster_name, 0, 0, 0},
	{{0, 0}, 0, 0, 0, 0, 0, 0, 0}
};

static stat_export_t mod_stats[] = {
	{"pings_sent", 0, &sc_st_pings},
	{"ping_failures", 0, &sc_st_ping_failures},
	{"switchovers", 0, &sc_st_switchovers},
	{"reloads", 0, &sc_st_reloads},
	{"routed", 0, &sc_st_routed},
	{"failovers", 0, &sc_st_failovers},
	{"cross_dc_routed", 0, &sc_st_cross_dc},
	{"unavailable", 0, &sc_st_unavailable},
	{"dialog_retargeted", 0, &sc_st_retargeted},
	{"handed_over", 0, &sc_st_handed_over},
	{"xgr_used", 0, &sc_st_xgr_used},
	{"xgr_dropped", 0, &sc_st_xgr_dropped},
	{"refused", 0, &sc_st_refused},
	{"replies_dropped", 0, &sc_st_replies_dropped},
	{"flood_dropped", 0, &sc_st_flood_dropped},
	{"reload_failures", 0, &sc_st_reload_failures},
	{"registers_relayed", 0, &sc_st_reg_relayed},
	{"bindings_stored", 0, &sc_st_reg_stored},
	{"bindings_removed", 0, &sc_st_reg_removed},
	{"registers_refused", 0, &sc_st_reg_refused},
	{"pairs_out_of_service", STAT_IS_FUNC, (stat_var **)sc_stat_pairs_oos},
	{"sync_rounds", 0, &sc_st_sync_rounds},
	{"sync_repairs", 0, &sc_st_sync_repairs},
	{"sync_records_sent", 0, &sc_st_sync_sent},
	{"sync_records_applied", 0, &sc_st_sync_applied},
	{"sync_rejected", 0, &sc_st_sync_rejected},
	{"sync_tombstones", STAT_IS_FUNC, (stat_var **)sc_sync_stat_tombstones},
	{0, 0, 0}
};

struct module_exports exports = {
	"sipcluster",    /* module name */
	DEFAULT_DLFLAGS, /* dlopen flags */
	cmds,            /* cfg functions */
	params,          /* modparams */
	0,               /* RPC (registered in mod_init) */
	mod_pvs,         /* pseudo-variables */
	0,               /* response function */
	mod_init,        /* module init */
	child_init,      /* per-child init */
	mod_destroy      /* destroy */
};
/* clang-format on */

/* ---- life cycle: each layer from the bottom up ---- */

static int mod_init(void)
{
	if(sc_state_init() < 0)
		return -1;
	if(register_module_stats("sipcluster", mod_stats) != 0) {
		LM_ERR("cannot register statistics\n");
		return -1;
	}
	if(sc_msg_init() < 0 || sc_ping_init() < 0 || sc_route_init() < 0
			|| sc_reg_init() < 0 || sc_sync_rpc_init() < 0 || sc_rpc_init() < 0)
		return -1;
	/* one process drives OPTIONS probing (and picks up reloads that turn
	 * checking on), so it exists even with oos_check 0 */
	if(register_basic_timers(sc_sync_enabled() ? 2 : 1) < 0) {
		LM_ERR("cannot register the OPTIONS pinger process\n");
		return -1;
	}
	return 0;
}

/* the sync process wakes every 10 ms (a peer's request waits at most that);
 * it was 100 us: 10,000 wake-ups and global-lock acquisitions a second,
 * 12 % of a core on an idle proxy */
#define SC_SYNC_TICK_US 10000

static int child_init(int rank)
{
	if(sc_state_child_init(rank) < 0)
		return -1;
	if(sc_reg_child_init(rank) < 0)
		return -1;
	if(rank == PROC_SIPINIT && sc_sync_enabled())
		return sc_sync_journal_apply();
	if(rank != PROC_MAIN)
		return 0;
	if(fork_basic_utimer(PROC_TIMER, "sipcluster OPTIONS pinger", 1,
			   sc_ping_utimer, NULL, sc_ping_tick * 1000)
			< 0) {
		LM_ERR("cannot start the OPTIONS pinger process\n");
		return -1;
	}
	if(sc_sync_enabled()
			&& fork_basic_utimer(PROC_TIMER, "sipcluster sync", 1,
					   sc_sync_utimer, NULL, SC_SYNC_TICK_US)
					   < 0) {
		LM_ERR("cannot start the registration sync process\n");
		return -1;
	}
	return 0;
}

static void mod_destroy(void)
{
	sc_msg_destroy();
	sc_sync_destroy();
	sc_state_destroy();
}

/* ---- $sipcluster(key) for event_route[sipcluster:pair-state] ---- */

enum
{
	SC_PV_PAIR = 1,
	SC_PV_STATE,
	SC_PV_ACTIVE,
	SC_PV_ACTIVE_ADDR,
	SC_PV_PREVIOUS,
	SC_PV_REASON,
	SC_PV_PRIMARY,
	SC_PV_PROXY,
	SC_PV_GEO,
	SC_PV_WHY,
	/* the current Prometheus series: SC_PV_PROM + SC_PROM_* */
	SC_PV_PROM = 100
};

static int pv_parse_sipcluster_name(pv_spec_p sp, str *in)
{
	static const struct
	{
		const char *n;
		int v;
	} keys[] = {{"pair", SC_PV_PAIR}, {"state", SC_PV_STATE},
			{"active", SC_PV_ACTIVE}, {"active_addr", SC_PV_ACTIVE_ADDR},
			{"previous", SC_PV_PREVIOUS}, {"reason", SC_PV_REASON},
			{"primary", SC_PV_PRIMARY}, {"proxy", SC_PV_PROXY},
			{"geo", SC_PV_GEO}, {"why", SC_PV_WHY},
			{"prom_metric", SC_PV_PROM + SC_PROM_METRIC},
			{"prom_kind", SC_PV_PROM + SC_PROM_KIND},
			{"prom_value", SC_PV_PROM + SC_PROM_VALUE},
			{"prom_reset", SC_PV_PROM + SC_PROM_RESET},
			{"prom_labels", SC_PV_PROM + SC_PROM_LABELS},
			{"prom_l1", SC_PV_PROM + SC_PROM_L1},
			{"prom_l2", SC_PV_PROM + SC_PROM_L2},
			{"prom_l3", SC_PV_PROM + SC_PROM_L3}, {NULL, 0}};
	int i;

	if(sp == NULL || in == NULL || in->len <= 0)
		return -1;
	for(i = 0; keys[i].n; i++) {
		if(in->len == (int)strlen(keys[i].n)
				&& strncmp(in->s, keys[i].n, in->len) == 0) {
			sp->pvp.pvn.type = PV_NAME_INTSTR;
			sp->pvp.pvn.u.isname.type = 0;
			sp->pvp.pvn.u.isname.name.n = keys[i].v;
			return 0;
		}
	}
	LM_ERR("unknown key in $sipcluster(%.*s): use pair, state, active, "
		   "active_addr, previous, reason, primary, proxy, geo, why or "
		   "prom_metric, prom_kind, prom_value, prom_reset, prom_labels, "
		   "prom_l1, prom_l2, prom_l3\n",
			in->len, in->s);
	return -1;
}

static int pv_get_sipcluster(sip_msg_t *msg, pv_param_t *param, pv_value_t *res)
{
	static char buf[64];
	int key = param->pvn.u.isname.name.n;
	const sc_transition_t *tr = sc_transition_current();
	const char *ps;
	long pn;

	if(key >= SC_PV_PROM) {
		if(sc_prom_field(key - SC_PV_PROM, &ps, &pn) < 0)
			return pv_get_null(msg, param, res);
		if(ps != NULL)
			return pv_get_strzval(msg, param, res, (char *)ps);
		return pv_get_sintval(msg, param, res, pn);
	}
	switch(key) {
		case SC_PV_PROXY:
			if(sc_proxy_name.len > 0)
				return pv_get_strval(msg, param, res, &sc_proxy_name);
			sc_state_self_name(buf, sizeof(buf));
			return pv_get_strzval(msg, param, res, buf);
		case SC_PV_GEO:
			return pv_get_strval(msg, param, res, &sc_geo_location);
		case SC_PV_WHY:
			return pv_get_strzval(msg, param, res, (char *)sc_why());
	}
	if(tr == NULL)
		return pv_get_null(msg, param, res);
	switch(key) {
		case SC_PV_PAIR:
			return pv_get_strzval(msg, param, res, (char *)tr->pair);
		case SC_PV_STATE:
			return pv_get_strzval(msg, param, res,
					tr->usable ? "in-service" : "out-of-service");
		case SC_PV_ACTIVE:
			return pv_get_strzval(msg, param, res, (char *)tr->active);
		case SC_PV_ACTIVE_ADDR:
			return pv_get_strzval(msg, param, res, (char *)tr->active_addr);
		case SC_PV_PREVIOUS:
			return pv_get_strzval(msg, param, res, (char *)tr->previous);
		case SC_PV_REASON:
			return pv_get_strzval(msg, param, res, (char *)tr->reason);
		case SC_PV_PRIMARY:
			return pv_get_strzval(msg, param, res, (char *)tr->primary);
	}
	return pv_get_null(msg, param, res);
}

/* ---- cfg functions and KEMI ---- */


static int w_sipcluster_seen_request(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_seen_request(msg);
}

static int w_sipcluster_from_server(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_from_server(msg);
}

static int w_sipcluster_from_proxy(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_from_proxy(msg);
}

static int w_sipcluster_from_peer(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_from_peer(msg);
}

static int w_sipcluster_flood_drop(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_flood_drop(msg);
}

static int w_sipcluster_check_reply(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_check_reply(msg);
}

static int w_sipcluster_from_cluster(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_from_cluster(msg);
}

static int w_sipcluster_prom_next(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_prom_next(msg);
}

static int w_sipcluster_set_socket(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_set_socket(msg);
}

static int w_sipcluster_from_sbc(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_from_sbc(msg);
}

static int w_sipcluster_loose_route(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_loose_route(msg);
}

static int w_sipcluster_check_relay(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_check_relay(msg);
}

static int w_sipcluster_deny(sip_msg_t *msg, char *code, char *reason)
{
	int c = 0;
	str r = STR_NULL;

	if(fixup_get_ivalue(msg, (gparam_t *)code, &c) < 0
			|| fixup_get_svalue(msg, (gparam_t *)reason, &r) < 0) {
		LM_ERR("cannot get the parameters\n");
		return -1;
	}
	return ki_sipcluster_deny(msg, c, &r);
}

static int w_sipcluster_route(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_route(msg);
}

static int w_sipcluster_next(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_next(msg);
}

static int w_sipcluster_record_route(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_record_route(msg);
}

static int w_sipcluster_dialog(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_dialog(msg);
}

static int w_sipcluster_x_genesys_route(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_x_genesys_route(msg);
}

static int w_sipcluster_register(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_register(msg);
}

/* 1 once this proxy merged the other proxies' bindings at start-up */
static int ki_sipcluster_synced(sip_msg_t *msg)
{
	return sc_sync_is_ready() ? 1 : -1;
}

static int w_sipcluster_synced(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_sipcluster_synced(msg);
}

#define SC_KEMI_NOPARAMS                                            \
	{                                                               \
		SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, \
				SR_KEMIP_NONE, SR_KEMIP_NONE                        \
	}

/* clang-format off */
static sr_kemi_t sr_kemi_sipcluster_exports[] = {
	{ str_init("sipcluster"), str_init("route"),
		SR_KEMIP_INT, ki_sipcluster_route, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("next"),
		SR_KEMIP_INT, ki_sipcluster_next, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("record_route"),
		SR_KEMIP_INT, ki_sipcluster_record_route, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("dialog"),
		SR_KEMIP_INT, ki_sipcluster_dialog, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("loose_route"),
		SR_KEMIP_INT, ki_sipcluster_loose_route, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("check_relay"),
		SR_KEMIP_INT, ki_sipcluster_check_relay, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("from_sbc"),
		SR_KEMIP_INT, ki_sipcluster_from_sbc, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("from_cluster"),
		SR_KEMIP_INT, ki_sipcluster_from_cluster, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("prom_next"),
		SR_KEMIP_INT, ki_sipcluster_prom_next, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("set_socket"),
		SR_KEMIP_INT, ki_sipcluster_set_socket, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("deny"),
		SR_KEMIP_INT, ki_sipcluster_deny,
		{ SR_KEMIP_INT, SR_KEMIP_STR, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("x_genesys_route"),
		SR_KEMIP_INT, ki_sipcluster_x_genesys_route, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("register"),
		SR_KEMIP_INT, ki_sipcluster_register, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("synced"),
		SR_KEMIP_INT, ki_sipcluster_synced, SC_KEMI_NOPARAMS },
	{ str_init("sipcluster"), str_init("seen_request"),
		SR_KEMIP_INT, ki_sipcluster_seen_request,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("from_server"),
		SR_KEMIP_INT, ki_sipcluster_from_server,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("from_proxy"),
		SR_KEMIP_INT, ki_sipcluster_from_proxy,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("from_peer"),
		SR_KEMIP_INT, ki_sipcluster_from_peer,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("flood_drop"),
		SR_KEMIP_INT, ki_sipcluster_flood_drop,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("sipcluster"), str_init("check_reply"),
		SR_KEMIP_INT, ki_sipcluster_check_reply,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ {0, 0}, {0, 0}, 0, NULL, { 0, 0, 0, 0, 0, 0 } }
};
/* clang-format on */

int mod_register(char *path, int *dlflags, void *p1, void *p2)
{
	sr_kemi_modules_add(sr_kemi_sipcluster_exports);
	return 0;
}
