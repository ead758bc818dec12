/*
 * sipcluster - registration repair between proxies (anti-entropy over DMQ)
 *
 * dmq_usrloc replicates every change once; a change a peer misses (a
 * partition, a pause, a restart, a lost UDP message) stays missing until
 * the endpoint's next refresh, and its full sync applies copies without
 * looking at which is newer and knows nothing of deletes. This file adds
 * the repair (the rules are in sc_sync.h):
 *   - one process ("sipcluster sync") compares, every sync_interval s,
 *     per-bucket digests of the bindings with each peer whose server-id is
 *     higher than its own (every pair of proxies is compared by one side),
 *     and with every peer at start-up;
 *   - the peer answers a digest by sending its bindings and tombstones of
 *     the buckets that differ, asking for ours of the same buckets, then
 *     "done"; both sides merge what they get (newer copy wins, a tombstone
 *     beats an older copy), so after one exchange both hold the newest of
 *     each;
 *   - a tombstone is kept for every explicit delete (usrloc callback) until
 *     the deleted binding would have expired;
 *   - until every peer answered (or did not, within sync_wait s) a REGISTER
 *     is refused with 503: a proxy that just started does not store
 *     bindings before it knows the others' and before DMQ replicates its
 *     own.
 * Messages are KDMQ requests of the DMQ peer "sipcluster" with a JSON body
 * ({"op":"digest"|"pull"|"rec"|"done", "from":<proxy name>, ...}). The
 * digests are computed and the buckets walked in the sync process (usrloc
 * slot by slot, each slot locked while it is read); the merge runs in the
 * DMQ worker that receives the records, through the usrloc API. The
 * module's own locks are never held while calling usrloc, tm or DMQ.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../core/dprint.h"
#include "../../core/sr_module.h"
#include "../../core/mem/shm.h"
#include "../../core/mem/pkg.h"
#include "../../core/locking.h"
#include "../../core/rpc.h"
#include "../../core/rpc_lookup.h"
#include "../../core/qvalue.h"
#include "../../core/ip_addr.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/parser/parse_uri.h"
#include "../../core/parser/parse_content.h"
#include "../../core/utils/srjson.h"
#include "../../modules/usrloc/usrloc.h"
#include "../../modules/usrloc/udomain.h"
#include "../../modules/usrloc/ul_callback.h"
#include "../../modules/dmq/bind_dmq.h"
#include "sc_kcompat.h"

#include "sc_state.h"
#include "sc_msg.h"
#include "sc_topo.h"
#include "sc_sync.h"
#include "sc_syncd.h"

#define SC_SYNC_MAX_PEERS 64
#define SC_SYNC_QLEN 16
/* start-up: a pending peer is asked again after this many ms */
#define SC_SYNC_RETRY_MS 1000
/* tombstones of bindings without expiry are kept this long (s) */
#define SC_SYNC_TOMB_PERMANENT 86400

int sc_sync_interval = 3;
int sc_sync_wait = 10;
int sc_sync_settle = 1;
int sc_sync_batch = 60000;
int sc_max_tombstones = 100000;
int sc_sync_max_skew = 60;
char *sc_tomb_file = NULL;

stat_var *sc_st_sync_rounds = NULL;
stat_var *sc_st_sync_repairs = NULL;
stat_var *sc_st_sync_sent = NULL;
stat_var *sc_st_sync_applied = NULL;
stat_var *sc_st_sync_rejected = NULL;

typedef struct sc_sync_peer
{
	char name[SC_NAME_MAX + 1];
	char uri[128];
	int server_id;
	int initiator; /* we start the periodic exchanges with it */
	int state;	   /* SC_PEER_* (start-up gate) */
	unsigned int round;
	long long sent_ms;
	long long done_ms;
	int last_code;
	int last_diff;
	unsigned long rec_in;
	unsigned long rec_out;
	unsigned long repairs;
	long long hold_ms; /* a large push to it is still being applied */
	long long rec_ms;  /* records it pushed to us last applied at */
	long long ans_ms;  /* its last digest answered at */
	long long bulk_ms; /* it was last sent everything in bulk at */
} sc_sync_peer_t;

/* a peer's digests are answered at most once per this many ms (a digest
 * costs a walk of every binding and may ask for all of them: no
 * amplification), and everything in dmq_usrloc's bulk format (applied
 * there without comparing versions) at most once per SC_SYNC_BULK_MIN_MS;
 * in between, a peer that says it holds nothing gets our own format */
#define SC_SYNC_ANSWER_MIN_MS 500
#define SC_SYNC_BULK_MIN_MS 30000

/* a peer applies a large push at no less than this many records per ms
 * (measured: 100,000 in about 1 s): its digests before then would differ
 * again and ask for everything again */
#define SC_SYNC_APPLY_PER_MS 50
#define SC_SYNC_HOLD_MIN 10000

#define SC_JOB_DIGEST 1
#define SC_JOB_PULL 2

typedef struct sc_sync_job
{
	int op;
	char peer[SC_NAME_MAX + 1];
	unsigned int id;
	long long cut;
	int margin;
	long long n; /* bindings in the peer's digest */
	uint64_t d[SC_SYNC_NB];
	unsigned char bm[SC_SYNC_BITMAP];
} sc_sync_job_t;

typedef struct sc_sync_shared
{
	gen_lock_t lock;
	long long start; /* wall s */
	int ready;
	long long ready_at;
	int npeers;
	unsigned int topo_gen;
	sc_sync_peer_t peer[SC_SYNC_MAX_PEERS];
	unsigned int round_seq;
	long long next_round; /* wall s */
	int now_requested;
	int qn, qhead;
	sc_sync_job_t q[SC_SYNC_QLEN];
	gen_lock_t tlock; /* the tombstones, and the journal */
	sc_tombs_t *tombs;
	int jloaded;		  /* the journal was read back */
	int jdirty;			  /* appended since the last fdatasync */
	unsigned long jlines; /* lines in the journal file */
} sc_sync_shared_t;

static sc_sync_shared_t *sc_sy = NULL;
/* the registrar's max_expires (sc_sync_init): a replicated binding never
 * outlives what a REGISTER here could get */
static int sc_sy_max_expires = 86400;
static dmq_api_t sc_dmq;
static dmq_peer_t *sc_dmq_peer = NULL;
static usrloc_api_t *sc_ul = NULL;
static udomain_t *sc_dom = NULL;
static str sc_ct_json = str_init("application/json");
static str sc_dmq_ok = str_init("OK");
static str sc_dmq_bad = str_init("Bad Request");
static str sc_dmq_busy = str_init("Busy");

/* the delete being applied by a merge in this process (its tombstone) */
static const sc_tver_t *sc_del_ctx = NULL;
/* an explicit unregister in this process: its version, and the tombstones
 * it made (sent to every peer once usrloc is unlocked) */
typedef struct sc_unreg_tomb
{
	struct sc_unreg_tomb *next;
	sc_tomb_t t;
} sc_unreg_tomb_t;
static int sc_unreg_on = 0;
static sc_tver_t sc_unreg_v;
static char sc_unreg_callid[256];
static sc_unreg_tomb_t *sc_unreg_list = NULL;
/* sync process: the digest of the last cut, computed once per cut */
static sc_digest_t *sc_cache = NULL;
static int sc_cache_valid = 0;

static long long sc_wall_s(void)
{
	return (long long)time(NULL);
}

int sc_sync_enabled(void)
{
	return sc_sy != NULL;
}

int sc_sync_is_ready(void)
{
	return sc_sy == NULL || sc_sy->ready;
}

/* ---- the tombstone journal: a removal survives a kill of every proxy ----
 *
 * usrloc writes its changes back every timer_interval, so a binding removed
 * shortly before every proxy dies (a power cut) is still in each one's
 * database and would be loaded again, everywhere, with no peer left that
 * holds its tombstone. With tomb_file set, every tombstone is appended to
 * that file as it is made (one JSON object a line, the sync's tombstone
 * format), the sync process fdatasyncs it within SC_JOURNAL_SYNC_MS, reads
 * it back at start-up (its removals applied to what usrloc loaded, before
 * the start-up sync) and rewrites it with the live tombstones once it holds
 * twice their number. Appends and rewrites hold tlock, so an append never
 * goes to a file a rewrite has replaced. */

#define SC_JOURNAL_SYNC_MS 200

static int sc_jfd = -1; /* this process's descriptor of tomb_file */
static ino_t sc_jino = 0;
static int sc_jloading = 0; /* reading back: no appends */

/* an open descriptor of the current tomb_file (under tlock) */
static int sc_journal_fd(void)
{
	struct stat st;

	if(sc_jfd >= 0 && stat(sc_tomb_file, &st) == 0 && st.st_ino == sc_jino)
		return sc_jfd;
	if(sc_jfd >= 0)
		close(sc_jfd);
	sc_jfd = open(sc_tomb_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			0640);
	if(sc_jfd < 0) {
		LM_ERR("cannot open the tombstone journal %s: %s: a removal may "
			   "come back if every proxy dies before usrloc writes it "
			   "back\n",
				sc_tomb_file, strerror(errno));
		return -1;
	}
	if(fstat(sc_jfd, &st) == 0)
		sc_jino = st.st_ino;
	return sc_jfd;
}

/* one tombstone as a journal line, NUL-terminated in buf (system malloc,
 * free()); NULL when out of memory */
static char *sc_journal_line(
		const str *aor, const str *c, const sc_tver_t *v, long long until)
{
	srjson_doc_t d;
	srjson_t *o;
	char *js, *line = NULL;
	size_t n;

	srjson_InitDoc(&d, NULL);
	o = srjson_CreateObject(&d);
	if(o == NULL)
		return NULL;
	srjson_AddItemToObject(&d, o, "a", srjson_CreateStr(&d, aor->s, aor->len));
	srjson_AddItemToObject(&d, o, "c", srjson_CreateStr(&d, c->s, c->len));
	srjson_AddItemToObject(
			&d, o, "ci", srjson_CreateStr(&d, v->callid.s, v->callid.len));
	srjson_AddNumberToObject(&d, o, "cs", v->cseq);
	srjson_AddNumberToObject(&d, o, "at", (double)v->at);
	srjson_AddNumberToObject(&d, o, "un", (double)until);
	js = srjson_PrintUnformatted(&d, o);
	if(js) {
		n = strlen(js);
		line = malloc(n + 2);
		if(line) {
			memcpy(line, js, n);
			line[n] = '\n';
			line[n + 1] = '\0';
		}
		d.free_fn(js);
	}
	srjson_Delete(&d, o);
	return line;
}

static int sc_write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while(n > 0) {
		w = write(fd, p, n);
		if(w < 0 && errno == EINTR)
			continue;
		if(w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* under tlock */
static void sc_journal_append(
		const str *aor, const str *c, const sc_tver_t *v, long long until)
{
	char *line;
	int fd;

	if(sc_tomb_file == NULL || sc_jloading)
		return;
	fd = sc_journal_fd();
	if(fd < 0)
		return;
	line = sc_journal_line(aor, c, v, until);
	if(line == NULL || sc_write_all(fd, line, strlen(line)) < 0)
		LM_ERR("cannot append to the tombstone journal %s: %s\n",
				sc_tomb_file, strerror(errno));
	else {
		sc_sy->jlines++;
		sc_sy->jdirty = 1;
	}
	free(line);
}

/* under tlock: the journal replaced by the live tombstones */
static void sc_journal_rewrite(void)
{
	char tmp[1024], *line;
	sc_tomb_t *e;
	int fd, i, bad = 0;
	unsigned long n = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", sc_tomb_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if(fd < 0) {
		LM_ERR("cannot write %s: %s\n", tmp, strerror(errno));
		return;
	}
	for(i = 0; i < SC_SYNC_NB && !bad; i++) {
		for(e = sc_sy->tombs->b[i]; e && !bad; e = e->next) {
			line = sc_journal_line(&e->aor, &e->contact, &e->v, e->until);
			if(line == NULL || sc_write_all(fd, line, strlen(line)) < 0)
				bad = 1;
			free(line);
			n++;
		}
	}
	if(bad || fdatasync(fd) < 0) {
		LM_ERR("cannot write %s: %s (the journal is kept as it is)\n", tmp,
				strerror(errno));
		close(fd);
		unlink(tmp);
		return;
	}
	close(fd);
	if(rename(tmp, sc_tomb_file) < 0) {
		LM_ERR("cannot replace %s: %s\n", sc_tomb_file, strerror(errno));
		unlink(tmp);
		return;
	}
	sc_sy->jlines = n;
	sc_sy->jdirty = 0;
}

static int sc_apply_tomb(srjson_doc_t *d, srjson_t *o, long long now);

/* once, in the main process at PROC_SIPINIT (sc_sync_journal_apply):
 * the removals of the journal applied to what usrloc loaded, the journal
 * compacted; the sync process starts the start-up sync only after it */
static void sc_journal_load(long long now)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	srjson_doc_t doc;
	unsigned long lines = 0, bad = 0, removed = 0;
	int r;

	f = fopen(sc_tomb_file, "r");
	if(f == NULL) {
		if(errno != ENOENT)
			LM_ERR("cannot read the tombstone journal %s: %s\n", sc_tomb_file,
					strerror(errno));
	} else {
		sc_jloading = 1;
		while((len = getline(&line, &cap, f)) > 0) {
			lines++;
			if(line[len - 1] != '\n'
					|| !sc_json_precheck(line, (int)len - 1, SC_JSON_MAX_DEPTH)) {
				bad++; /* a line cut by the crash, or not ours */
				continue;
			}
			line[len - 1] = '\0';
			srjson_InitDoc(&doc, NULL);
			doc.root = srjson_Parse(&doc, line);
			if(doc.root == NULL || doc.root->type != srjson_Object)
				bad++;
			else if((r = sc_apply_tomb(&doc, doc.root, now)) < 0)
				bad++;
			else
				removed += r;
			srjson_DestroyDoc(&doc);
		}
		sc_jloading = 0;
		free(line);
		fclose(f);
	}
	lock_get(&sc_sy->tlock);
	sc_journal_rewrite();
	sc_sy->jloaded = 1;
	lock_release(&sc_sy->tlock);
	if(lines > 0)
		LM_NOTICE("tombstone journal %s: %lu lines, %lu bindings loaded from "
				  "the database removed again, %lu tombstones kept%s\n",
				sc_tomb_file, lines, removed, sc_sy->jlines,
				bad ? " (lines that were not whole skipped)" : "");
}

/* sync process: flushed within SC_JOURNAL_SYNC_MS, compacted when it holds
 * twice the live tombstones */
static void sc_journal_tick(long long now_ms)
{
	static long long last = 0;
	int fd;

	if(sc_tomb_file == NULL || now_ms - last < SC_JOURNAL_SYNC_MS)
		return;
	last = now_ms;
	lock_get(&sc_sy->tlock);
	if(sc_sy->jlines > 2 * (unsigned long)sc_sy->tombs->n + 1024) {
		sc_journal_rewrite();
	} else if(sc_sy->jdirty) {
		fd = sc_journal_fd();
		if(fd >= 0 && fdatasync(fd) == 0)
			sc_sy->jdirty = 0;
	}
	lock_release(&sc_sy->tlock);
}

/* ---- usrloc callbacks: tombstones ---- */

static void sc_sync_ulcb(ucontact_t *c, int type, void *param)
{
	unsigned int h;
	sc_tver_t v;
	long long until;

	if(sc_sy == NULL || c == NULL || c->aor == NULL)
		return;
	h = sc_ul->get_aorhash(c->aor);
	if(type & (UL_CONTACT_INSERT | UL_CONTACT_UPDATE)) {
		/* stored again: no tombstone stands against it any more */
		if(sc_sy->tombs->n == 0)
			return;
		lock_get(&sc_sy->tlock);
		sc_tombs_del(sc_sy->tombs, h, c->aor, &c->c);
		lock_release(&sc_sy->tlock);
		return;
	}
	if(!(type & UL_CONTACT_DELETE))
		return;
	if(sc_del_ctx) {
		v = *sc_del_ctx;
	} else if(sc_unreg_on) {
		v = sc_unreg_v;
	} else {
		/* the delete's version: the unregistering REGISTER set the
		 * copy's last_modified, Call-ID and CSeq before deleting it
		 * (sc_reg.c), here and, replicated, on every peer */
		v.at = (long long)c->last_modified;
		v.cseq = c->cseq;
		v.callid = c->callid;
	}
	until = c->expires ? (long long)c->expires : v.at + SC_SYNC_TOMB_PERMANENT;
	if(until <= sc_wall_s())
		return;
	lock_get(&sc_sy->tlock);
	if(sc_tombs_put(sc_sy->tombs, h, c->aor, &c->c, &v, until) < 0)
		LM_ERR("no shm for the tombstone of %.*s (%.*s)\n", c->aor->len,
				c->aor->s, c->c.len, c->c.s);
	else
		sc_journal_append(c->aor, &c->c, &v, until);
	lock_release(&sc_sy->tlock);
	if(sc_unreg_on && sc_del_ctx == NULL) {
		/* kept for the peers (pkg copy) */
		sc_unreg_tomb_t *u;
		int len = c->aor->len + c->c.len + v.callid.len;
		u = pkg_malloc(sizeof(*u) + len);
		if(u == NULL) {
			PKG_MEM_ERROR;
			return;
		}
		memset(u, 0, sizeof(*u));
		u->t.v = v;
		u->t.until = until;
		u->t.aor.s = u->t.data;
		u->t.aor.len = c->aor->len;
		memcpy(u->t.aor.s, c->aor->s, c->aor->len);
		u->t.contact.s = u->t.data + c->aor->len;
		u->t.contact.len = c->c.len;
		memcpy(u->t.contact.s, c->c.s, c->c.len);
		u->t.v.callid.s = u->t.contact.s + c->c.len;
		memcpy(u->t.v.callid.s, v.callid.s, v.callid.len);
		u->next = sc_unreg_list;
		sc_unreg_list = u;
	}
}

void sc_sync_unreg_begin(long long at, int cseq, const str *callid)
{
	if(sc_sy == NULL)
		return;
	sc_unreg_v.at = at;
	sc_unreg_v.cseq = cseq;
	sc_unreg_v.callid.len = callid->len < (int)sizeof(sc_unreg_callid)
									? callid->len
									: (int)sizeof(sc_unreg_callid);
	memcpy(sc_unreg_callid, callid->s, sc_unreg_v.callid.len);
	sc_unreg_v.callid.s = sc_unreg_callid;
	sc_unreg_on = 1;
}

static counter_val_t sc_stat_tombstones(void)
{
	return sc_sy ? sc_sy->tombs->n : 0;
}

counter_val_t sc_sync_stat_tombstones(void)
{
	return sc_stat_tombstones();
}

/* ---- peers (from the cluster document) ---- */

/* under sc_sy->lock; the topology under the state lock */
static void sc_sync_peers_refresh(void)
{
	sc_topo_t *t;
	sc_sync_peer_t old[SC_SYNC_MAX_PEERS];
	int nold, i, k, n = 0, self, selfid;

	/* unchanged topology (nearly always): no global lock taken */
	if(sc_sy->topo_gen == sc_state_gen())
		return;
	t = sc_state_lock();
	if(sc_sy->topo_gen == sc_state_gen()) {
		sc_state_unlock();
		return;
	}
	nold = sc_sy->npeers;
	memcpy(old, sc_sy->peer, nold * sizeof(old[0]));
	self = sc_state_self();
	selfid = t->proxies[self].server_id;
	for(i = 0; i < t->nproxies && n < SC_SYNC_MAX_PEERS; i++) {
		sc_proxy_t *p = &t->proxies[i];
		sc_sync_peer_t *sp = &sc_sy->peer[n];
		if(i == self)
			continue;
		memset(sp, 0, sizeof(*sp));
		snprintf(sp->name, sizeof(sp->name), "%.*s", p->name.len, p->name.s);
		/* the cluster channel is a connection: TCP unless the document
		 * says TLS (a UDP KDMQ is refused) */
		snprintf(sp->uri, sizeof(sp->uri), "%.*s%s", p->uri.len, p->uri.s,
				p->transport == SC_TP_UDP || p->transport == SC_TP_SCTP
						? ";transport=tcp"
						: "");
		sp->server_id = p->server_id;
		sp->initiator = selfid < p->server_id;
		/* a proxy new to the document has answered nothing yet: pending
		 * until its first "done" (sync_status showed it done) */
		sp->state = SC_PEER_PENDING;
		for(k = 0; k < nold; k++)
			if(strcmp(old[k].name, sp->name) == 0
					&& strcmp(old[k].uri, sp->uri) == 0) {
				sp->state = old[k].state;
				sp->round = old[k].round;
				sp->sent_ms = old[k].sent_ms;
				sp->done_ms = old[k].done_ms;
				sp->last_code = old[k].last_code;
				sp->hold_ms = old[k].hold_ms;
				sp->rec_ms = old[k].rec_ms;
				sp->ans_ms = old[k].ans_ms;
				sp->bulk_ms = old[k].bulk_ms;
				sp->last_diff = old[k].last_diff;
				sp->rec_in = old[k].rec_in;
				sp->rec_out = old[k].rec_out;
				sp->repairs = old[k].repairs;
			}
		n++;
	}
	sc_sy->npeers = n;
	sc_sy->topo_gen = sc_state_gen();
	sc_state_unlock();
}

static sc_sync_peer_t *sc_sync_peer(const char *name)
{
	int i;

	for(i = 0; i < sc_sy->npeers; i++)
		if(strcmp(sc_sy->peer[i].name, name) == 0)
			return &sc_sy->peer[i];
	return NULL;
}

/* ---- sending ---- */

static void *sc_key(int idx, unsigned int round)
{
	return (void *)(((unsigned long)(idx + 1) << 32) | (unsigned long)round);
}

/* the reply to a digest we sent (any process) */
static int sc_sync_digest_reply(
		struct sip_msg *msg, int code, dmq_node_t *node, void *param)
{
	unsigned long k = (unsigned long)param;
	int idx = (int)(k >> 32) - 1;
	unsigned int round = (unsigned int)(k & 0xffffffffUL);
	sc_sync_peer_t *p;

	if(sc_sy == NULL || idx < 0)
		return 0;
	lock_get(&sc_sy->lock);
	if(idx < sc_sy->npeers) {
		p = &sc_sy->peer[idx];
		if(p->round == round)
			p->last_code = code;
		/* no answer (408) or a refusal to any of our digests: at start-up
		 * the peer counts as down (it syncs with us when it comes back) */
		if(code >= 300 && p->state == SC_PEER_PENDING) {
			p->last_code = code;
			p->state = SC_PEER_DOWN;
		}
	}
	lock_release(&sc_sy->lock);
	return 0;
}

static int sc_sync_noop_reply(
		struct sip_msg *msg, int code, dmq_node_t *node, void *param)
{
	if(code >= 300)
		LM_DBG("sync message answered %d\n", code);
	return 0;
}

/* send body to the peer at uri; reply callback f(param). The node is
 * built from the document's URI, not looked up in DMQ's node list: DMQ
 * drops a peer from its list after failed requests (a partition) and
 * learns it again only at its next ping, while the sync must reach the
 * peer the moment it is back. */
static int sc_sync_send(dmq_peer_t *peer, const char *uri, str *body,
		int (*f)(struct sip_msg *, int, dmq_node_t *, void *), void *param)
{
	dmq_node_t node;
	dmq_resp_cback_t cb;

	memset(&node, 0, sizeof(node));
	node.orig_uri.s = (char *)uri;
	node.orig_uri.len = strlen(uri);
	if(parse_uri(node.orig_uri.s, node.orig_uri.len, &node.uri) < 0) {
		LM_ERR("bad URI of a sync peer: %s\n", uri);
		return -1;
	}
	cb.f = f;
	cb.param = param;
	return sc_dmq.send_message(peer, body, &node, &cb, 1, &sc_ct_json);
}

static const char *sc_self_name(char *buf, int len)
{
	sc_view_t *v = sc_view_get();

	snprintf(buf, len, "%.*s", v->topo->proxies[v->self].name.len,
			v->topo->proxies[v->self].name.s);
	sc_view_put();
	return buf;
}

static int sc_json_send_to(dmq_peer_t *peer, const char *uri, srjson_doc_t *doc,
		int (*f)(struct sip_msg *, int, dmq_node_t *, void *), void *param)
{
	str body;
	int r;

	body.s = srjson_PrintUnformatted(doc, doc->root);
	if(body.s == NULL) {
		LM_ERR("cannot serialise a sync message\n");
		return -1;
	}
	body.len = strlen(body.s);
	r = sc_sync_send(peer, uri, &body, f, param);
	doc->free_fn(body.s);
	return r;
}

static int sc_json_send(const char *uri, srjson_doc_t *doc,
		int (*f)(struct sip_msg *, int, dmq_node_t *, void *), void *param)
{
	return sc_json_send_to(sc_dmq_peer, uri, doc, f, param);
}

static srjson_t *sc_json_start(
		srjson_doc_t *doc, const char *op, const char *self, unsigned int id)
{
	srjson_InitDoc(doc, NULL);
	doc->root = srjson_CreateObject(doc);
	if(doc->root == NULL)
		return NULL;
	srjson_AddStringToObject(doc, doc->root, "op", op);
	srjson_AddStringToObject(doc, doc->root, "from", self);
	srjson_AddNumberToObject(doc, doc->root, "id", id);
	return doc->root;
}

/* ---- walking usrloc (sync process) ---- */

static void sc_bver_of(const ucontact_t *c, sc_bver_t *v)
{
	v->lm = (long long)c->last_modified;
	v->cseq = c->cseq;
	v->expires = (long long)c->expires;
	v->callid = c->callid;
}

static void sc_sync_compute(sc_digest_t *dg, long long cut, int margin)
{
	int i;
	urecord_t *r;
	ucontact_t *c;
	sc_bver_t v;

	sc_digest_init(dg, cut, margin);
	for(i = 0; i < SC_UL_SLOTS(sc_dom); i++) {
		SC_UL_SLOT_LOCK(sc_dom, i);
		for(r = SC_UL_SLOT_FIRST(sc_dom, i); r; r = r->next)
			for(c = r->contacts; c; c = c->next) {
				sc_bver_of(c, &v);
				sc_digest_add(dg, r->aorhash, &r->aor, &c->c, &v);
			}
		SC_UL_SLOT_UNLOCK(sc_dom, i);
	}
}

static const sc_digest_t *sc_sync_digest(long long cut, int margin)
{
	if(sc_cache == NULL) {
		sc_cache = pkg_malloc(sizeof(*sc_cache));
		if(sc_cache == NULL) {
			PKG_MEM_ERROR;
			return NULL;
		}
	}
	if(!sc_cache_valid || sc_cache->cut != cut || sc_cache->margin != margin) {
		sc_sync_compute(sc_cache, cut, margin);
		sc_cache_valid = 1;
	}
	return sc_cache;
}

typedef struct sc_batch
{
	srjson_doc_t doc;
	srjson_t *r; /* bindings */
	srjson_t *x; /* tombstones */
	int size;
	int count;
	int total;
	const char *uri;
	const char *self;
	int started;
	int bulk; /* dmq_usrloc's own format, to its DMQ peer "usrloc" */
} sc_batch_t;

/* dmq_usrloc's DMQ peer, by name: what it applies it does not broadcast
 * again (its usrloc callback skips what it received), unlike a binding
 * the sync inserts through usrloc itself */
static dmq_peer_t sc_ul_peer;

static void sc_batch_flush(sc_batch_t *b)
{
	if(!b->started)
		return;
	if(b->count > 0) {
		int r = sc_json_send_to(b->bulk ? &sc_ul_peer : sc_dmq_peer, b->uri,
				&b->doc, sc_sync_noop_reply, NULL);
		if(r < 0)
			LM_WARN("could not send %d records to %s\n", b->count, b->uri);
		else
			update_stat(sc_st_sync_sent, b->count);
	}
	srjson_DestroyDoc(&b->doc);
	b->started = 0;
	b->count = 0;
	b->size = 0;
}

static int sc_batch_begin(sc_batch_t *b)
{
	if(b->started)
		return 0;
	if(b->bulk) {
		srjson_InitDoc(&b->doc, NULL);
		b->doc.root = srjson_CreateObject(&b->doc);
		if(b->doc.root == NULL)
			return -1;
		b->r = srjson_CreateArray(&b->doc);
		b->x = NULL;
		srjson_AddItemToObject(&b->doc, b->doc.root, "multi", b->r);
		b->started = 1;
		b->size = 64;
		return 0;
	}
	if(sc_json_start(&b->doc, "rec", b->self, 0) == NULL)
		return -1;
	b->r = srjson_CreateArray(&b->doc);
	b->x = srjson_CreateArray(&b->doc);
	srjson_AddItemToObject(&b->doc, b->doc.root, "r", b->r);
	srjson_AddItemToObject(&b->doc, b->doc.root, "x", b->x);
	b->started = 1;
	b->size = 64;
	return 0;
}

static void sc_jstr(srjson_doc_t *d, srjson_t *o, const char *k, const str *v)
{
	srjson_AddItemToObject(
			d, o, k, srjson_CreateStr(d, v->s ? v->s : "", v->s ? v->len : 0));
}

static void sc_jnum(srjson_doc_t *d, srjson_t *o, const char *k, double v)
{
	srjson_AddNumberToObject(d, o, k, v);
}

/* a binding copied out of usrloc (one allocation) */
typedef struct sc_rcopy
{
	struct sc_rcopy *next;
	str aor, c, ruid, received, path, callid, ua, instance;
	int cseq;
	long long expires, lm;
	int q;
	unsigned int flags, cflags, methods, reg_id;
	int server_id;
	char data[];
} sc_rcopy_t;

static char *sc_cp(str *dst, const str *src, char *p)
{
	dst->s = p;
	dst->len = src->s ? src->len : 0;
	if(dst->len)
		memcpy(p, src->s, dst->len);
	return p + dst->len;
}

static sc_rcopy_t *sc_rcopy_new(const str *aor, const ucontact_t *c)
{
	sc_rcopy_t *r;
	char *p;
	int len = aor->len + c->c.len + c->ruid.len + c->received.len + c->path.len
			  + c->callid.len + c->user_agent.len + c->instance.len;

	r = pkg_malloc(sizeof(*r) + len);
	if(r == NULL) {
		PKG_MEM_ERROR;
		return NULL;
	}
	p = r->data;
	p = sc_cp(&r->aor, aor, p);
	p = sc_cp(&r->c, &c->c, p);
	p = sc_cp(&r->ruid, &c->ruid, p);
	p = sc_cp(&r->received, &c->received, p);
	p = sc_cp(&r->path, &c->path, p);
	p = sc_cp(&r->callid, &c->callid, p);
	p = sc_cp(&r->ua, &c->user_agent, p);
	sc_cp(&r->instance, &c->instance, p);
	r->cseq = c->cseq;
	r->expires = (long long)c->expires;
	r->lm = (long long)c->last_modified;
	r->q = c->q;
	r->flags = c->flags;
	r->cflags = c->cflags;
	r->methods = c->methods;
	r->reg_id = c->reg_id;
	r->server_id = c->server_id;
	r->next = NULL;
	return r;
}

static void sc_batch_contact(sc_batch_t *b, const sc_rcopy_t *c)
{
	srjson_t *o;

	if(sc_batch_begin(b) < 0)
		return;
	o = srjson_CreateObject(&b->doc);
	/* dmq_usrloc's field names: the same object serves its own messages
	 * (bulk, with its action) and the sync's */
	if(b->bulk)
		sc_jnum(&b->doc, o, "action", SC_DMQ_UL_UPDATE);
	sc_jstr(&b->doc, o, "aor", &c->aor);
	sc_jstr(&b->doc, o, "ruid", &c->ruid);
	sc_jstr(&b->doc, o, "c", &c->c);
	sc_jstr(&b->doc, o, "received", &c->received);
	sc_jstr(&b->doc, o, "path", &c->path);
	sc_jstr(&b->doc, o, "callid", &c->callid);
	sc_jstr(&b->doc, o, "user_agent", &c->ua);
	sc_jstr(&b->doc, o, "instance", &c->instance);
	sc_jnum(&b->doc, o, "expires", (double)c->expires);
	sc_jnum(&b->doc, o, "cseq", c->cseq);
	sc_jnum(&b->doc, o, "flags", c->flags);
	sc_jnum(&b->doc, o, "cflags", c->cflags);
	sc_jnum(&b->doc, o, "q", c->q);
	sc_jnum(&b->doc, o, "last_modified", (double)c->lm);
	sc_jnum(&b->doc, o, "methods", c->methods);
	sc_jnum(&b->doc, o, "reg_id", c->reg_id);
	sc_jnum(&b->doc, o, "server_id", c->server_id);
	srjson_AddItemToArray(&b->doc, b->r, o);
	b->count++;
	b->total++;
	/* what the JSON will take: the strings (escaping aside) and the keys
	 * and numbers */
	b->size += 260 + c->aor.len + c->c.len + c->ruid.len + c->received.len
			   + c->path.len + c->callid.len + c->ua.len + c->instance.len;
	if(b->size >= sc_sync_batch)
		sc_batch_flush(b);
}

static void sc_batch_tomb(sc_batch_t *b, const sc_tomb_t *t)
{
	srjson_t *o;

	if(sc_batch_begin(b) < 0)
		return;
	o = srjson_CreateObject(&b->doc);
	sc_jstr(&b->doc, o, "a", &t->aor);
	sc_jstr(&b->doc, o, "c", &t->contact);
	sc_jstr(&b->doc, o, "ci", &t->v.callid);
	sc_jnum(&b->doc, o, "cs", t->v.cseq);
	sc_jnum(&b->doc, o, "at", (double)t->v.at);
	sc_jnum(&b->doc, o, "un", (double)t->until);
	srjson_AddItemToArray(&b->doc, b->x, o);
	b->count++;
	b->total++;
	b->size += 96 + t->aor.len + t->contact.len + t->v.callid.len;
	if(b->size >= sc_sync_batch)
		sc_batch_flush(b);
}

/* a copy of the tombstones of the buckets in bm (taken under tlock,
 * sent without it) */
typedef struct sc_tcopy
{
	struct sc_tcopy *next;
	sc_tomb_t t;
} sc_tcopy_t;

static sc_tcopy_t *sc_tombs_copy(const unsigned char *bm)
{
	sc_tcopy_t *head = NULL, *n;
	sc_tomb_t *e;
	int i, len;

	lock_get(&sc_sy->tlock);
	for(i = 0; i < SC_SYNC_NB; i++) {
		if(!SC_BIT_GET(bm, i))
			continue;
		for(e = sc_sy->tombs->b[i]; e; e = e->next) {
			len = e->aor.len + e->contact.len + e->v.callid.len;
			n = pkg_malloc(sizeof(*n) + len);
			if(n == NULL) {
				PKG_MEM_ERROR;
				goto done;
			}
			n->t = *e;
			n->t.aor.s = n->t.data;
			memcpy(n->t.aor.s, e->aor.s, e->aor.len);
			n->t.contact.s = n->t.data + e->aor.len;
			memcpy(n->t.contact.s, e->contact.s, e->contact.len);
			n->t.v.callid.s = n->t.data + e->aor.len + e->contact.len;
			memcpy(n->t.v.callid.s, e->v.callid.s, e->v.callid.len);
			n->next = head;
			head = n;
		}
	}
done:
	lock_release(&sc_sy->tlock);
	return head;
}

/* send our bindings and tombstones of the buckets in bm to the peer */
static int sc_sync_push(const char *uri, const unsigned char *bm, int bulk)
{
	sc_batch_t b;
	char self[SC_NAME_MAX + 1];
	int slot, nslots;
	urecord_t *r;
	ucontact_t *c;
	sc_tcopy_t *tc, *n;
	sc_rcopy_t *head, **tail, *rc, *rn;
	long long now = sc_wall_s();

	memset(&b, 0, sizeof(b));
	b.uri = uri;
	/* a peer that holds nothing yet gets the bindings in dmq_usrloc's
	 * format: applied without being broadcast again (no version to
	 * protect there) */
	b.bulk = bulk && sc_ul_peer.peer_id.len > 0;
	b.self = sc_self_name(self, sizeof(self));
	/* a bucket is the aorhash modulo SC_SYNC_NB; a slot the aorhash
	 * modulo the table size: walk the slots that hold the bucket */
	nslots = SC_UL_SLOTS(sc_dom);
	for(slot = 0; slot < nslots; slot++) {
		if(nslots >= SC_SYNC_NB) {
			if(!SC_BIT_GET(bm, slot & (SC_SYNC_NB - 1)))
				continue;
		}
		/* copied out under the slot lock, sent (tm) without it */
		head = NULL;
		tail = &head;
		SC_UL_SLOT_LOCK(sc_dom, slot);
		for(r = SC_UL_SLOT_FIRST(sc_dom, slot); r; r = r->next) {
			if(!SC_BIT_GET(bm, r->aorhash & (SC_SYNC_NB - 1)))
				continue;
			for(c = r->contacts; c; c = c->next) {
				if(c->expires != 0 && c->expires <= now)
					continue;
				if((*tail = sc_rcopy_new(&r->aor, c)) != NULL)
					tail = &(*tail)->next;
			}
		}
		SC_UL_SLOT_UNLOCK(sc_dom, slot);
		for(rc = head; rc; rc = rn) {
			rn = rc->next;
			sc_batch_contact(&b, rc);
			pkg_free(rc);
		}
	}
	if(b.bulk) {
		/* the tombstones in the sync's own format */
		sc_batch_flush(&b);
		b.bulk = 0;
	}
	tc = sc_tombs_copy(bm);
	for(; tc; tc = n) {
		n = tc->next;
		if(tc->t.until > now)
			sc_batch_tomb(&b, &tc->t);
		pkg_free(tc);
	}
	sc_batch_flush(&b);
	return b.total;
}

/* after an unregister (usrloc unlocked): its tombstones to every peer, so
 * that a copy a peer holds goes and an older one never comes back, even
 * when dmq_usrloc's delete is lost or overtaken */
void sc_sync_unreg_end(void)
{
	sc_unreg_tomb_t *u, *n;
	sc_sync_peer_t peers[SC_SYNC_MAX_PEERS];
	char self[SC_NAME_MAX + 1];
	sc_batch_t b;
	int i, np;

	sc_unreg_on = 0;
	if(sc_sy == NULL || sc_unreg_list == NULL)
		return;
	lock_get(&sc_sy->lock);
	np = sc_sy->npeers;
	memcpy(peers, sc_sy->peer, np * sizeof(peers[0]));
	lock_release(&sc_sy->lock);
	sc_self_name(self, sizeof(self));
	for(i = 0; i < np; i++) {
		memset(&b, 0, sizeof(b));
		b.uri = peers[i].uri;
		b.self = self;
		for(u = sc_unreg_list; u; u = u->next)
			sc_batch_tomb(&b, &u->t);
		sc_batch_flush(&b);
	}
	for(u = sc_unreg_list; u; u = n) {
		n = u->next;
		pkg_free(u);
	}
	sc_unreg_list = NULL;
}

/* ---- the sync process ---- */

static int sc_sync_send_digest(int idx, long long cut, int margin)
{
	sc_sync_peer_t p;
	srjson_doc_t doc;
	const sc_digest_t *dg;
	char *hex, self[SC_NAME_MAX + 1];
	unsigned int round;
	int r;

	dg = sc_sync_digest(cut, margin);
	if(dg == NULL)
		return -1;
	lock_get(&sc_sy->lock);
	round = ++sc_sy->round_seq;
	sc_sy->peer[idx].round = round;
	sc_sy->peer[idx].sent_ms = sc_wall_ms();
	p = sc_sy->peer[idx];
	lock_release(&sc_sy->lock);

	hex = pkg_malloc(SC_DIGEST_HEX_LEN + 1);
	if(hex == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	sc_digest_hex(dg->d, hex);
	hex[SC_DIGEST_HEX_LEN] = '\0';
	if(sc_json_start(&doc, "digest", sc_self_name(self, sizeof(self)), round)
			== NULL) {
		pkg_free(hex);
		return -1;
	}
	srjson_AddNumberToObject(&doc, doc.root, "cut", (double)cut);
	srjson_AddNumberToObject(&doc, doc.root, "margin", margin);
	srjson_AddNumberToObject(&doc, doc.root, "n", dg->count);
	srjson_AddItemToObject(&doc, doc.root, "d",
			srjson_CreateStr(&doc, hex, SC_DIGEST_HEX_LEN));
	r = sc_json_send(p.uri, &doc, sc_sync_digest_reply, sc_key(idx, round));
	srjson_DestroyDoc(&doc);
	pkg_free(hex);
	if(r == 0)
		update_stat(sc_st_sync_rounds, 1);
	return r;
}

static int sc_sync_send_done(
		const char *uri, unsigned int id, int diff, int records)
{
	srjson_doc_t doc;
	char self[SC_NAME_MAX + 1];
	int r;

	if(sc_json_start(&doc, "done", sc_self_name(self, sizeof(self)), id)
			== NULL)
		return -1;
	srjson_AddNumberToObject(&doc, doc.root, "diff", diff);
	srjson_AddNumberToObject(&doc, doc.root, "n", records);
	r = sc_json_send(uri, &doc, sc_sync_noop_reply, NULL);
	srjson_DestroyDoc(&doc);
	return r;
}

static int sc_sync_send_pull(
		const char *uri, unsigned int id, const unsigned char *bm)
{
	srjson_doc_t doc;
	char self[SC_NAME_MAX + 1], *list;
	int r, n;

	list = pkg_malloc(SC_SYNC_NB * 5 + 1);
	if(list == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	n = sc_bitmap_format(bm, list, SC_SYNC_NB * 5 + 1);
	if(n < 0
			|| sc_json_start(&doc, "pull", sc_self_name(self, sizeof(self)), id)
					   == NULL) {
		pkg_free(list);
		return -1;
	}
	srjson_AddItemToObject(
			&doc, doc.root, "b", srjson_CreateStr(&doc, list, n));
	r = sc_json_send(uri, &doc, sc_sync_noop_reply, NULL);
	srjson_DestroyDoc(&doc);
	pkg_free(list);
	return r;
}

static void sc_sync_job_run(sc_sync_job_t *j)
{
	sc_sync_peer_t *p;
	char uri[128];
	const sc_digest_t *dg;
	unsigned char bm[SC_SYNC_BITMAP];
	int diff, n, too_soon, bulk;
	long long hold, now_ms, last;

	lock_get(&sc_sy->lock);
	p = sc_sync_peer(j->peer);
	if(p == NULL) {
		lock_release(&sc_sy->lock);
		LM_WARN("sync request from '%s', not a proxy of the document\n",
				j->peer);
		return;
	}
	snprintf(uri, sizeof(uri), "%s", p->uri);
	now_ms = sc_wall_ms();
	hold = p->hold_ms - now_ms;
	last = p->ans_ms;
	too_soon = j->op == SC_JOB_DIGEST && p->ans_ms > 0
			   && now_ms - p->ans_ms < SC_SYNC_ANSWER_MIN_MS
			   && now_ms >= p->ans_ms;
	bulk = j->op == SC_JOB_DIGEST && j->n == 0
		   && (p->bulk_ms == 0 || now_ms - p->bulk_ms >= SC_SYNC_BULK_MIN_MS
				   || now_ms < p->bulk_ms);
	if(j->op == SC_JOB_DIGEST && hold <= 0 && !too_soon) {
		p->ans_ms = now_ms;
		if(bulk)
			p->bulk_ms = now_ms;
	}
	lock_release(&sc_sy->lock);

	if(too_soon) {
		LM_INFO("sync with %s: a digest %lld ms after the last one answered "
				"is not answered\n",
				j->peer, now_ms - last);
		return;
	}

	if(j->op == SC_JOB_DIGEST && hold > 0) {
		/* no answer: it goes on waiting (or times out its start-up wait)
		 * instead of being sent the same records again */
		LM_INFO("sync with %s: still applying our last push (%lld ms to "
				"go), its digest is not answered\n",
				j->peer, hold);
		return;
	}
	if(j->op == SC_JOB_DIGEST) {
		dg = sc_sync_digest(j->cut, j->margin);
		if(dg == NULL)
			return;
		diff = sc_digest_diff(dg->d, j->d, bm);
		n = 0;
		if(diff > 0) {
			/* ours of the buckets that differ, then ask for theirs */
			n = sc_sync_push(uri, bm, bulk);
			sc_sync_send_pull(uri, j->id, bm);
			LM_INFO("sync with %s: %d of %d buckets differ, sent %d "
					"records\n",
					j->peer, diff, SC_SYNC_NB, n);
		}
		sc_sync_send_done(uri, j->id, diff, n);
		lock_get(&sc_sy->lock);
		if((p = sc_sync_peer(j->peer)) != NULL) {
			p->last_diff = diff;
			p->rec_out += n;
			if(diff > 0)
				p->repairs++;
			if(n >= SC_SYNC_HOLD_MIN)
				p->hold_ms = sc_wall_ms() + n / SC_SYNC_APPLY_PER_MS;
		}
		lock_release(&sc_sy->lock);
		if(diff > 0)
			update_stat(sc_st_sync_repairs, 1);
	} else if(j->op == SC_JOB_PULL) {
		n = sc_sync_push(uri, j->bm, 0);
		lock_get(&sc_sy->lock);
		if((p = sc_sync_peer(j->peer)) != NULL)
			p->rec_out += n;
		lock_release(&sc_sy->lock);
	}
}

static int sc_sync_job_pop(sc_sync_job_t *out)
{
	int got = 0;

	lock_get(&sc_sy->lock);
	if(sc_sy->qn > 0) {
		memcpy(out, &sc_sy->q[sc_sy->qhead], sizeof(*out));
		sc_sy->qhead = (sc_sy->qhead + 1) % SC_SYNC_QLEN;
		sc_sy->qn--;
		got = 1;
	}
	lock_release(&sc_sy->lock);
	return got;
}

static int sc_sync_job_push(const sc_sync_job_t *j)
{
	int ok = 0;

	lock_get(&sc_sy->lock);
	if(sc_sy->qn < SC_SYNC_QLEN) {
		memcpy(&sc_sy->q[(sc_sy->qhead + sc_sy->qn) % SC_SYNC_QLEN], j,
				sizeof(*j));
		sc_sy->qn++;
		ok = 1;
	}
	lock_release(&sc_sy->lock);
	return ok;
}

void sc_sync_utimer(unsigned int ticks, void *param)
{
	static sc_sync_job_t *job = NULL;
	static long long last_gc = 0;
	int i, n, st[SC_SYNC_MAX_PEERS], ready, send[SC_SYNC_MAX_PEERS];
	long long now = sc_wall_s(), now_ms = sc_wall_ms(), cut;
	int full;

	if(sc_sy == NULL)
		return;
	if(job == NULL) {
		job = pkg_malloc(sizeof(*job));
		if(job == NULL) {
			PKG_MEM_ERROR;
			return;
		}
	}
	/* the journal is applied in the main process once usrloc has loaded
	 * the database (sc_sync_journal_apply): nothing before that, or a
	 * binding loaded late would miss its removal */
	if(sc_tomb_file && !SC_RD(sc_sy->jloaded))
		return;
	sc_journal_tick(now_ms);
	lock_get(&sc_sy->lock);
	sc_sync_peers_refresh();
	lock_release(&sc_sy->lock);
	/* a digest serves every peer and job of this tick, never a later one:
	 * merges in the DMQ workers change what a cut covers */
	sc_cache_valid = 0;

	/* what peers asked for */
	while(sc_sync_job_pop(job))
		sc_sync_job_run(job);

	if(now - last_gc >= 10) {
		static unsigned long evicted_seen = 0;
		static long long evicted_logged = 0;
		unsigned long ev;

		last_gc = now;
		lock_get(&sc_sy->tlock);
		sc_tombs_gc(sc_sy->tombs, now);
		ev = sc_sy->tombs->evicted;
		lock_release(&sc_sy->tlock);
		if(ev != evicted_seen
				&& now - evicted_logged >= (sc_log_interval > 0 ? sc_log_interval
																: 0)) {
			LM_WARN("%lu tombstones evicted by a full table (%lu in all): an "
					"unregister older than that may be undone by a stale "
					"copy; raise max_tombstones (%d)\n",
					ev - evicted_seen, ev, sc_max_tombstones);
			evicted_seen = ev;
			evicted_logged = now;
		}
	}

	/* whom to send a digest now */
	memset(send, 0, sizeof(send));
	lock_get(&sc_sy->lock);
	n = sc_sy->npeers;
	full = !sc_sy->ready;
	if(!sc_sy->ready) {
		for(i = 0; i < n; i++) {
			st[i] = sc_sy->peer[i].state;
			if(st[i] == SC_PEER_PENDING
					&& sc_sync_may_ask(now_ms, sc_sy->peer[i].sent_ms,
							sc_sy->peer[i].rec_ms, SC_SYNC_RETRY_MS, 0))
				send[i] = 1;
		}
		ready = sc_sync_ready(now, sc_sy->start, sc_sync_wait, st, n);
		if(ready) {
			int done = 0, down = 0;
			sc_sy->ready = 1;
			sc_sy->ready_at = now_ms;
			for(i = 0; i < n; i++) {
				if(st[i] == SC_PEER_DONE)
					done++;
				else
					down++;
			}
			LM_NOTICE("registration sync done after %lld ms: %d of %d peers "
					  "merged, %d did not answer; REGISTERs are accepted\n",
					now_ms - sc_sy->start * 1000, done, n, down);
			memset(send, 0, sizeof(send));
			sc_sy->next_round = now + sc_sync_interval;
		}
	} else if(sc_sync_interval > 0
			  && (now >= sc_sy->next_round || sc_sy->now_requested)) {
		for(i = 0; i < n; i++)
			if((sc_sy->peer[i].initiator || sc_sy->now_requested)
					&& sc_sync_may_ask(now_ms, sc_sy->peer[i].sent_ms,
							sc_sy->peer[i].rec_ms, SC_SYNC_RETRY_MS, 1))
				send[i] = 1;
		sc_sy->now_requested = 0;
		/* the next round on the interval's grid */
		sc_sy->next_round = (now / sc_sync_interval + 1) * sc_sync_interval;
	}
	lock_release(&sc_sy->lock);

	if(full) {
		/* start-up: everything, no settling time */
		cut = now;
		for(i = 0; i < n; i++)
			if(send[i])
				sc_sync_send_digest(i, cut, 0);
	} else {
		/* bindings modified in the last sync_settle s are still being
		 * replicated: compare what is older, on the grid */
		cut = ((now - sc_sync_settle) / sc_sync_interval) * sc_sync_interval;
		for(i = 0; i < n; i++)
			if(send[i])
				sc_sync_send_digest(i, cut, 2 * sc_sync_interval);
	}
	(void)ticks;
	(void)param;
}

/* ---- receiving (DMQ worker) ---- */

static ucontact_t *sc_find_contact(urecord_t *r, const str *c)
{
	ucontact_t *k;

	for(k = r->contacts; k; k = k->next)
		if(k->c.len == c->len && memcmp(k->c.s, c->s, c->len) == 0)
			return k;
	return NULL;
}

/* lock the AoR's usrloc slot and find our copy of (aor, c) and its
 * version; get_urecord()'s result (0: record found, to be released by
 * the caller, who also unlocks the slot) */
static int sc_lock_local(
		str *aor, str *c, urecord_t **r, ucontact_t **lc, sc_bver_t *v)
{
	int res;

	*lc = NULL;
	sc_ul->lock_udomain(sc_dom, aor);
	res = sc_ul->get_urecord(sc_dom, aor, r);
	if(res == 0)
		*lc = sc_find_contact(*r, c);
	if(*lc)
		sc_bver_of(*lc, v);
	return res;
}

/* the KDMQ being applied (for the log lines of a refusal) */
static sip_msg_t *sc_sync_msg = NULL;

/* a record a peer sent that no peer may send: refused, counted, logged at
 * most once per log_interval */
static void sc_sync_reject(sip_msg_t *msg, const char *what, const str *aor)
{
	char why[200];

	update_stat(sc_st_sync_rejected, 1);
	snprintf(why, sizeof(why), "sync %s of %.*s refused: beyond the clock "
			"plus sync_max_skew (%d s)", what, aor->len > 64 ? 64 : aor->len,
			aor->s, sc_sync_max_skew);
	if(msg == NULL) /* the tombstone journal: the clock went back */
		LM_WARN("%s (tombstone journal %s: has the clock gone back?)\n",
				why, sc_tomb_file ? sc_tomb_file : "");
	else
		sc_refuse_log(msg, 0, why);
}


static int sc_apply_binding(srjson_doc_t *d, srjson_t *o, long long now)
{
	sc_sync_rec_t rec;
	ucontact_info_t ci;
	sc_bver_t lv;
	sc_tomb_t *t;
	urecord_t *r = NULL;
	ucontact_t *lc = NULL;
	int res, dec;
	unsigned int h;

	if(sc_sync_rec_parse(d, o, &rec) < 0)
		return -1;
	if(rec.v.expires != 0 && rec.v.expires <= now)
		return 0;
	/* a far-future version would beat every later copy for ever */
	if(!sc_sync_time_ok(rec.v.lm, now, sc_sync_max_skew)
			|| (rec.v.expires != 0 && sc_sy_max_expires > 0
					&& !sc_sync_time_ok(rec.v.expires,
							now + sc_sy_max_expires, sc_sync_max_skew))) {
		sc_sync_reject(sc_sync_msg, "binding", &rec.aor);
		return 0;
	}

	h = sc_ul->get_aorhash(&rec.aor);
	res = sc_lock_local(&rec.aor, &rec.c, &r, &lc, &lv);
	/* the decision is pure: taken under the tombstone lock (after the
	 * usrloc slot lock, the order everywhere) */
	lock_get(&sc_sy->tlock);
	t = sc_tombs_get(sc_sy->tombs, h, &rec.aor, &rec.c);
	dec = sc_sync_decide(lc ? &lv : NULL, t ? &t->v : NULL, &rec.v, now);
	lock_release(&sc_sy->tlock);
	if(dec == SC_SYNC_SKIP) {
		if(res == 0)
			sc_ul->release_urecord(r);
		sc_ul->unlock_udomain(sc_dom, &rec.aor);
		return 0;
	}
	memset(&ci, 0, sizeof(ci));
	ci.ruid = rec.ruid;
	ci.c = &rec.c;
	ci.received = rec.received;
	ci.path = &rec.path;
	ci.expires = (time_t)rec.v.expires;
	ci.q = (qvalue_t)rec.q;
	ci.callid = &rec.v.callid;
	ci.cseq = rec.v.cseq;
	ci.flags = rec.flags;
	ci.cflags = rec.cflags;
	ci.user_agent = &rec.ua;
	ci.sock = NULL;
	ci.methods = rec.methods;
	ci.instance = rec.instance;
	ci.reg_id = rec.reg_id;
	ci.server_id = rec.server_id;
	ci.tcpconn_id = -1;
	ci.last_modified = (time_t)rec.v.lm;
	if(res > 0) {
		if(sc_ul->insert_urecord(sc_dom, &rec.aor, &r) < 0) {
			sc_ul->unlock_udomain(sc_dom, &rec.aor);
			return -1;
		}
	} else if(res < 0) {
		sc_ul->unlock_udomain(sc_dom, &rec.aor);
		return -1;
	}
	if(dec == SC_SYNC_INSERT) {
		if(sc_ul->insert_ucontact(r, &rec.c, &ci, &lc) < 0)
			LM_ERR("cannot insert the synced binding %.*s of %.*s\n", rec.c.len,
					rec.c.s, rec.aor.len, rec.aor.s);
	} else {
		/* the local copy keeps its ruid */
		ci.ruid = lc->ruid;
		if(sc_ul->update_ucontact(r, lc, &ci) < 0)
			LM_ERR("cannot update the synced binding %.*s of %.*s\n", rec.c.len,
					rec.c.s, rec.aor.len, rec.aor.s);
	}
	sc_ul->release_urecord(r);
	sc_ul->unlock_udomain(sc_dom, &rec.aor);
	return 1;
}

static int sc_apply_tomb(srjson_doc_t *d, srjson_t *o, long long now)
{
	sc_sync_tin_t in;
	sc_bver_t lv;
	urecord_t *r = NULL;
	ucontact_t *lc = NULL;
	long long until;
	int res, dec, applied = 0;
	unsigned int h;

	if(sc_sync_tomb_parse(d, o, &in) < 0)
		return -1;
	until = in.until;
	if(until <= now)
		return 0;
	if(!sc_sync_time_ok(in.v.at, now, sc_sync_max_skew)) {
		sc_sync_reject(sc_sync_msg, "tombstone", &in.aor);
		return 0;
	}
	/* no longer than the deleted binding could have lived */
	until = sc_sync_until_bound(until, now, sc_sync_max_skew, sc_sy_max_expires);
	h = sc_ul->get_aorhash(&in.aor);
	res = sc_lock_local(&in.aor, &in.c, &r, &lc, &lv);
	dec = sc_sync_decide_tomb(lc ? &lv : NULL, &in.v);
	if(dec == SC_SYNC_DELETE) {
		/* the usrloc callback records this tombstone, not one made of
		 * the local copy */
		sc_del_ctx = &in.v;
		sc_ul->delete_ucontact(r, lc);
		sc_del_ctx = NULL;
		applied = 1;
	}
	if(res == 0)
		sc_ul->release_urecord(r);
	sc_ul->unlock_udomain(sc_dom, &in.aor);
	if(dec == SC_SYNC_INSERT) {
		lock_get(&sc_sy->tlock);
		if(sc_tombs_put(sc_sy->tombs, h, &in.aor, &in.c, &in.v, until) == 0)
			sc_journal_append(&in.aor, &in.c, &in.v, until);
		lock_release(&sc_sy->tlock);
	}
	return applied;
}

/* is the message from the proxy it names, over the cluster channel (TCP or
 * TLS from its address and listen port: sc_topo_peer_by_src)? */
static int sc_sync_sender_ok(sip_msg_t *msg, const str *name)
{
	sc_view_t *v = sc_view_get();
	sc_proxy_t *p = sc_src_peer(v, msg);
	int ok = p != NULL && p->name.len == name->len
			 && memcmp(p->name.s, name->s, name->len) == 0;

	sc_view_put();
	return ok;
}

static int sc_sync_dmq_cb(
		struct sip_msg *msg, peer_reponse_t *resp, dmq_node_t *node)
{
	srjson_doc_t doc;
	srjson_t *it;
	sc_sync_env_t env;
	str body, op, from, s;
	char *buf = NULL;
	sc_sync_job_t *job = NULL;
	sc_sync_peer_t *p;
	long long now = sc_wall_s();
	int n = 0, len;

	resp->resp_code = 400;
	resp->reason = sc_dmq_bad;
	srjson_InitDoc(&doc, NULL);
	/* authenticate before parsing anything: the cluster channel */
	if(sc_src_peer(sc_view_get(), msg) == NULL) {
		sc_view_put();
		LM_WARN("sync message from %s:%d (%s) ignored: only a cluster proxy "
				"over TCP/TLS from its listen address\n",
				ip_addr2a(&msg->rcv.src_ip), msg->rcv.src_port,
				proto2a(msg->rcv.proto));
		goto done;
	}
	sc_view_put();
	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		goto done;
	body.s = get_body(msg);
	if(body.s == NULL || msg->content_length == NULL)
		goto done;
	len = get_content_length(msg);
	if(len <= 0 || !sc_json_precheck(body.s, len, SC_JSON_MAX_DEPTH))
		goto done;
	/* a NUL-terminated copy for the parser */
	buf = pkg_malloc(len + 1);
	if(buf == NULL) {
		PKG_MEM_ERROR;
		goto done;
	}
	memcpy(buf, body.s, len);
	buf[len] = '\0';
	doc.root = srjson_Parse(&doc, buf);
	if(sc_sync_env_parse(&doc, &env) < 0) {
		LM_WARN("malformed sync message from %s\n",
				ip_addr2a(&msg->rcv.src_ip));
		goto done;
	}
	op = env.op;
	from = env.from;
	if(!sc_sync_sender_ok(msg, &from)) {
		LM_WARN("sync message claiming to be from '%.*s' sent by %s:%d "
				"(%s): ignored (only a cluster proxy over TCP/TLS from its "
				"listen address)\n",
				from.len, from.s, ip_addr2a(&msg->rcv.src_ip),
				msg->rcv.src_port, proto2a(msg->rcv.proto));
		goto done;
	}
	if(op.len == 3 && memcmp(op.s, "rec", 3) == 0) {
		sc_sync_msg = msg;
		if(env.r)
			for(it = env.r->child; it; it = it->next)
				if(sc_apply_binding(&doc, it, now) > 0)
					n++;
		if(env.x)
			for(it = env.x->child; it; it = it->next)
				if(sc_apply_tomb(&doc, it, now) > 0)
					n++;
		sc_sync_msg = NULL;
		if(n)
			update_stat(sc_st_sync_applied, n);
		lock_get(&sc_sy->lock);
		p = sc_sync_peer(from.s);
		if(p) {
			p->rec_in += n;
			p->rec_ms = sc_wall_ms();
		}
		lock_release(&sc_sy->lock);
	} else if(op.len == 4 && memcmp(op.s, "done", 4) == 0) {
		unsigned int id = env.id;
		lock_get(&sc_sy->lock);
		p = sc_sync_peer(from.s);
		/* any of our rounds: while a large push is still being applied we
		 * retry every second and the peer holds those digests, so its
		 * "done" answers an earlier round (it was taken for the latest
		 * only, and a fresh replica of 400,000 bindings waited for
		 * sync_wait instead of 4 s) */
		if(p && id != 0 && id <= p->round) {
			p->state = SC_PEER_DONE;
			p->done_ms = sc_wall_ms();
			p->last_diff = (int)sc_jget_num(&doc, doc.root, "diff");
			if(p->last_diff > 0)
				p->repairs++;
		}
		lock_release(&sc_sy->lock);
	} else if((op.len == 6 && memcmp(op.s, "digest", 6) == 0)
			  || (op.len == 4 && memcmp(op.s, "pull", 4) == 0)) {
		if(op.s[0] == 'd') {
			/* the peer is up: while starting, ask it again now instead of
			 * at the next retry */
			lock_get(&sc_sy->lock);
			p = sc_sync_peer(from.s);
			if(p && !sc_sy->ready && p->state != SC_PEER_DONE) {
				p->state = SC_PEER_PENDING;
				p->sent_ms = 0;
			}
			lock_release(&sc_sy->lock);
		}
		job = pkg_malloc(sizeof(*job));
		if(job == NULL) {
			PKG_MEM_ERROR;
			goto done;
		}
		memset(job, 0, sizeof(*job));
		memcpy(job->peer, from.s, from.len);
		job->id = (unsigned int)sc_jget_num(&doc, doc.root, "id");
		if(op.s[0] == 'd') {
			job->op = SC_JOB_DIGEST;
			job->cut = sc_jget_num(&doc, doc.root, "cut");
			job->n = sc_jget_num(&doc, doc.root, "n");
			job->margin = (int)sc_jget_num(&doc, doc.root, "margin");
			if(sc_jget_str(&doc, doc.root, "d", &s) < 0
					|| sc_digest_unhex(s.s, s.len, job->d) < 0)
				goto done;
		} else {
			job->op = SC_JOB_PULL;
			if(sc_jget_str(&doc, doc.root, "b", &s) < 0
					|| sc_bitmap_parse(s.s, s.len, job->bm) < 0)
				goto done;
		}
		if(!sc_sync_job_push(job)) {
			resp->resp_code = 503;
			resp->reason = sc_dmq_busy;
			goto done;
		}
	} else {
		goto done;
	}
	resp->resp_code = 200;
	resp->reason = sc_dmq_ok;
done:
	srjson_DestroyDoc(&doc);
	if(buf)
		pkg_free(buf);
	if(job)
		pkg_free(job);
	return 0;
}

/* ---- set-up ---- */

/* child_init(PROC_SIPINIT), main process: usrloc preloads the database
 * at this rank (its load_rank, the default) and its child_init runs before
 * ours (modules are initialised in load order), so every binding of the
 * database is in memory here. Measured before this: with the journal read
 * by the sync process at its first tick, that tick raced the preload and
 * removed 0 to 23 of 30 (a power-cut drill on Kamailio 6.0 got 9 removed
 * bindings back). */
int sc_sync_journal_apply(void)
{
	if(sc_sy == NULL || sc_tomb_file == NULL || sc_sy->jloaded)
		return 0;
	sc_journal_load(sc_wall_s());
	return 0;
}

int sc_sync_init(void *ul_api, void *dom, int max_expires)
{
	dmq_peer_t peer;

	sc_sy_max_expires = max_expires;
	if(sc_sync_interval < 0 || sc_sync_wait < 0 || sc_sync_settle < 0
			|| (sc_sync_interval > 0
					&& sc_sync_settle >= 4 * sc_sync_interval)) {
		LM_ERR("sync_interval, sync_wait, sync_settle must be >= 0 and "
			   "sync_settle < 4 x sync_interval\n");
		return -1;
	}
	if(sc_sync_batch < 4000 || sc_sync_batch > 60000) {
		LM_ERR("sync_batch must be 4000 to 60000 bytes\n");
		return -1;
	}
	if(ul_api == NULL || dom == NULL) {
		LM_INFO("no usrloc: registration sync is off\n");
		return 0;
	}
	if(find_export("bind_dmq", 0, 0) == NULL) {
		LM_INFO("dmq not loaded: registration sync is off (a single proxy)\n");
		return 0;
	}
	if(dmq_load_api(&sc_dmq) < 0) {
		LM_ERR("cannot bind the dmq API: load dmq.so before sipcluster.so\n");
		return -1;
	}
	sc_ul = (usrloc_api_t *)ul_api;
	sc_dom = (udomain_t *)dom;
	if(sc_ul->db_mode == DB_ONLY) {
		LM_INFO("usrloc db_mode 3 (the database is shared): registration "
				"sync is off\n");
		return 0;
	}
	sc_sy = shm_mallocxz(sizeof(*sc_sy));
	if(sc_sy == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	if(lock_init(&sc_sy->lock) == NULL || lock_init(&sc_sy->tlock) == NULL) {
		LM_ERR("cannot init the sync locks\n");
		return -1;
	}
	sc_sy->tombs = sc_tombs_new(sc_max_tombstones);
	if(sc_sy->tombs == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	sc_sy->start = sc_wall_s();
	sc_sy->topo_gen = 0;
	memset(&peer, 0, sizeof(peer));
	peer.callback = sc_sync_dmq_cb;
	peer.init_callback = NULL;
	peer.description.s = "sipcluster";
	peer.description.len = 10;
	peer.peer_id.s = "sipcluster";
	peer.peer_id.len = 10;
	sc_dmq_peer = sc_dmq.register_dmq_peer(&peer);
	memset(&sc_ul_peer, 0, sizeof(sc_ul_peer));
	if(find_module_by_name("dmq_usrloc") != NULL) {
		sc_ul_peer.peer_id.s = SC_DMQ_UL_PEER;
		sc_ul_peer.peer_id.len = 6;
		sc_ul_peer.description = sc_ul_peer.peer_id;
	}
	if(sc_dmq_peer == NULL) {
		LM_ERR("cannot register the DMQ peer 'sipcluster'\n");
		return -1;
	}
	if(sc_ul->register_ulcb(
			   UL_CONTACT_INSERT | UL_CONTACT_UPDATE | UL_CONTACT_DELETE,
			   sc_sync_ulcb, NULL)
			< 0) {
		LM_ERR("cannot register the usrloc callbacks\n");
		return -1;
	}
	lock_get(&sc_sy->lock);
	sc_sync_peers_refresh();
	if(sc_sy->npeers == 0) {
		sc_sy->ready = 1;
		sc_sy->ready_at = sc_wall_ms();
	}
	lock_release(&sc_sy->lock);
	LM_INFO("registration sync with %d peers every %d s (settle %d s, "
			"start-up wait %d s)\n",
			sc_sy->npeers, sc_sync_interval, sc_sync_settle, sc_sync_wait);
	return 0;
}

void sc_sync_destroy(void)
{
	if(sc_sy == NULL)
		return;
	if(sc_sy->tombs)
		sc_tombs_free(sc_sy->tombs);
	lock_destroy(&sc_sy->lock);
	lock_destroy(&sc_sy->tlock);
	shm_free(sc_sy);
	sc_sy = NULL;
}

/* ---- RPC ---- */

static const char *sc_peer_state_name(int st)
{
	switch(st) {
		case SC_PEER_DONE:
			return "done";
		case SC_PEER_DOWN:
			return "no answer";
	}
	return "pending";
}

static void sc_rpc_sync_status(rpc_t *rpc, void *ctx)
{
	void *th, *ah, *ph;
	sc_sync_peer_t peers[SC_SYNC_MAX_PEERS];
	int i, n, ready, tombs;
	unsigned long evicted;
	long long start, ready_at, now_ms = sc_wall_ms();

	if(sc_sy == NULL) {
		rpc->fault(ctx, 500, "registration sync is off (no dmq or usrloc)");
		return;
	}
	lock_get(&sc_sy->lock);
	n = sc_sy->npeers;
	memcpy(peers, sc_sy->peer, n * sizeof(peers[0]));
	ready = sc_sy->ready;
	start = sc_sy->start;
	ready_at = sc_sy->ready_at;
	lock_release(&sc_sy->lock);
	lock_get(&sc_sy->tlock);
	tombs = sc_sy->tombs->n;
	evicted = sc_sy->tombs->evicted;
	lock_release(&sc_sy->tlock);
	if(rpc->add(ctx, "{", &th) < 0)
		return;
	rpc->struct_add(th, "sddddd", "ready", ready ? "yes" : "no",
			"ready_after_ms", ready ? (int)(ready_at - start * 1000) : -1,
			"interval", sc_sync_interval, "tombstones", tombs,
			"tombstones_evicted", (int)evicted, "buckets", SC_SYNC_NB);
	if(rpc->struct_add(th, "[", "PEERS", &ah) < 0)
		return;
	for(i = 0; i < n; i++) {
		if(rpc->array_add(ah, "{", &ph) < 0)
			return;
		rpc->struct_add(ph, "ssdss", "name", peers[i].name, "uri", peers[i].uri,
				"server_id", peers[i].server_id, "initiator",
				peers[i].initiator ? "yes" : "no", "state",
				sc_peer_state_name(peers[i].state));
		rpc->struct_add(ph, "dddduuu", "last_code", peers[i].last_code,
				"last_sent_age_ms",
				peers[i].sent_ms ? (int)(now_ms - peers[i].sent_ms) : -1,
				"last_done_age_ms",
				peers[i].done_ms ? (int)(now_ms - peers[i].done_ms) : -1,
				"last_diff_buckets", peers[i].last_diff, "records_in",
				(unsigned)peers[i].rec_in, "records_out",
				(unsigned)peers[i].rec_out, "repairs",
				(unsigned)peers[i].repairs);
	}
}

static const char *sc_rpc_sync_status_doc[2] = {
		"Registration sync: whether REGISTERs are accepted yet, and per peer "
		"the last exchange (state, buckets that differed, records in and "
		"out)",
		0};

static void sc_rpc_sync_now(rpc_t *rpc, void *ctx)
{
	if(sc_sy == NULL) {
		rpc->fault(ctx, 500, "registration sync is off (no dmq or usrloc)");
		return;
	}
	lock_get(&sc_sy->lock);
	sc_sy->now_requested = 1;
	lock_release(&sc_sy->lock);
	rpc->rpl_printf(ctx, "a digest exchange with every peer is scheduled");
}

static const char *sc_rpc_sync_now_doc[2] = {
		"Compare the bindings with every peer now (repairs what differs)", 0};

static rpc_export_t sc_sync_rpc_cmds[] = {
		{"sipcluster.sync_status", sc_rpc_sync_status, sc_rpc_sync_status_doc,
				0},
		{"sipcluster.sync_now", sc_rpc_sync_now, sc_rpc_sync_now_doc, 0},
		{0, 0, 0, 0}};

int sc_sync_rpc_init(void)
{
	if(rpc_register_array(sc_sync_rpc_cmds) != 0) {
		LM_ERR("cannot register the sync RPC commands\n");
		return -1;
	}
	return 0;
}
