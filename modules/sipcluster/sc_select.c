/*
 * sipcluster - SWRR selection, Record-Route pinning parameter, rendezvous
 * hashing (see sc_select.h)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <stdint.h>

#include "sc_select.h"
#include "sc_health.h"

static int sc_gcd(int a, int b)
{
	while(b) {
		int t = a % b;
		a = b;
		b = t;
	}
	return a;
}

int sc_swrr_next(const int *w, long long *cur, int n)
{
	long long total = 0;
	int i, best = -1;

	for(i = 0; i < n; i++) {
		if(w[i] <= 0)
			continue;
		cur[i] += w[i];
		total += w[i];
		if(best < 0 || cur[i] > cur[best])
			best = i;
	}
	if(best >= 0)
		cur[best] -= total;
	return best;
}

int sc_swrr_cycle(const int *w, int n, int *seq, int maxlen)
{
	int i, g = 0, len = 0;
	long long sum = 0;
	int wl[n > 0 ? n : 1];
	long long cur[n > 0 ? n : 1];

	for(i = 0; i < n; i++) {
		wl[i] = w[i] > 0 ? w[i] : 0;
		if(wl[i] > 0)
			g = g ? sc_gcd(g, wl[i]) : wl[i];
	}
	if(g == 0)
		return 0;
	for(i = 0; i < n; i++) {
		wl[i] /= g;
		sum += wl[i];
	}
	if(sum > maxlen) {
		/* too long a cycle: scale the weights down, keep every candidate */
		long long s2 = 0;
		for(i = 0; i < n; i++) {
			if(wl[i] > 0) {
				wl[i] = (int)((long long)wl[i] * maxlen / sum);
				if(wl[i] < 1)
					wl[i] = 1;
			}
			s2 += wl[i];
		}
		sum = s2;
	}
	memset(cur, 0, sizeof(cur));
	for(len = 0; len < sum; len++)
		seq[len] = sc_swrr_next(wl, cur, n);
	return len;
}

int sc_sched_build(sc_sched_t *s, sc_topo_t *t, const str *geo, int local)
{
	int i;
	int w[t->npairs > 0 ? t->npairs : 1];

	for(i = 0; i < t->npairs; i++) {
		sc_pair_t *p = &t->pairs[i];
		int same = (p->geo.len == geo->len
					&& memcmp(p->geo.s, geo->s, geo->len) == 0);
		w[i] = 0;
		if(same == (local ? 1 : 0) && p->weight > 0 && sc_pair_usable(p))
			w[i] = p->weight;
	}
	s->len = sc_swrr_cycle(w, t->npairs, s->seq, SC_SCHED_MAX);
	if(s->len > 0)
		s->pos %= (unsigned int)s->len;
	else
		s->pos = 0;
	return s->len;
}

int sc_sched_pick(sc_sched_t *s, int (*tried)(int, void *), void *arg)
{
	int k, idx;

	/* the cursor is shared by every process: one atomic step per look */
	for(k = 0; k < s->len; k++) {
		idx = s->seq[__atomic_fetch_add(&s->pos, 1, __ATOMIC_RELAXED)
					 % (unsigned int)s->len];
		if(tried == NULL || !tried(idx, arg))
			return idx;
	}
	return -1;
}

int sc_sched_peek(const sc_sched_t *s)
{
	if(s->len <= 0)
		return -1;
	return s->seq[__atomic_load_n(&s->pos, __ATOMIC_RELAXED)
				  % (unsigned int)s->len];
}

static uint64_t sc_mix(uint64_t x)
{
	/* splitmix64 finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t sc_fnv(uint64_t h, const char *s, int len)
{
	int i;
	for(i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int sc_rendezvous(const str *key, const str *names, int n,
		int (*ok)(int, void *), void *arg)
{
	int i, best = -1;
	uint64_t hk, h, bh = 0;

	hk = sc_fnv(0xcbf29ce484222325ULL, key->s, key->len);
	for(i = 0; i < n; i++) {
		if(ok && !ok(i, arg))
			continue;
		h = sc_mix(
				sc_fnv(hk ^ 0x9e3779b97f4a7c15ULL, names[i].s, names[i].len));
		if(best < 0 || h > bh) {
			best = i;
			bh = h;
		}
	}
	return best;
}
