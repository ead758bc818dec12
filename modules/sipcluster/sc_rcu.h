/*
 * sipcluster - readers that never wait on a writer (read-copy-update)
 *
 * The routing state every request reads (topology, schedules) is published
 * by pointer and never changed in place. A writer (reload, a pair leaving or
 * rejoining service) builds the new version, publishes it, and retires the
 * old one; the old one is freed once no process can still be reading it.
 *
 * Each process owns one slot: the epoch it entered its read section at, 0
 * when outside. A reader stores its slot, fences, then loads the pointer; a
 * writer stores the pointer, fences, bumps the epoch and tags what it
 * retires with the new epoch. An object tagged E is freed when every slot
 * is 0 or >= E: a reader that entered earlier may hold it, one that entered
 * later loaded the new pointer. Readers do a store, a fence and a load; they
 * never take a lock, so a writer holding the global lock for O(pairs) work
 * stalls no request.
 *
 * Processes without a slot (more than were counted at start-up) share a
 * counter instead: nothing retired is freed while it is non-zero.
 *
 * Pure C and GCC atomics: no tm, usrloc or Kamailio memory; the Check unit
 * tests run it with threads.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_RCU_H_
#define _SC_RCU_H_

/* a retired object, embedded in it */
typedef struct sc_rcu_node
{
	struct sc_rcu_node *next;
	unsigned long tag; /* epoch it was retired at */
	void (*free)(void *obj);
	void *obj;
} sc_rcu_node_t;

typedef struct sc_rcu
{
	unsigned long epoch; /* starts at 1 */
	int nslots;
	unsigned long *slots;	/* per process: entry epoch, 0 = not reading */
	int overflow;			/* readers without a slot */
	sc_rcu_node_t *retired; /* oldest last; the writer's lock guards it */
	unsigned int npending;	/* retired, not freed yet */
	unsigned long nfreed;	/* freed since start */
} sc_rcu_t;

/* slots: room for nslots (zeroed by the caller) */
void sc_rcu_init(sc_rcu_t *r, unsigned long *slots, int nslots);

/* read side; slot is the process's own (<0 or >= nslots: the shared
 * counter). Not nested: the caller counts depth. */
void sc_rcu_enter(sc_rcu_t *r, int slot);
void sc_rcu_exit(sc_rcu_t *r, int slot);

/* write side, under the writer's lock, after the new version is published:
 * obj is freed by free(obj) once no reader can hold it */
void sc_rcu_retire(
		sc_rcu_t *r, sc_rcu_node_t *n, void *obj, void (*free)(void *));

/* free what no reader can hold any more (writer's lock held); returns how
 * many are still pending */
unsigned int sc_rcu_reclaim(sc_rcu_t *r);

/* free everything pending (shutdown: no reader left) */
void sc_rcu_drain(sc_rcu_t *r);

/* The module's one atomic idiom, in the floor and the glue alike: these
 * macros over the GCC/clang __atomic builtins (C11 memory model), not
 * Kamailio's core/atomic_ops.h. Why: the floor is compiled without
 * Kamailio (Check unit tests, libFuzzer targets, ASan/UBSan/TSan builds)
 * and shares these words with the glue, so both sides must use one memory
 * model; atomic_ops.h pairs plain operations with separate membar_*()
 * calls and has no acquire/release loads and stores, which sc_rcu's
 * publish/dereference relies on. No shared word is touched without the
 * lock except through these macros (no volatile casts). */

/* a word read without the lock that a writer may change under it */
#define SC_RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
/* compare-and-swap of a word without the lock: 1 when x was old and is
 * now nv; otherwise old is updated to what x holds */
#define SC_CAS(x, old, nv)       \
	__atomic_compare_exchange_n( \
			&(x), &(old), (nv), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
/* a statistic bumped without the lock */
#define SC_INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
/* a pointer published to readers */
#define SC_PUBLISH(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define SC_DEREF(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)

#endif
