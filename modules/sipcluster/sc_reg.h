/*
 * sipcluster - the cluster registrar (sc_reg.c): relays REGISTER to a
 * local SIP Server, stores the binding on its 200 (usrloc, bound by API)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_REG_H_
#define _SC_REG_H_

#include "../../core/str.h"
#include "../../core/counters.h"
#include "../../core/parser/msg_parser.h"

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

/* mod_init: checks the modparams, binds tm and usrloc (when loaded) and
 * starts the sync on them; child_init */
int sc_reg_init(void);
int sc_reg_child_init(int rank);

int ki_sipcluster_register(sip_msg_t *msg);

/* sipcluster.which: what a REGISTER of aor would get now (pair and server
 * names up to SC_NAME_MAX) */
int sc_which_aor(const str *aor, char *pair, char *server, char *uri, int ulen,
		int *remote);

#endif
