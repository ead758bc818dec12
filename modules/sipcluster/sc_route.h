/*
 * sipcluster - routing functions for the cfg and KEMI (sc_route.c)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_ROUTE_H_
#define _SC_ROUTE_H_

#include "../../core/counters.h"
#include "../../core/parser/msg_parser.h"

extern int sc_rr_handover;

extern stat_var *sc_st_routed;
extern stat_var *sc_st_failovers;
extern stat_var *sc_st_cross_dc;
extern stat_var *sc_st_retargeted;
extern stat_var *sc_st_handed_over;
extern stat_var *sc_st_xgr_used;
extern stat_var *sc_st_xgr_dropped;

/* mod_init: binds rr, checks the modparams */
int sc_route_init(void);

int ki_sipcluster_route(sip_msg_t *msg);
int ki_sipcluster_next(sip_msg_t *msg);
int ki_sipcluster_record_route(sip_msg_t *msg);
int ki_sipcluster_dialog(sip_msg_t *msg);
int ki_sipcluster_loose_route(sip_msg_t *msg);
int ki_sipcluster_x_genesys_route(sip_msg_t *msg);
int ki_sipcluster_check_relay(sip_msg_t *msg);
int ki_sipcluster_seen_request(sip_msg_t *msg);

/* sipcluster.which: what a new call would get now (pair and server names
 * up to SC_NAME_MAX) */
int sc_which_new(char *pair, int plen, char *server, int slen, char *uri,
		int ulen, int *remote);

#endif
