/*
 * sipcluster - readers that never wait on a writer (see sc_rcu.h)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stddef.h>
#include "sc_rcu.h"

void sc_rcu_init(sc_rcu_t *r, unsigned long *slots, int nslots)
{
	r->epoch = 1;
	r->slots = slots;
	r->nslots = slots ? nslots : 0;
	r->overflow = 0;
	r->retired = NULL;
	r->npending = 0;
	r->nfreed = 0;
}

void sc_rcu_enter(sc_rcu_t *r, int slot)
{
	if(slot < 0 || slot >= r->nslots) {
		__atomic_fetch_add(&r->overflow, 1, __ATOMIC_SEQ_CST);
		return;
	}
	__atomic_store_n(&r->slots[slot],
			__atomic_load_n(&r->epoch, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	/* the slot is visible before any pointer is loaded */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void sc_rcu_exit(sc_rcu_t *r, int slot)
{
	if(slot < 0 || slot >= r->nslots) {
		__atomic_fetch_sub(&r->overflow, 1, __ATOMIC_RELEASE);
		return;
	}
	/* every load of the section happens before the slot clears */
	__atomic_store_n(&r->slots[slot], 0, __ATOMIC_RELEASE);
}

void sc_rcu_retire(
		sc_rcu_t *r, sc_rcu_node_t *n, void *obj, void (*free)(void *))
{
	/* the new pointer is visible before the epoch moves on */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	n->tag = __atomic_add_fetch(&r->epoch, 1, __ATOMIC_SEQ_CST);
	n->obj = obj;
	n->free = free;
	n->next = r->retired;
	r->retired = n;
	r->npending++;
}

/* the oldest epoch any reader entered at (0: none reading) */
static unsigned long sc_rcu_oldest(sc_rcu_t *r, int *busy)
{
	unsigned long min = 0, s;
	int i;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*busy = __atomic_load_n(&r->overflow, __ATOMIC_ACQUIRE) != 0;
	for(i = 0; i < r->nslots; i++) {
		s = __atomic_load_n(&r->slots[i], __ATOMIC_ACQUIRE);
		if(s != 0 && (min == 0 || s < min))
			min = s;
	}
	return min;
}

unsigned int sc_rcu_reclaim(sc_rcu_t *r)
{
	sc_rcu_node_t **pp, *n;
	unsigned long min;
	int busy;

	if(r->retired == NULL)
		return 0;
	min = sc_rcu_oldest(r, &busy);
	if(busy)
		return r->npending;
	pp = &r->retired;
	while((n = *pp) != NULL) {
		if(min != 0 && min < n->tag) {
			pp = &n->next;
			continue;
		}
		*pp = n->next;
		r->npending--;
		r->nfreed++;
		n->free(n->obj); /* may free n itself: not touched after */
	}
	return r->npending;
}

void sc_rcu_drain(sc_rcu_t *r)
{
	sc_rcu_node_t *n;

	while((n = r->retired) != NULL) {
		r->retired = n->next;
		r->npending--;
		r->nfreed++;
		n->free(n->obj);
	}
}
