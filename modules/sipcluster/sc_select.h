/*
 * sipcluster - choosing a SIP Server node (HA pair) for a new request
 *
 * Smooth weighted round-robin (SWRR, the algorithm nginx uses for upstreams):
 * every candidate i has a current value c_i (start 0). For each pick:
 *   c_i += w_i for every candidate; pick the candidate with the largest c_i
 *   (first in document order on ties); c_pick -= sum(w).
 * Over any window of sum(w) picks candidate i is chosen exactly w_i times and
 * the picks are interleaved (3:1 gives a a b a, not a a a b).
 *
 * To make a pick O(1) in the number of pairs, the SWRR sequence of one full
 * cycle is computed once per candidate set (when a pair leaves or rejoins
 * service, or on reload) and picks walk it with a shared cursor.
 *
 * Pure logic, no tm/usrloc: unit-tested with Check and benchmarked.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_SELECT_H_
#define _SC_SELECT_H_

#include "../../core/str.h"
#include "sc_topo.h"
#include "sc_codec.h"

/* longest SWRR cycle kept; larger weight sums are scaled down to it */
#define SC_SCHED_MAX 8192

typedef struct sc_sched
{
	unsigned int gen; /* topology/usability generation it was built for */
	int len;		  /* 0: no candidate */
	int *seq;		  /* pair indexes, one SWRR cycle */
	unsigned int pos; /* cursor */
} sc_sched_t;

/* SWRR cycle over weights w[0..n-1] (0 = not a candidate) into seq (room for
 * maxlen); returns the cycle length, 0 when no candidate. */
int sc_swrr_cycle(const int *w, int n, int *seq, int maxlen);

/* Which pairs are candidates: usable, weight > 0, and geo-location equal to
 * geo (local != 0) or different from it (local == 0). Builds the cycle into
 * s->seq (allocated by the caller with room for SC_SCHED_MAX + t->npairs).
 * Returns the cycle length. */
int sc_sched_build(sc_sched_t *s, sc_topo_t *t, const str *geo, int local);

/* next pair of the cycle (-1 when empty); skip returns pairs already tried:
 * tried(pair_index, arg) != 0 means skip. At most one full cycle is walked. */
int sc_sched_pick(sc_sched_t *s, int (*tried)(int, void *), void *arg);

/* the pair the next sc_sched_pick() would return (-1 when empty), without
 * moving the cursor */
int sc_sched_peek(const sc_sched_t *s);

/* classic O(n) SWRR step over live current values (reference, benchmarks) */
int sc_swrr_next(const int *w, long long *cur, int n);

/* Rendezvous (highest random weight) hashing: index of the candidate whose
 * hash(key, name) is highest, skipping ok(i) == 0; -1 when none. A
 * candidate leaving moves only the keys it held. */
int sc_rendezvous(const str *key, const str *names, int n,
		int (*ok)(int, void *), void *arg);

#endif
