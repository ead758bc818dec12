/*
 * Selection micro-benchmark: ns per choice of a destination with N pairs,
 * over the module's own selection code (sc_select.c), for
 *  - the precomputed SWRR cycle the module uses (sc_sched_pick), and
 *  - the classic O(n) smooth weighted round-robin step (sc_swrr_next),
 *  - rendezvous hashing of an AoR (sc_rendezvous, the registrar's choice).
 * Usage: bench_select N [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static char doc[1 << 22];

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10;
	long iters = argc > 2 ? atol(argv[2]) : 10000000;
	int i, k, *w;
	long j;
	long long *cur;
	sc_error_t err;
	sc_topo_t *t;
	sc_sched_t s;
	unsigned int uid = 1;
	volatile long sink = 0;
	double t0, t1, t2, t3;
	str geo = {"dc1", 3}, key;
	str *names;
	char kb[32];

	k = snprintf(doc, sizeof(doc),
			"<sip-cluster name=\"b\"><proxy name=\"p\" server-id=\"1\" address=\"127.0.0.1\" "
			"geo-location=\"dc1\"/>\n");
	for(i = 0; i < n; i++)
		k += snprintf(doc + k, sizeof(doc) - k,
				"<ha-pair name=\"n%d\" geo-location=\"dc1\" weight=\"%d\">"
				"<server name=\"a%d\" address=\"127.%d.%d.1\" "
				"role=\"primary\"/>"
				"<server name=\"b%d\" address=\"127.%d.%d.2\" role=\"backup\"/>"
				"</ha-pair>\n",
				i, 1 + i % 3, i, 1 + i / 250, i % 250, i, 1 + i / 250, i % 250);
	k += snprintf(doc + k, sizeof(doc) - k, "</sip-cluster>\n");
	t = sc_topo_load_mem(doc, k, "bench.xml", NULL, &err);
	if(t == NULL) {
		fprintf(stderr, "%s:%d: %s\n", err.file, err.line, err.reason);
		return 1;
	}
	sc_topo_carry_state(t, NULL, &uid);
	for(i = 0; i < n; i++)
		sc_health_reset(&t->pairs[i], 0);
	memset(&s, 0, sizeof(s));
	s.seq = malloc((SC_SCHED_MAX + n + 1) * sizeof(int));
	t0 = now_ns();
	sc_sched_build(&s, t, &geo, 1);
	t1 = now_ns();
	for(j = 0; j < iters; j++)
		sink += sc_sched_pick(&s, NULL, NULL);
	t2 = now_ns();
	printf("pairs=%d cycle=%d build_us=%.1f pick_ns=%.2f", n, s.len,
			(t1 - t0) / 1e3, (t2 - t1) / iters);

	w = malloc(n * sizeof(int));
	cur = calloc(n, sizeof(long long));
	for(i = 0; i < n; i++)
		w[i] = t->pairs[i].weight;
	t2 = now_ns();
	for(j = 0; j < iters / 10; j++)
		sink += sc_swrr_next(w, cur, n);
	t3 = now_ns();
	printf(" swrr_on_ns=%.2f", (t3 - t2) / (iters / 10));

	names = malloc(n * sizeof(str));
	for(i = 0; i < n; i++)
		names[i] = t->pairs[i].name;
	t2 = now_ns();
	for(j = 0; j < iters / 100; j++) {
		key.s = kb;
		key.len = snprintf(kb, sizeof(kb), "user%ld", j);
		sink += sc_rendezvous(&key, names, n, NULL, NULL);
	}
	t3 = now_ns();
	printf(" rendezvous_ns=%.2f\n", (t3 - t2) / (iters / 100));
	sc_topo_free(t);
	return sink == 42 ? 1 : 0;
}
