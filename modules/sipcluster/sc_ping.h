/*
 * sipcluster - OPTIONS probing of the SIP Server HA pairs (sc_ping.c)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_PING_H_
#define _SC_PING_H_

#include "../../core/str.h"
#include "../../core/counters.h"

#define SC_MAX_ALIVE_CODES 16

extern char *sc_alive_codes_str;
extern int sc_alive_codes[SC_MAX_ALIVE_CODES + 1];
extern str sc_ping_from;
extern int sc_ping_tick;

extern stat_var *sc_st_pings;
extern stat_var *sc_st_ping_failures;

/* mod_init: checks the modparams, binds tm */
int sc_ping_init(void);
/* the "sipcluster OPTIONS pinger" process, every ping_tick ms */
void sc_ping_utimer(unsigned int ticks, void *param);

#endif
