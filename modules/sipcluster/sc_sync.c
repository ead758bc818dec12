/*
 * sipcluster - registration repair between proxies: order, merge decision,
 * tombstones, digests, start-up gate (no SIP; see sc_sync.h)
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include <ctype.h>
#include <stdio.h>

#include "../../core/mem/shm.h"
#include "sc_sync.h"
#include "sc_codec.h"

static int sc_str_cmp(const str *a, const str *b)
{
	int n = a->len < b->len ? a->len : b->len;
	int r = n > 0 ? memcmp(a->s, b->s, n) : 0;

	if(r)
		return r;
	return a->len - b->len;
}

static int sc_str_eq(const str *a, const str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

#define SC_CMP(a, b) ((a) < (b) ? -1 : ((a) > (b) ? 1 : 0))

int sc_bver_cmp(const sc_bver_t *a, const sc_bver_t *b)
{
	int r;

	if((r = SC_CMP(a->lm, b->lm)))
		return r;
	if(sc_str_eq(&a->callid, &b->callid)) {
		if((r = SC_CMP(a->cseq, b->cseq)))
			return r;
	}
	/* 0 = permanent: the longest */
	if(a->expires != b->expires) {
		if(a->expires == 0)
			return 1;
		if(b->expires == 0)
			return -1;
		return SC_CMP(a->expires, b->expires);
	}
	if((r = sc_str_cmp(&a->callid, &b->callid)))
		return r > 0 ? 1 : -1;
	return SC_CMP(a->cseq, b->cseq);
}

int sc_tomb_beats(const sc_tver_t *t, const sc_bver_t *v)
{
	if(t->at != v->lm)
		return t->at > v->lm;
	return sc_str_eq(&t->callid, &v->callid) && t->cseq >= v->cseq;
}

/* the later of two deletes */
static int sc_tver_cmp(const sc_tver_t *a, const sc_tver_t *b)
{
	int r;

	if((r = SC_CMP(a->at, b->at)))
		return r;
	if(sc_str_eq(&a->callid, &b->callid))
		return SC_CMP(a->cseq, b->cseq);
	r = sc_str_cmp(&a->callid, &b->callid);
	return r > 0 ? 1 : (r < 0 ? -1 : 0);
}

static int sc_alive(const sc_bver_t *v, long long now)
{
	return v->expires == 0 || v->expires > now;
}

int sc_sync_decide(const sc_bver_t *local, const sc_tver_t *tomb,
		const sc_bver_t *in, long long now)
{
	if(!sc_alive(in, now))
		return SC_SYNC_SKIP;
	if(local) {
		if(sc_bver_cmp(in, local) > 0)
			return SC_SYNC_UPDATE;
		return SC_SYNC_SKIP;
	}
	if(tomb && sc_tomb_beats(tomb, in))
		return SC_SYNC_SKIP;
	return SC_SYNC_INSERT;
}

int sc_sync_decide_tomb(const sc_bver_t *local, const sc_tver_t *in)
{
	if(local == NULL)
		return SC_SYNC_INSERT;
	if(sc_tomb_beats(in, local))
		return SC_SYNC_DELETE;
	return SC_SYNC_SKIP;
}

/* ---- tombstones ---- */

sc_tombs_t *sc_tombs_new(int max)
{
	sc_tombs_t *t = shm_malloc(sizeof(*t));

	if(t == NULL)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->max = max > 0 ? max : 1;
	return t;
}

static void sc_age_link(sc_tombs_t *t, sc_tomb_t *e)
{
	e->age_next = NULL;
	e->age_prev = t->newest;
	if(t->newest)
		t->newest->age_next = e;
	else
		t->oldest = e;
	t->newest = e;
}

static void sc_age_unlink(sc_tombs_t *t, sc_tomb_t *e)
{
	if(e->age_prev)
		e->age_prev->age_next = e->age_next;
	else
		t->oldest = e->age_next;
	if(e->age_next)
		e->age_next->age_prev = e->age_prev;
	else
		t->newest = e->age_prev;
	e->age_prev = e->age_next = NULL;
}

void sc_tombs_free(sc_tombs_t *t)
{
	int i;
	sc_tomb_t *e, *n;

	if(t == NULL)
		return;
	for(i = 0; i < SC_SYNC_NB; i++)
		for(e = t->b[i]; e; e = n) {
			n = e->next;
			shm_free(e);
		}
	shm_free(t);
}

static sc_tomb_t **sc_tombs_slot(
		sc_tombs_t *t, unsigned int aorhash, const str *aor, const str *contact)
{
	sc_tomb_t **pp;

	for(pp = &t->b[aorhash & (SC_SYNC_NB - 1)]; *pp; pp = &(*pp)->next) {
		if((*pp)->aorhash == aorhash && sc_str_eq(&(*pp)->aor, aor)
				&& sc_str_eq(&(*pp)->contact, contact))
			return pp;
	}
	return pp;
}

/* the table is full: drop the oldest entry, O(1) but for its bucket */
static void sc_tombs_evict(sc_tombs_t *t)
{
	sc_tomb_t **pp, *e = t->oldest;

	if(e == NULL)
		return;
	for(pp = &t->b[e->aorhash & (SC_SYNC_NB - 1)]; *pp && *pp != e;
			pp = &(*pp)->next)
		;
	if(*pp == e)
		*pp = e->next;
	sc_age_unlink(t, e);
	shm_free(e);
	t->n--;
	t->evicted++;
}

int sc_tombs_put(sc_tombs_t *t, unsigned int aorhash, const str *aor,
		const str *contact, const sc_tver_t *v, long long until)
{
	sc_tomb_t **pp, *e;
	int cl = v->callid.len > 0 ? v->callid.len : 0;

	pp = sc_tombs_slot(t, aorhash, aor, contact);
	if(*pp) {
		e = *pp;
		if(until > e->until)
			e->until = until;
		if(sc_tver_cmp(v, &e->v) <= 0)
			return 0;
		if(cl <= e->v.callid.len) {
			/* fits where the old Call-ID was */
			memcpy(e->v.callid.s, v->callid.s, cl);
			e->v.callid.len = cl;
			e->v.at = v->at;
			e->v.cseq = v->cseq;
			return 0;
		}
		until = e->until;
		*pp = e->next;
		sc_age_unlink(t, e);
		shm_free(e);
		t->n--;
	}
	if(t->n >= t->max)
		sc_tombs_evict(t);
	e = shm_malloc(sizeof(*e) + aor->len + contact->len + cl);
	if(e == NULL)
		return -1;
	e->next = NULL;
	e->aorhash = aorhash;
	e->v.at = v->at;
	e->v.cseq = v->cseq;
	e->until = until;
	e->aor.s = e->data;
	e->aor.len = aor->len;
	memcpy(e->aor.s, aor->s, aor->len);
	e->contact.s = e->data + aor->len;
	e->contact.len = contact->len;
	memcpy(e->contact.s, contact->s, contact->len);
	e->v.callid.s = e->data + aor->len + contact->len;
	e->v.callid.len = cl;
	if(cl)
		memcpy(e->v.callid.s, v->callid.s, cl);
	/* the slot may have moved when an entry was evicted */
	pp = sc_tombs_slot(t, aorhash, aor, contact);
	*pp = e;
	sc_age_link(t, e);
	t->n++;
	return 0;
}

sc_tomb_t *sc_tombs_get(
		sc_tombs_t *t, unsigned int aorhash, const str *aor, const str *contact)
{
	return *sc_tombs_slot(t, aorhash, aor, contact);
}

int sc_tombs_del(
		sc_tombs_t *t, unsigned int aorhash, const str *aor, const str *contact)
{
	sc_tomb_t **pp = sc_tombs_slot(t, aorhash, aor, contact), *e;

	if(*pp == NULL)
		return 0;
	e = *pp;
	*pp = e->next;
	sc_age_unlink(t, e);
	shm_free(e);
	t->n--;
	return 1;
}

int sc_tombs_gc(sc_tombs_t *t, long long now)
{
	int i, n = 0;
	sc_tomb_t **pp, *e;

	for(i = 0; i < SC_SYNC_NB; i++) {
		pp = &t->b[i];
		while(*pp) {
			if((*pp)->until <= now) {
				e = *pp;
				*pp = e->next;
				sc_age_unlink(t, e);
				shm_free(e);
				t->n--;
				n++;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	return n;
}

/* ---- what a peer may claim ---- */

int sc_sync_time_ok(long long t, long long now, int skew)
{
	return t <= now + (skew > 0 ? skew : 0);
}

long long sc_sync_until_bound(
		long long until, long long now, int skew, int max_life)
{
	long long lim = now + (skew > 0 ? skew : 0)
					+ (max_life > 0 ? max_life : 86400);

	return until > lim ? lim : until;
}

/* ---- digests ---- */

/* a fixed key: the digests only have to be equal for equal data */
static const unsigned char sc_fp_key[SC_KEY_LEN] = {'s', 'i', 'p', 'c', 'l',
		'u', 's', 't', 'e', 'r', '-', 's', 'y', 'n', 'c', '1'};

static int sc_fp_put(char *buf, int pos, int max, const void *p, int len)
{
	if(len < 0)
		len = 0;
	if(pos + len + 1 > max)
		len = max - pos - 1;
	if(len > 0) {
		memcpy(buf + pos, p, len);
		pos += len;
	}
	if(pos < max)
		buf[pos++] = '\0';
	return pos;
}

void sc_digest_init(sc_digest_t *dg, long long cut, int margin)
{
	memset(dg, 0, sizeof(*dg));
	dg->cut = cut;
	dg->margin = margin;
}

int sc_digest_add(sc_digest_t *dg, unsigned int aorhash, const str *aor,
		const str *contact, const sc_bver_t *v)
{
	char buf[1024], nums[64];
	int pos = 0, n;

	if(v->lm > dg->cut)
		return 0;
	if(v->expires != 0 && v->expires <= dg->cut + dg->margin)
		return 0;
	pos = sc_fp_put(buf, pos, sizeof(buf), aor->s, aor->len);
	pos = sc_fp_put(buf, pos, sizeof(buf), contact->s, contact->len);
	pos = sc_fp_put(buf, pos, sizeof(buf), v->callid.s, v->callid.len);
	n = snprintf(
			nums, sizeof(nums), "%lld:%d:%lld", v->lm, v->cseq, v->expires);
	pos = sc_fp_put(buf, pos, sizeof(buf), nums, n);
	dg->d[aorhash & (SC_SYNC_NB - 1)] += sc_siphash(sc_fp_key, buf, pos);
	dg->count++;
	return 1;
}

int sc_digest_diff(const uint64_t *a, const uint64_t *b,
		unsigned char bitmap[SC_SYNC_BITMAP])
{
	int i, n = 0;

	memset(bitmap, 0, SC_SYNC_BITMAP);
	for(i = 0; i < SC_SYNC_NB; i++)
		if(a[i] != b[i]) {
			SC_BIT_SET(bitmap, i);
			n++;
		}
	return n;
}

void sc_digest_hex(const uint64_t *d, char *out)
{
	static const char hx[] = "0123456789abcdef";
	int i, k;

	for(i = 0; i < SC_SYNC_NB; i++)
		for(k = 0; k < 16; k++)
			out[i * 16 + k] = hx[(d[i] >> (60 - 4 * k)) & 0xf];
}

int sc_digest_unhex(const char *s, int len, uint64_t *d)
{
	int i, k, c;
	uint64_t v;

	if(len != SC_DIGEST_HEX_LEN)
		return -1;
	for(i = 0; i < SC_SYNC_NB; i++) {
		v = 0;
		for(k = 0; k < 16; k++) {
			c = s[i * 16 + k];
			if(c >= '0' && c <= '9')
				c -= '0';
			else if(c >= 'a' && c <= 'f')
				c -= 'a' - 10;
			else
				return -1;
			v = (v << 4) | (uint64_t)c;
		}
		d[i] = v;
	}
	return 0;
}

int sc_bitmap_count(const unsigned char bitmap[SC_SYNC_BITMAP])
{
	int i, n = 0;

	for(i = 0; i < SC_SYNC_NB; i++)
		n += SC_BIT_GET(bitmap, i);
	return n;
}

int sc_bitmap_format(
		const unsigned char bitmap[SC_SYNC_BITMAP], char *out, int len)
{
	int i, pos = 0, n;

	if(len < 1)
		return -1;
	out[0] = '\0';
	for(i = 0; i < SC_SYNC_NB; i++) {
		if(!SC_BIT_GET(bitmap, i))
			continue;
		n = snprintf(out + pos, len - pos, pos ? ",%d" : "%d", i);
		if(n < 0 || n >= len - pos)
			return -1;
		pos += n;
	}
	return pos;
}

int sc_bitmap_parse(
		const char *s, int len, unsigned char bitmap[SC_SYNC_BITMAP])
{
	int i = 0, v, digits;

	memset(bitmap, 0, SC_SYNC_BITMAP);
	while(i < len) {
		v = 0;
		digits = 0;
		while(i < len && s[i] >= '0' && s[i] <= '9') {
			v = v * 10 + (s[i] - '0');
			if(v >= SC_SYNC_NB)
				return -1;
			i++;
			digits++;
		}
		if(digits == 0)
			return -1;
		SC_BIT_SET(bitmap, v);
		if(i < len) {
			if(s[i] != ',')
				return -1;
			i++;
			if(i == len)
				return -1;
		}
	}
	return sc_bitmap_count(bitmap);
}

/* ---- the start-up gate ---- */

int sc_sync_may_ask(long long now_ms, long long sent_ms, long long rec_ms,
		int retry, int periodic)
{
	if(rec_ms > 0 && now_ms - rec_ms < retry && now_ms >= rec_ms)
		return 0;
	if(!periodic && sent_ms > 0 && now_ms - sent_ms < retry
			&& now_ms >= sent_ms)
		return 0;
	return 1;
}

int sc_sync_ready(long long now, long long start, int wait,
		const int *peer_state, int npeers)
{
	int i;

	for(i = 0; i < npeers; i++) {
		if(peer_state[i] != SC_PEER_PENDING)
			continue;
		if(now - start < wait)
			return 0;
	}
	return 1;
}

/* ---- the sync messages ---- */

int sc_json_precheck(const char *s, int len, int max)
{
	int i, k, depth = 0, in_str = 0;

	for(i = 0; i < len; i++) {
		char ch = s[i];
		if(ch == '\0')
			return 0; /* the parser would see a shorter body */
		if(in_str) {
			if(ch == '"') {
				in_str = 0;
			} else if(ch == '\\') {
				if(i + 1 >= len)
					return 0;
				ch = s[++i];
				if(ch == 'u') {
					/* srjson reads 4 characters after \u whatever they
					 * are (past the end of the body when it ends early) */
					if(i + 4 >= len)
						return 0;
					for(k = 1; k <= 4; k++)
						if(!isxdigit((unsigned char)s[i + k]))
							return 0;
					i += 4;
				} else if(strchr("\"\\/bfnrt", ch) == NULL) {
					return 0;
				}
			}
			continue;
		}
		if(ch == '"') {
			in_str = 1;
		} else if(ch == '{' || ch == '[') {
			if(++depth > max)
				return 0;
		} else if(ch == '}' || ch == ']') {
			if(depth > 0)
				depth--;
		}
	}
	return 1;
}

int sc_jget_str(srjson_doc_t *d, srjson_t *o, const char *k, str *out)
{
	srjson_t *it = o ? srjson_GetObjectItem(d, o, k) : NULL;

	if(it == NULL || it->type != srjson_String || it->valuestring == NULL) {
		out->s = "";
		out->len = 0;
		return -1;
	}
	out->s = it->valuestring;
	out->len = (int)strlen(it->valuestring);
	return 0;
}

long long sc_jget_num(srjson_doc_t *d, srjson_t *o, const char *k)
{
	srjson_t *it = o ? srjson_GetObjectItem(d, o, k) : NULL;
	double v;

	if(it == NULL || it->type != srjson_Number)
		return 0;
	v = it->valuedouble;
	/* NaN fails both; a cast beyond long long's range is undefined */
	if(!(v >= -4611686018427387904.0 && v <= 4611686018427387904.0))
		return 0;
	return (long long)v;
}

int sc_sync_env_parse(srjson_doc_t *d, sc_sync_env_t *e)
{
	srjson_t *a;

	memset(e, 0, sizeof(*e));
	if(d == NULL || d->root == NULL || d->root->type != srjson_Object)
		return -1;
	if(sc_jget_str(d, d->root, "op", &e->op) < 0
			|| sc_jget_str(d, d->root, "from", &e->from) < 0 || e->from.len == 0
			|| e->from.len > SC_NAME_MAX)
		return -1;
	if(!((e->op.len == 6 && memcmp(e->op.s, "digest", 6) == 0)
			   || (e->op.len == 4 && memcmp(e->op.s, "pull", 4) == 0)
			   || (e->op.len == 3 && memcmp(e->op.s, "rec", 3) == 0)
			   || (e->op.len == 4 && memcmp(e->op.s, "done", 4) == 0)))
		return -1;
	e->id = (unsigned int)sc_jget_num(d, d->root, "id");
	a = srjson_GetObjectItem(d, d->root, "r");
	e->r = (a && a->type == srjson_Array) ? a : NULL;
	a = srjson_GetObjectItem(d, d->root, "x");
	e->x = (a && a->type == srjson_Array) ? a : NULL;
	return 0;
}

int sc_sync_rec_parse(srjson_doc_t *d, srjson_t *o, sc_sync_rec_t *r)
{
	srjson_t *q;

	memset(r, 0, sizeof(*r));
	if(o == NULL || o->type != srjson_Object)
		return -1;
	if(sc_jget_str(d, o, "aor", &r->aor) < 0 || r->aor.len == 0
			|| sc_jget_str(d, o, "c", &r->c) < 0 || r->c.len == 0)
		return -1;
	sc_jget_str(d, o, "ruid", &r->ruid);
	sc_jget_str(d, o, "received", &r->received);
	sc_jget_str(d, o, "path", &r->path);
	sc_jget_str(d, o, "callid", &r->v.callid);
	sc_jget_str(d, o, "user_agent", &r->ua);
	sc_jget_str(d, o, "instance", &r->instance);
	r->v.lm = sc_jget_num(d, o, "last_modified");
	r->v.expires = sc_jget_num(d, o, "expires");
	r->v.cseq = (int)sc_jget_num(d, o, "cseq");
	if(r->v.lm < 0 || r->v.expires < 0)
		return -1;
	q = srjson_GetObjectItem(d, o, "q");
	r->q = -1;
	if(q && q->type == srjson_Number && q->valuedouble >= -1
			&& q->valuedouble <= 1000)
		r->q = q->valuedouble;
	r->flags = (unsigned int)sc_jget_num(d, o, "flags");
	r->cflags = (unsigned int)sc_jget_num(d, o, "cflags");
	r->methods = (unsigned int)sc_jget_num(d, o, "methods");
	r->reg_id = (unsigned int)sc_jget_num(d, o, "reg_id");
	r->server_id = (int)sc_jget_num(d, o, "server_id");
	return 0;
}

int sc_sync_tomb_parse(srjson_doc_t *d, srjson_t *o, sc_sync_tin_t *t)
{
	memset(t, 0, sizeof(*t));
	if(o == NULL || o->type != srjson_Object)
		return -1;
	if(sc_jget_str(d, o, "a", &t->aor) < 0 || t->aor.len == 0
			|| sc_jget_str(d, o, "c", &t->c) < 0 || t->c.len == 0)
		return -1;
	sc_jget_str(d, o, "ci", &t->v.callid);
	t->v.at = sc_jget_num(d, o, "at");
	t->v.cseq = (int)sc_jget_num(d, o, "cs");
	t->until = sc_jget_num(d, o, "un");
	return 0;
}
