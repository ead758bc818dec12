/*
 * sipcluster - per-pair and per-server series for Prometheus (sc_prom.c),
 * handed to the script one at a time for xhttp_prom's own functions
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_PROM_H_
#define _SC_PROM_H_

#include "../../core/parser/msg_parser.h"

/* the next series of this request's snapshot: 1, or -1 at the end */
int ki_sipcluster_prom_next(sip_msg_t *msg);

/* the fields of the current series ($sipcluster(prom_*)) */
enum
{
	SC_PROM_METRIC = 0, /* string */
	SC_PROM_KIND,		/* "gauge" or "counter" */
	SC_PROM_VALUE,		/* number: the gauge's value, the counter's growth */
	SC_PROM_RESET,		/* number: 1 when the counter is reset first */
	SC_PROM_LABELS,		/* number: 2 (pair, geo) or 3 (pair, server, address) */
	SC_PROM_L1,			/* strings: the label values */
	SC_PROM_L2,
	SC_PROM_L3
};
/* 0 with *s (string fields) or *n (numbers) set; -1 outside an iteration */
int sc_prom_field(int field, const char **s, long *n);

#endif
