/*
 * sipcluster unit tests: readers that never wait on a writer (sc_rcu.c)
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include "sc_rcu.h"
#include "sc_select.h"

typedef struct obj
{
	int alive; /* 1 while published or possibly read, 0 once freed */
	int value;
	sc_rcu_node_t rcu;
} obj_t;

static int freed_count;

static void obj_free(void *p)
{
	obj_t *o = (obj_t *)p;
	__atomic_store_n(&o->alive, 0, __ATOMIC_SEQ_CST);
	freed_count++;
}

START_TEST(test_reader_holds_what_it_read)
{
	sc_rcu_t r;
	unsigned long slots[4] = {0};
	obj_t a = {1, 1}, b = {1, 2};

	freed_count = 0;
	sc_rcu_init(&r, slots, 4);
	/* slot 2 reads a, then the writer replaces a with b */
	sc_rcu_enter(&r, 2);
	sc_rcu_retire(&r, &a.rcu, &a, obj_free);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 1);
	ck_assert_int_eq(a.alive, 1);
	/* a reader that entered after the retirement cannot hold a */
	sc_rcu_enter(&r, 3);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 1);
	sc_rcu_exit(&r, 2);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 0);
	ck_assert_int_eq(a.alive, 0);
	ck_assert_int_eq(freed_count, 1);
	/* slot 3 (entered before b's retirement) still holds b */
	sc_rcu_retire(&r, &b.rcu, &b, obj_free);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 1);
	ck_assert_int_eq(b.alive, 1);
	sc_rcu_exit(&r, 3);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 0);
	ck_assert_int_eq(b.alive, 0);
	ck_assert_uint_eq(r.nfreed, 2);
}
END_TEST

START_TEST(test_reader_without_slot_holds_everything)
{
	sc_rcu_t r;
	unsigned long slots[1] = {0};
	obj_t a = {1, 1};

	freed_count = 0;
	sc_rcu_init(&r, slots, 1);
	sc_rcu_enter(&r, 7); /* no such slot: the shared counter */
	sc_rcu_retire(&r, &a.rcu, &a, obj_free);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 1);
	ck_assert_int_eq(a.alive, 1);
	sc_rcu_exit(&r, 7);
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 0);
	ck_assert_int_eq(a.alive, 0);
}
END_TEST

START_TEST(test_drain_frees_all)
{
	sc_rcu_t r;
	unsigned long slots[2] = {0};
	obj_t o[5];
	int i;

	freed_count = 0;
	sc_rcu_init(&r, slots, 2);
	sc_rcu_enter(&r, 0);
	for(i = 0; i < 5; i++) {
		o[i].alive = 1;
		sc_rcu_retire(&r, &o[i].rcu, &o[i], obj_free);
	}
	ck_assert_uint_eq(sc_rcu_reclaim(&r), 5);
	sc_rcu_drain(&r);
	ck_assert_int_eq(freed_count, 5);
	ck_assert_uint_eq(r.npending, 0);
	for(i = 0; i < 5; i++)
		ck_assert_int_eq(o[i].alive, 0);
}
END_TEST

/* ---- threads: readers never see a freed object ---- */

#define NREADERS 3
#define NOBJS 20000

static sc_rcu_t g_rcu;
static unsigned long g_slots[NREADERS];
static obj_t *g_cur;
static obj_t g_objs[NOBJS];
static int g_stop;
static long g_bad, g_reads[NREADERS];
static int g_started[NREADERS]; /* set once a reader has read once */

static void *reader(void *arg)
{
	int slot = (int)(long)arg, k;
	long reads = 0, bad = 0;

	while(!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
		obj_t *o;
		sc_rcu_enter(&g_rcu, slot);
		o = SC_DEREF(g_cur);
		/* hold it a while, as a request holds the view */
		for(k = 0; k < 50; k++)
			if(__atomic_load_n(&o->alive, __ATOMIC_SEQ_CST) != 1)
				bad++;
		sc_rcu_exit(&g_rcu, slot);
		if(reads++ == 0)
			__atomic_store_n(&g_started[slot], 1, __ATOMIC_RELEASE);
	}
	__atomic_fetch_add(&g_bad, bad, __ATOMIC_SEQ_CST);
	g_reads[slot] = reads;
	return NULL;
}

START_TEST(test_threads_never_read_freed)
{
	pthread_t th[NREADERS];
	int i;
	unsigned int pending;

	freed_count = 0;
	g_stop = 0;
	g_bad = 0;
	memset(g_slots, 0, sizeof(g_slots));
	sc_rcu_init(&g_rcu, g_slots, NREADERS);
	g_objs[0].alive = 1;
	g_cur = &g_objs[0];
	memset(g_started, 0, sizeof(g_started));
	for(i = 0; i < NREADERS; i++)
		ck_assert_int_eq(
				pthread_create(&th[i], NULL, reader, (void *)(long)i), 0);
	/* every reader is reading before the writer starts (on 2 cores a
	 * reader was once scheduled only after the writer had finished) */
	for(i = 0; i < NREADERS; i++)
		while(!__atomic_load_n(&g_started[i], __ATOMIC_ACQUIRE))
			sched_yield();
	/* the writer publishes a new object and retires the old one, as a
	 * reload or a pair's state change does */
	for(i = 1; i < NOBJS; i++) {
		obj_t *old = g_cur;
		g_objs[i].alive = 1;
		g_objs[i].value = i;
		SC_PUBLISH(g_cur, &g_objs[i]);
		sc_rcu_retire(&g_rcu, &old->rcu, old, obj_free);
		sc_rcu_reclaim(&g_rcu);
	}
	__atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
	for(i = 0; i < NREADERS; i++)
		pthread_join(th[i], NULL);
	pending = sc_rcu_reclaim(&g_rcu);
	ck_assert_uint_eq(pending, 0);
	ck_assert_int_eq(g_bad, 0);
	/* every retired object was freed, the published one was not */
	ck_assert_int_eq(freed_count, NOBJS - 1);
	ck_assert_int_eq(g_cur->alive, 1);
	for(i = 0; i < NREADERS; i++)
		ck_assert_int_gt(g_reads[i], 0);
}
END_TEST

/* the shared SWRR cursor: concurrent picks take every slot of the cycle
 * exactly once per turn (no pick lost, none repeated) */
#define NPICKERS 4
#define PICKS 30000
static sc_sched_t g_sched;
static int g_seq[6] = {0, 1, 0, 2, 0, 1};
static long g_count[3];

static void *picker(void *arg)
{
	long c[3] = {0, 0, 0};
	int i;

	(void)arg;
	for(i = 0; i < PICKS; i++)
		c[sc_sched_pick(&g_sched, NULL, NULL)]++;
	for(i = 0; i < 3; i++)
		__atomic_fetch_add(&g_count[i], c[i], __ATOMIC_SEQ_CST);
	return NULL;
}

START_TEST(test_concurrent_picks_keep_weights)
{
	pthread_t th[NPICKERS];
	int i;

	memset(&g_sched, 0, sizeof(g_sched));
	memset(g_count, 0, sizeof(g_count));
	g_sched.seq = g_seq;
	g_sched.len = 6;
	for(i = 0; i < NPICKERS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, picker, NULL), 0);
	for(i = 0; i < NPICKERS; i++)
		pthread_join(th[i], NULL);
	/* 120,000 picks = 20,000 full cycles of 3:2:1 */
	ck_assert_int_eq(g_count[0], NPICKERS * PICKS / 2);
	ck_assert_int_eq(g_count[1], NPICKERS * PICKS / 3);
	ck_assert_int_eq(g_count[2], NPICKERS * PICKS / 6);
	ck_assert_uint_eq(g_sched.pos, NPICKERS * PICKS);
}
END_TEST

Suite *rcu_suite(void)
{
	Suite *s = suite_create("rcu");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_reader_holds_what_it_read);
	tcase_add_test(tc, test_reader_without_slot_holds_everything);
	tcase_add_test(tc, test_drain_frees_all);
	tcase_add_test(tc, test_threads_never_read_freed);
	tcase_add_test(tc, test_concurrent_picks_keep_weights);
	suite_add_tcase(s, tc);
	return s;
}
