/*
 * libFuzzer target: the registration sync's reader of KDMQ bodies
 * (sc_sync.c over Kamailio's srjson), as the DMQ worker runs it on what a
 * peer sent: the nesting bound first (srjson's parser recurses once per
 * level), then the envelope, every binding and tombstone of a "rec", the
 * digest of a "digest" and the bucket list of a "pull", and the bounds on
 * the versions a peer may claim. Invariants checked: what parses has an
 * AoR and a contact, no negative version, a bounded keep-until.
 */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sc_sync.h"
#include "sc_codec.h"

static void fz_rec(srjson_doc_t *d, srjson_t *o)
{
	sc_sync_rec_t r;

	if(sc_sync_rec_parse(d, o, &r) < 0)
		return;
	if(r.aor.len <= 0 || r.c.len <= 0 || r.v.lm < 0 || r.v.expires < 0
			|| r.q < -1 || r.q > 1000)
		__builtin_trap();
	(void)sc_sync_time_ok(r.v.lm, 1700000000, 60);
}

static void fz_tomb(srjson_doc_t *d, srjson_t *o)
{
	sc_sync_tin_t t;
	long long u;

	if(sc_sync_tomb_parse(d, o, &t) < 0)
		return;
	if(t.aor.len <= 0 || t.c.len <= 0)
		__builtin_trap();
	u = sc_sync_until_bound(t.until, 1700000000, 60, 86400);
	if(u > 1700000000LL + 60 + 86400 || u > t.until)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	srjson_doc_t doc;
	sc_sync_env_t env;
	srjson_t *it;
	char *buf;
	str s;

	if(size > 65536)
		return 0;
	if(!sc_json_precheck((const char *)data, (int)size, SC_JSON_MAX_DEPTH))
		return 0;
	buf = malloc(size + 1);
	if(buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	srjson_InitDoc(&doc, NULL);
	doc.root = srjson_Parse(&doc, buf);
	if(sc_sync_env_parse(&doc, &env) == 0) {
		if(env.from.len <= 0 || env.from.len > SC_NAME_MAX)
			__builtin_trap();
		if(env.r)
			for(it = env.r->child; it; it = it->next)
				fz_rec(&doc, it);
		if(env.x)
			for(it = env.x->child; it; it = it->next)
				fz_tomb(&doc, it);
		if(sc_jget_str(&doc, doc.root, "d", &s) == 0) {
			static uint64_t dg[SC_SYNC_NB];
			(void)sc_digest_unhex(s.s, s.len, dg);
		}
		if(sc_jget_str(&doc, doc.root, "b", &s) == 0) {
			unsigned char bm[SC_SYNC_BITMAP];
			(void)sc_bitmap_parse(s.s, s.len, bm);
		}
		(void)sc_jget_num(&doc, doc.root, "cut");
		(void)sc_jget_num(&doc, doc.root, "n");
	}
	srjson_DestroyDoc(&doc);
	free(buf);
	return 0;
}
