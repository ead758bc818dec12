/*
 * sipcluster - RPC commands, kamcmd sipcluster.* (sc_rpc.c)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_RPC_H_
#define _SC_RPC_H_

/* mod_init: registers the sipcluster.* commands */
int sc_rpc_init(void);

#endif
