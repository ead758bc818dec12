/*
 * sipcluster - registration repair between proxies (the Kamailio glue)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_SYNCD_H_
#define _SC_SYNCD_H_

#include "../../core/counters.h"
#include "../../core/str.h"

extern int sc_sync_interval;
extern int sc_sync_wait;
extern int sc_sync_settle;
extern int sc_sync_batch;
extern int sc_max_tombstones;
extern int sc_sync_max_skew;
extern char *sc_tomb_file;
extern stat_var *sc_st_sync_rejected;

extern stat_var *sc_st_sync_rounds;
extern stat_var *sc_st_sync_repairs;
extern stat_var *sc_st_sync_sent;
extern stat_var *sc_st_sync_applied;

/* sc_reg_init, after usrloc is bound (ul_api: usrloc_api_t*, dom: udomain_t*;
 * NULL when usrloc is not loaded) */
int sc_sync_init(void *ul_api, void *dom, int max_expires);
/* the tombstone journal applied to what usrloc loaded (PROC_SIPINIT) */
int sc_sync_journal_apply(void);
int sc_sync_rpc_init(void);
void sc_sync_destroy(void);
/* 1 when the sync runs (dmq and usrloc loaded) */
int sc_sync_enabled(void);
/* 1 once the start-up sync is done (always 1 when the sync is off) */
int sc_sync_is_ready(void);
/* the "sipcluster sync" process, every 100 ms */
void sc_sync_utimer(unsigned int ticks, void *param);
counter_val_t sc_sync_stat_tombstones(void);
/* around the deletes of an explicit unregister (sc_reg.c): begin before
 * locking usrloc (the version its tombstones get), end after unlocking
 * (sends them to every peer) */
void sc_sync_unreg_begin(long long at, int cseq, const str *callid);
void sc_sync_unreg_end(void);

#endif
