/*
 * sipcluster - cluster document parsing (libxml2 + XML Schema) and topology
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>
#include <errno.h>
#include <stdarg.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>

#include "../../core/dprint.h"
#include "../../core/mem/shm.h"

#include "sc_topo.h"
#include "sc_schema.h"

#define SC_URI_MAX 80
#define SC_ALIGN(x) (((x) + 7) & ~((size_t)7))

/* 1 while sc_topo_check_file() builds in the process heap (before shm
 * exists: kamailio -c) */
static int sc_topo_heap = 0;

/* first libxml2 error of a parse or a validation */
typedef struct sc_xml_errctx
{
	sc_error_t *err;
	int seen;
} sc_xml_errctx_t;

/* record an error: the first one stays in err, every one goes to each */
static void sc_err_set(
		sc_error_t *err, const char *file, int line, const char *fmt, ...)
{
	sc_error_t e;
	va_list ap;
	int n;

	if(err == NULL)
		return;
	memset(&e, 0, sizeof(e));
	snprintf(e.file, sizeof(e.file), "%s", file ? file : "?");
	e.line = line;
	va_start(ap, fmt);
	vsnprintf(e.reason, sizeof(e.reason), fmt, ap);
	va_end(ap);
	/* libxml2 messages end in a newline */
	n = strlen(e.reason);
	while(n > 0
			&& (e.reason[n - 1] == '\n' || e.reason[n - 1] == ' '
					|| e.reason[n - 1] == '\r'))
		e.reason[--n] = '\0';
	if(err->count == 0) {
		memcpy(err->file, e.file, sizeof(err->file));
		err->line = e.line;
		memcpy(err->reason, e.reason, sizeof(err->reason));
	}
	err->count++;
	if(err->each)
		err->each(&e, err->each_arg);
}

static void sc_xml_structured_err(void *ud, xmlErrorPtr e)
{
	sc_xml_errctx_t *ctx = (sc_xml_errctx_t *)ud;

	if(ctx == NULL || e == NULL)
		return;
	if(e->level < XML_ERR_ERROR)
		return;
	/* every one: the first stays in ctx->err */
	ctx->seen = 1;
	sc_err_set(ctx->err, e->file ? e->file : ctx->err->file, e->line, "%s",
			e->message ? e->message : "XML error");
}

/* libxml2 also reports some schema-parser problems through the generic
 * handler; swallow them (the structured handler got the first one) */
static void sc_xml_generic_err(void *ud, const char *msg, ...)
{
}

int sc_error_format(const sc_error_t *err, char *buf, int len)
{
	if(err->line > 0)
		return snprintf(
				buf, len, "%s:%d: %s", err->file, err->line, err->reason);
	return snprintf(buf, len, "%s: %s", err->file, err->reason);
}

const char *sc_transport_name(int transport)
{
	switch(transport) {
		case SC_TP_UDP:
			return "udp";
		case SC_TP_TCP:
			return "tcp";
		case SC_TP_TLS:
			return "tls";
		case SC_TP_SCTP:
			return "sctp";
	}
	return "unknown";
}

const char *sc_role_name(int role)
{
	return role == SC_ROLE_BACKUP ? "backup" : "primary";
}

static int sc_admin_parse(xmlNodePtr n)
{
	char *v = (char *)xmlGetProp(n, (const xmlChar *)"admin");
	int a = SC_ADMIN_AUTO;

	if(v == NULL)
		return a;
	if(strcmp(v, "active") == 0)
		a = SC_ADMIN_ACTIVE;
	else if(strcmp(v, "out-of-service") == 0)
		a = SC_ADMIN_OOS;
	xmlFree(v);
	return a;
}

static int sc_transport_parse(const char *s)
{
	if(s == NULL || *s == '\0' || strcmp(s, "udp") == 0)
		return SC_TP_UDP;
	if(strcmp(s, "tcp") == 0)
		return SC_TP_TCP;
	if(strcmp(s, "tls") == 0)
		return SC_TP_TLS;
	if(strcmp(s, "sctp") == 0)
		return SC_TP_SCTP;
	return -1;
}

int sc_ip_parse(const char *s, int len, sc_ip_t *ip)
{
	char buf[64];

	if(s == NULL || len <= 0 || len >= (int)sizeof(buf))
		return -1;
	/* accept [v6] too */
	if(s[0] == '[' && len > 2 && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(ip, 0, sizeof(*ip));
	if(inet_pton(AF_INET, buf, ip->ip) == 1) {
		ip->af = AF_INET;
		return 0;
	}
	if(inet_pton(AF_INET6, buf, ip->ip) == 1) {
		ip->af = AF_INET6;
		return 0;
	}
	return -1;
}

int sc_ip_eq(const sc_ip_t *a, const sc_ip_t *b)
{
	if(a->af != b->af)
		return 0;
	return memcmp(a->ip, b->ip, a->af == AF_INET ? 4 : 16) == 0;
}

/* ---- document walking helpers ---- */

static int sc_is_elem(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE
		   && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* attribute value as a libxml2-allocated string (xmlFree) or NULL */
static char *sc_attr(xmlNodePtr n, const char *name)
{
	return (char *)xmlGetProp(n, (const xmlChar *)name);
}

static int sc_attr_len(xmlNodePtr n, const char *name)
{
	char *v = sc_attr(n, name);
	int l = v ? (int)strlen(v) : 0;
	if(v)
		xmlFree(v);
	return l;
}

static int sc_attr_int(xmlNodePtr n, const char *name, int dflt)
{
	char *v = sc_attr(n, name);
	long l;
	char *end;

	if(v == NULL)
		return dflt;
	errno = 0;
	l = strtol(v, &end, 10);
	if(errno || end == v || *end != '\0')
		l = dflt;
	xmlFree(v);
	return (int)l;
}

/* bump allocator over the single block */
typedef struct sc_arena
{
	char *p;
	char *end;
} sc_arena_t;

static void *sc_arena_get(sc_arena_t *a, size_t n)
{
	void *r;

	n = SC_ALIGN(n);
	if(a->p + n > a->end)
		return NULL;
	r = a->p;
	a->p += n;
	return r;
}

static int sc_arena_str(sc_arena_t *a, str *dst, const char *s, int len)
{
	char *p = sc_arena_get(a, len + 1);
	if(p == NULL)
		return -1;
	memcpy(p, s, len);
	p[len] = '\0';
	dst->s = p;
	dst->len = len;
	return 0;
}

static int sc_arena_attr(
		sc_arena_t *a, str *dst, xmlNodePtr n, const char *name)
{
	char *v = sc_attr(n, name);
	int r;

	if(v == NULL) {
		dst->s = NULL;
		dst->len = 0;
		return 0;
	}
	r = sc_arena_str(a, dst, v, strlen(v));
	xmlFree(v);
	return r;
}

static int sc_make_uri(
		sc_arena_t *a, str *dst, const str *addr, int port, int transport)
{
	char buf[SC_URI_MAX];
	int v6 = (memchr(addr->s, ':', addr->len) != NULL);
	int n;

	n = snprintf(buf, sizeof(buf), "sip:%s%.*s%s:%d%s%s", v6 ? "[" : "",
			addr->len, addr->s, v6 ? "]" : "", port,
			transport != SC_TP_UDP ? ";transport=" : "",
			transport != SC_TP_UDP ? sc_transport_name(transport) : "");
	if(n < 0 || n >= (int)sizeof(buf))
		return -1;
	return sc_arena_str(a, dst, buf, n);
}

static int sc_str_eq(const str *a, const str *b)
{
	return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* rr_host = name[:port] (the schema checked the syntax) */
static void sc_rr_host_split(sc_proxy_t *p)
{
	char *c;

	p->rr_name = p->rr_host;
	p->rr_port = 0;
	if(p->rr_host.len <= 0)
		return;
	c = memchr(p->rr_host.s, ':', p->rr_host.len);
	if(c == NULL)
		return;
	p->rr_name.len = (int)(c - p->rr_host.s);
	p->rr_port = atoi(c + 1);
}

static int sc_str_caseeq(const str *a, const str *b)
{
	return a->len == b->len
		   && (a->len == 0 || strncasecmp(a->s, b->s, a->len) == 0);
}

/* ---- load-time indexes ---- */

static unsigned int sc_hash_bytes(const void *p, int len)
{
	const unsigned char *c = (const unsigned char *)p;
	unsigned int h = 2166136261u;
	int i;

	for(i = 0; i < len; i++) {
		h ^= c[i];
		h *= 16777619u;
	}
	return h;
}

/* the same over a host name, case-insensitive */
static unsigned int sc_hash_lower(const char *p, int len)
{
	unsigned int h = 2166136261u;
	int i;

	for(i = 0; i < len; i++) {
		h ^= (unsigned char)tolower((unsigned char)p[i]);
		h *= 16777619u;
	}
	return h;
}

static unsigned int sc_hash_ip(const sc_ip_t *ip)
{
	return sc_hash_bytes(ip->ip, ip->af == AF_INET ? 4 : 16);
}

static unsigned int sc_index_size(int n)
{
	unsigned int s = 8;
	while(s < (unsigned int)(2 * n))
		s <<= 1;
	return s;
}

static int sc_index_alloc(sc_arena_t *a, sc_index_t *x, int n)
{
	unsigned int i;

	x->size = sc_index_size(n);
	x->head = sc_arena_get(a, x->size * sizeof(int));
	x->next = sc_arena_get(a, (n > 0 ? n : 1) * sizeof(int));
	if(x->head == NULL || x->next == NULL)
		return -1;
	for(i = 0; i < x->size; i++)
		x->head[i] = -1;
	return 0;
}

static size_t sc_index_bytes(int n)
{
	return SC_ALIGN(sc_index_size(n) * sizeof(int))
		   + SC_ALIGN((n > 0 ? n : 1) * sizeof(int));
}

static void sc_index_add(sc_index_t *x, unsigned int h, int i)
{
	h &= x->size - 1;
	x->next[i] = x->head[h];
	x->head[h] = i;
}

#define sc_index_first(x, h) ((x)->head[(h) & ((x)->size - 1)])

/* a chained index of n entries on the heap, for a check at load time
 * (uniqueness in O(n), not O(n^2)); sc_tmp_index_free() releases it */
static int sc_tmp_index_init(sc_index_t *x, int n)
{
	unsigned int i;

	x->size = sc_index_size(n);
	x->head = malloc(x->size * sizeof(int));
	x->next = malloc((n > 0 ? n : 1) * sizeof(int));
	if(x->head == NULL || x->next == NULL) {
		free(x->head);
		free(x->next);
		x->head = x->next = NULL;
		return -1;
	}
	for(i = 0; i < x->size; i++)
		x->head[i] = -1;
	return 0;
}

static void sc_tmp_index_free(sc_index_t *x)
{
	free(x->head);
	free(x->next);
	x->head = x->next = NULL;
}

/* ---- validation against the schema ---- */

static int sc_schema_validate(
		xmlDocPtr doc, const char *schema_file, sc_xml_errctx_t *ectx)
{
	xmlSchemaParserCtxtPtr pctx = NULL;
	xmlSchemaPtr schema = NULL;
	xmlSchemaValidCtxtPtr vctx = NULL;
	sc_error_t serr;
	sc_xml_errctx_t sctx = {&serr, 0};
	int ret = -1;

	memset(&serr, 0, sizeof(serr));
	if(schema_file != NULL && schema_file[0] != '\0') {
		snprintf(serr.file, sizeof(serr.file), "%s", schema_file);
		pctx = xmlSchemaNewParserCtxt(schema_file);
	} else {
		snprintf(serr.file, sizeof(serr.file), "%s", "<built-in schema>");
		pctx = xmlSchemaNewMemParserCtxt(
				sc_schema_xsd, (int)sizeof(sc_schema_xsd) - 1);
	}
	if(pctx == NULL) {
		sc_err_set(ectx->err, serr.file, 0, "cannot create schema parser");
		goto done;
	}
	xmlSchemaSetParserStructuredErrors(pctx, sc_xml_structured_err, &sctx);
	schema = xmlSchemaParse(pctx);
	if(schema == NULL) {
		if(sctx.seen)
			sc_err_set(ectx->err, serr.file, serr.line, "invalid schema: %s",
					serr.reason);
		else
			sc_err_set(ectx->err, serr.file, 0, "cannot load the schema");
		goto done;
	}
	vctx = xmlSchemaNewValidCtxt(schema);
	if(vctx == NULL) {
		sc_err_set(ectx->err, serr.file, 0, "cannot create schema validator");
		goto done;
	}
	xmlSchemaSetValidStructuredErrors(vctx, sc_xml_structured_err, ectx);
	if(xmlSchemaValidateDoc(vctx, doc) != 0) {
		if(!ectx->seen)
			sc_err_set(ectx->err, ectx->err->file, 0,
					"document does not match the schema");
		goto done;
	}
	ret = 0;
done:
	if(vctx)
		xmlSchemaFreeValidCtxt(vctx);
	if(schema)
		xmlSchemaFree(schema);
	if(pctx)
		xmlSchemaFreeParserCtxt(pctx);
	return ret;
}

/* ---- semantic checks the schema cannot express ---- */

typedef struct sc_named
{
	const char *kind;
	str *name;
	int line;
} sc_named_t;

/* one addressable element (proxy, server, SBC) for the uniqueness check */
typedef struct sc_addr_item
{
	const char *kind;
	const str *name;
	str *address;
	sc_ip_t *ip;
	int port;
	int transport;
	int line;
} sc_addr_item_t;

static int sc_check_semantics(
		sc_topo_t *t, const char *file, int root_line, sc_error_t *err)
{
	int i, j, k, n, na, bad = 0;
	unsigned int h;
	sc_index_t ix;
	sc_named_t *names;
	sc_addr_item_t *items;

	if(t->nproxies == 0) {
		sc_err_set(err, file, root_line,
				"the cluster has no <proxy> element (at least one is "
				"required)");
		bad = 1;
	}
	/* names are unique over proxies, pairs, servers and SBCs (one
	 * namespace, so sipcluster.set_state can take any of them) */
	n = t->nproxies + t->npairs + t->nservers + t->nsbcs;
	names = malloc((n > 0 ? n : 1) * sizeof(*names));
	if(names == NULL) {
		sc_err_set(err, file, 0, "out of memory");
		return -1;
	}
	k = 0;
	for(i = 0; i < t->nproxies; i++)
		names[k++] =
				(sc_named_t){"proxy", &t->proxies[i].name, t->proxies[i].line};
	for(i = 0; i < t->npairs; i++)
		names[k++] =
				(sc_named_t){"ha-pair", &t->pairs[i].name, t->pairs[i].line};
	for(i = 0; i < t->nservers; i++)
		names[k++] =
				(sc_named_t){"server", &t->servers[i].name, t->servers[i].line};
	for(i = 0; i < t->nsbcs; i++)
		names[k++] = (sc_named_t){"sbc", &t->sbcs[i].name, t->sbcs[i].line};
	if(sc_tmp_index_init(&ix, n) < 0) {
		free(names);
		sc_err_set(err, file, 0, "out of memory");
		return -1;
	}
	for(i = 0; i < n; i++) {
		h = sc_hash_bytes(names[i].name->s, names[i].name->len);
		for(j = sc_index_first(&ix, h); j >= 0; j = ix.next[j]) {
			if(sc_str_eq(names[i].name, names[j].name)) {
				sc_err_set(err, file, names[i].line,
						"duplicate name '%.*s': %s already used by the %s at "
						"line %d",
						names[i].name->len, names[i].name->s, names[i].kind,
						names[j].kind, names[j].line);
				bad = 1;
				break;
			}
		}
		sc_index_add(&ix, h, i);
	}
	sc_tmp_index_free(&ix);
	free(names);

	/* every proxy has its own server-id, 1-255 */
	for(i = 0; i < t->nproxies; i++) {
		sc_proxy_t *p = &t->proxies[i];
		if(p->server_id < 1 || p->server_id > 255) {
			sc_err_set(err, file, p->line,
					"proxy '%.*s' needs a server-id from 1 to 255", p->name.len,
					p->name.s);
			bad = 1;
			continue;
		}
		for(j = 0; j < i; j++) {
			if(t->proxies[j].server_id == p->server_id) {
				sc_err_set(err, file, p->line,
						"proxy '%.*s': server-id %d already used by proxy "
						"'%.*s' at line %d",
						p->name.len, p->name.s, p->server_id,
						t->proxies[j].name.len, t->proxies[j].name.s,
						t->proxies[j].line);
				bad = 1;
				break;
			}
		}
	}

	/* an rr-host is a DNS name for the proxies of one geo-location: not an
	 * IP literal, never shared by two geo-locations, and named by every
	 * proxy of its geo-location or by none (a Record-Route naming it must
	 * mean "one of these proxies" to every proxy) */
	for(i = 0; i < t->nproxies; i++) {
		sc_proxy_t *p = &t->proxies[i];
		sc_ip_t ip;
		if(p->rr_host.len <= 0)
			continue;
		if(sc_ip_parse(p->rr_name.s, p->rr_name.len, &ip) == 0) {
			sc_err_set(err, file, p->line,
					"proxy '%.*s': rr-host '%.*s' is an IP literal; name a DNS "
					"host whose records lead to the proxies of geo-location "
					"'%.*s'",
					p->name.len, p->name.s, p->rr_host.len, p->rr_host.s,
					p->geo.len, p->geo.s);
			bad = 1;
			continue;
		}
		if(p->rr_port > 65535
				|| (p->rr_port == 0
						&& memchr(p->rr_host.s, ':', p->rr_host.len) != NULL)) {
			sc_err_set(err, file, p->line,
					"proxy '%.*s': rr-host '%.*s' has a port outside 1-65535",
					p->name.len, p->name.s, p->rr_host.len, p->rr_host.s);
			bad = 1;
		}
	}
	for(i = 0; i < t->nproxies; i++) {
		sc_proxy_t *p = &t->proxies[i];
		for(j = 0; j < i; j++) {
			sc_proxy_t *q = &t->proxies[j];
			if(p->rr_host.len > 0 && q->rr_host.len > 0
					&& sc_str_caseeq(&p->rr_name, &q->rr_name)
					&& !sc_str_eq(&p->geo, &q->geo)) {
				sc_err_set(err, file, p->line,
						"proxy '%.*s': rr-host '%.*s' is also the rr-host of "
						"proxy '%.*s' (line %d) in another geo-location "
						"('%.*s', not '%.*s'); one name per data center",
						p->name.len, p->name.s, p->rr_host.len, p->rr_host.s,
						q->name.len, q->name.s, q->line, q->geo.len, q->geo.s,
						p->geo.len, p->geo.s);
				bad = 1;
				break;
			}
			if(sc_str_eq(&p->geo, &q->geo)
					&& !sc_str_caseeq(&p->rr_host, &q->rr_host)) {
				sc_err_set(err, file, p->line,
						"proxy '%.*s': rr-host '%.*s' differs from proxy "
						"'%.*s' (line %d, rr-host '%.*s') of the same "
						"geo-location '%.*s'; give every proxy of a "
						"geo-location the same rr-host, or none",
						p->name.len, p->name.s, p->rr_host.len, p->rr_host.s,
						q->name.len, q->name.s, q->line, q->rr_host.len,
						q->rr_host.s, p->geo.len, p->geo.s);
				bad = 1;
				break;
			}
		}
	}

	/* every pair has one or two servers (a custom schema_file may allow
	 * other counts: this check does not depend on the schema) */
	for(i = 0; i < t->npairs; i++) {
		if(t->pairs[i].nservers < 1) {
			sc_err_set(err, file, t->pairs[i].line,
					"ha-pair '%.*s' has no <server> (one or two are required)",
					t->pairs[i].name.len, t->pairs[i].name.s);
			bad = 1;
		}
	}

	/* IP literals, and address:port:transport unique over all elements */
	na = t->nproxies + t->nservers + t->nsbcs;
	items = malloc((na > 0 ? na : 1) * sizeof(*items));
	if(items == NULL) {
		sc_err_set(err, file, 0, "out of memory");
		return -1;
	}
	k = 0;
	for(i = 0; i < t->nproxies; i++) {
		sc_proxy_t *p = &t->proxies[i];
		items[k++] = (sc_addr_item_t){"proxy", &p->name, &p->address, &p->ip,
				p->port, p->transport, p->line};
	}
	for(i = 0; i < t->nservers; i++) {
		sc_server_t *p = &t->servers[i];
		items[k++] = (sc_addr_item_t){"server", &p->name, &p->address, &p->ip,
				p->port, p->transport, p->line};
	}
	for(i = 0; i < t->nsbcs; i++) {
		sc_sbc_t *p = &t->sbcs[i];
		items[k++] = (sc_addr_item_t){"sbc", &p->name, &p->address, &p->ip,
				p->port, p->transport, p->line};
	}
	if(sc_tmp_index_init(&ix, na) < 0) {
		free(items);
		sc_err_set(err, file, 0, "out of memory");
		return -1;
	}
	for(i = 0; i < na; i++) {
		sc_addr_item_t *a = &items[i];
		if(sc_ip_parse(a->address->s, a->address->len, a->ip) < 0) {
			sc_err_set(err, file, a->line,
					"%s '%.*s': address '%.*s' is not an IPv4 or IPv6 literal",
					a->kind, a->name->len, a->name->s, a->address->len,
					a->address->s);
			bad = 1;
			continue;
		}
		h = sc_hash_ip(a->ip) ^ ((unsigned int)a->port * 2654435761u)
			^ (unsigned int)a->transport;
		for(j = sc_index_first(&ix, h); j >= 0; j = ix.next[j]) {
			sc_addr_item_t *b = &items[j];
			if(a->port == b->port && a->transport == b->transport
					&& sc_ip_eq(a->ip, b->ip)) {
				char ab[64];
				inet_ntop(a->ip->af, a->ip->ip, ab, sizeof(ab));
				sc_err_set(err, file, a->line,
						"'%.*s' uses %s:%d:%s, already used by '%.*s' at "
						"line %d",
						a->name->len, a->name->s, ab, a->port,
						sc_transport_name(a->transport), b->name->len,
						b->name->s, b->line);
				bad = 1;
				break;
			}
		}
		sc_index_add(&ix, h, i);
	}
	sc_tmp_index_free(&ix);
	free(items);

	/* roles */
	for(i = 0; i < t->npairs; i++) {
		sc_pair_t *p = &t->pairs[i];
		if(p->nservers == 1 && p->srv[0]->role != SC_ROLE_PRIMARY) {
			sc_err_set(err, file, p->srv[0]->line,
					"ha-pair '%.*s' has a single server, so its role must be "
					"'primary'",
					p->name.len, p->name.s);
			bad = 1;
			continue;
		}
		if(p->nservers == 2 && p->srv[0]->role == p->srv[1]->role) {
			sc_err_set(err, file, p->srv[1]->line,
					"ha-pair '%.*s' has two servers with role '%s'; one must "
					"be 'primary' and the other 'backup'",
					p->name.len, p->name.s, sc_role_name(p->srv[1]->role));
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* ---- building the model ---- */

static size_t sc_size_pass(xmlNodePtr root, int *np, int *nh, int *ns, int *nb)
{
	xmlNodePtr n, c;
	size_t sz = 0;
	static const char *attrs[] = {
			"name", "address", "geo-location", "rr-host", NULL};
	int i;

	*np = *nh = *ns = *nb = 0;
	sz += sc_attr_len(root, "name") + 8;
	for(n = root->children; n; n = n->next) {
		if(sc_is_elem(n, "sbc")) {
			(*nb)++;
			for(i = 0; attrs[i]; i++)
				sz += SC_ALIGN(sc_attr_len(n, attrs[i]) + 1);
		} else if(sc_is_elem(n, "proxy")) {
			(*np)++;
			for(i = 0; attrs[i]; i++)
				sz += SC_ALIGN(sc_attr_len(n, attrs[i]) + 1);
			sz += SC_ALIGN(SC_URI_MAX);
		} else if(sc_is_elem(n, "ha-pair")) {
			(*nh)++;
			for(i = 0; attrs[i]; i++)
				sz += SC_ALIGN(sc_attr_len(n, attrs[i]) + 1);
			for(c = n->children; c; c = c->next) {
				if(!sc_is_elem(c, "server"))
					continue;
				(*ns)++;
				for(i = 0; attrs[i]; i++)
					sz += SC_ALIGN(sc_attr_len(c, attrs[i]) + 1);
				sz += SC_ALIGN(SC_URI_MAX);
			}
		}
	}
	return sz;
}

static int sc_fill_endpoint(sc_arena_t *a, xmlNodePtr n, str *name, str *addr,
		int *port, int *port_explicit, int *transport, str *uri)
{
	char *tp;

	if(sc_arena_attr(a, name, n, "name") < 0
			|| sc_arena_attr(a, addr, n, "address") < 0)
		return -1;
	*port = sc_attr_int(n, "port", SC_DEFAULT_PORT);
	*port_explicit = xmlHasProp(n, (const xmlChar *)"port") != NULL;
	tp = sc_attr(n, "transport");
	*transport = sc_transport_parse(tp);
	if(tp)
		xmlFree(tp);
	if(*transport < 0)
		*transport = SC_TP_UDP; /* the schema already refused it */
	if(uri == NULL)
		return 0;
	return sc_make_uri(a, uri, addr, *port, *transport);
}

static sc_topo_t *sc_build(xmlDocPtr doc, const char *file, sc_error_t *err)
{
	xmlNodePtr root, n, c;
	int np, nh, ns, nb, ip = 0, ih = 0, is = 0, ib = 0, i, j;
	size_t total;
	sc_arena_t a;
	sc_topo_t *t;
	char *role;

	root = xmlDocGetRootElement(doc);
	if(root == NULL || !sc_is_elem(root, "sip-cluster")) {
		sc_err_set(err, file, root ? xmlGetLineNo(root) : 1,
				"the root element must be <sip-cluster>");
		return NULL;
	}
	total = sc_size_pass(root, &np, &nh, &ns, &nb);
	total += SC_ALIGN(sizeof(sc_topo_t)) + SC_ALIGN(np * sizeof(sc_proxy_t))
			 + SC_ALIGN(nh * sizeof(sc_pair_t))
			 + SC_ALIGN(ns * sizeof(sc_server_t))
			 + SC_ALIGN((nb > 0 ? nb : 1) * sizeof(sc_sbc_t))
			 + SC_ALIGN((np + nh) * sizeof(str)) + SC_ALIGN(strlen(file) + 1)
			 + 3 * sc_index_bytes(ns) + 2 * sc_index_bytes(np)
			 + sc_index_bytes(nh) + sc_index_bytes(nb) + 64;
	a.p = sc_topo_heap ? malloc(total) : shm_malloc(total);
	if(a.p == NULL) {
		sc_err_set(err, file, 0, "out of shared memory (%lu bytes needed)",
				(unsigned long)total);
		return NULL;
	}
	memset(a.p, 0, total);
	a.end = a.p + total;
	t = sc_arena_get(&a, sizeof(sc_topo_t));
	t->size = total;
	t->proxies = sc_arena_get(&a, np * sizeof(sc_proxy_t));
	t->pairs = sc_arena_get(&a, nh * sizeof(sc_pair_t));
	t->servers = sc_arena_get(&a, ns * sizeof(sc_server_t));
	t->sbcs = sc_arena_get(&a, (nb > 0 ? nb : 1) * sizeof(sc_sbc_t));
	t->geos = sc_arena_get(&a, (np + nh) * sizeof(str));
	if(sc_index_alloc(&a, &t->srv_by_ip, ns) < 0
			|| sc_index_alloc(&a, &t->srv_by_name, ns) < 0
			|| sc_index_alloc(&a, &t->srv_by_uid, ns) < 0
			|| sc_index_alloc(&a, &t->px_by_ip, np) < 0
			|| sc_index_alloc(&a, &t->px_by_rr, np) < 0
			|| sc_index_alloc(&a, &t->sbc_by_ip, nb) < 0
			|| sc_index_alloc(&a, &t->pair_by_name, nh) < 0)
		goto oom;
	if(sc_arena_str(&a, &t->file, file, strlen(file)) < 0
			|| sc_arena_attr(&a, &t->name, root, "name") < 0)
		goto oom;
	{
		/* the shared secret keys the pins' MACs; only the key is kept */
		char *sec = sc_attr(root, "secret");
		if(sec != NULL) {
			sc_key_derive(sec, strlen(sec), t->key);
			t->has_key = 1;
			memset(sec, 0, strlen(sec));
			xmlFree(sec);
		}
		sec = sc_attr(root, "x-genesys-route");
		if(sec != NULL) {
			t->xgr_any = (strcmp(sec, "any") == 0);
			xmlFree(sec);
		}
	}

	for(n = root->children; n; n = n->next) {
		if(sc_is_elem(n, "sbc")) {
			sc_sbc_t *b = &t->sbcs[ib];
			b->index = ib++;
			b->line = xmlGetLineNo(n);
			if(sc_fill_endpoint(&a, n, &b->name, &b->address, &b->port,
					   &b->port_explicit, &b->transport,
					   NULL) < 0
					|| sc_arena_attr(&a, &b->geo, n, "geo-location") < 0)
				goto oom;
		} else if(sc_is_elem(n, "proxy")) {
			sc_proxy_t *p = &t->proxies[ip];
			p->index = ip++;
			p->line = xmlGetLineNo(n);
			if(sc_fill_endpoint(&a, n, &p->name, &p->address, &p->port,
					   &p->port_explicit, &p->transport, &p->uri)
							< 0
					|| sc_arena_attr(&a, &p->geo, n, "geo-location") < 0
					|| sc_arena_attr(&a, &p->rr_host, n, "rr-host") < 0)
				goto oom;
			p->server_id = sc_attr_int(n, "server-id", 0);
			sc_rr_host_split(p);
		} else if(sc_is_elem(n, "ha-pair")) {
			sc_pair_t *h = &t->pairs[ih];
			h->index = ih++;
			h->line = xmlGetLineNo(n);
			if(sc_arena_attr(&a, &h->name, n, "name") < 0
					|| sc_arena_attr(&a, &h->geo, n, "geo-location") < 0)
				goto oom;
			h->weight = sc_attr_int(n, "weight", 1);
			h->admin = sc_admin_parse(n);
			h->oos_check = sc_attr_int(n, "oos-check", -1);
			h->oos_force = sc_attr_int(n, "oos-force", -1);
			for(c = n->children; c; c = c->next) {
				sc_server_t *s;
				if(!sc_is_elem(c, "server"))
					continue;
				s = &t->servers[is++];
				s->line = xmlGetLineNo(c);
				s->pair = h;
				s->admin = sc_admin_parse(c);
				if(sc_fill_endpoint(&a, c, &s->name, &s->address, &s->port,
						   &s->port_explicit, &s->transport, &s->uri)
						< 0)
					goto oom;
				role = sc_attr(c, "role");
				s->role = (role && strcmp(role, "backup") == 0)
								  ? SC_ROLE_BACKUP
								  : SC_ROLE_PRIMARY;
				if(role)
					xmlFree(role);
				if(h->nservers < 2)
					h->srv[h->nservers] = s;
				h->nservers++;
			}
			if(h->nservers > 2) {
				sc_err_set(err, file, h->line,
						"ha-pair has %d servers; a pair has one or two",
						h->nservers);
				goto error;
			}
			/* the primary is srv[0] */
			if(h->nservers == 2 && h->srv[1]->role == SC_ROLE_PRIMARY
					&& h->srv[0]->role == SC_ROLE_BACKUP) {
				sc_server_t *x = h->srv[0];
				h->srv[0] = h->srv[1];
				h->srv[1] = x;
			}
			for(j = 0; j < h->nservers; j++)
				h->srv[j]->index = j;
		}
	}
	t->nproxies = np;
	t->npairs = nh;
	t->nservers = ns;
	t->nsbcs = nb;

	/* distinct geo-locations in document order */
	for(i = 0; i < np + nh; i++) {
		str *g = i < np ? &t->proxies[i].geo : &t->pairs[i - np].geo;
		for(j = 0; j < t->ngeos; j++)
			if(sc_str_eq(&t->geos[j], g))
				break;
		if(j == t->ngeos)
			t->geos[t->ngeos++] = *g;
	}

	if(sc_check_semantics(t, file, xmlGetLineNo(root), err) < 0)
		goto error;
	/* the addresses are parsed now: index them */
	for(i = 0; i < ns; i++) {
		sc_index_add(&t->srv_by_ip, sc_hash_ip(&t->servers[i].ip), i);
		sc_index_add(&t->srv_by_name,
				sc_hash_bytes(t->servers[i].name.s, t->servers[i].name.len), i);
	}
	for(i = 0; i < np; i++) {
		sc_index_add(&t->px_by_ip, sc_hash_ip(&t->proxies[i].ip), i);
		if(t->proxies[i].rr_host.len > 0)
			sc_index_add(&t->px_by_rr,
					sc_hash_lower(
							t->proxies[i].rr_name.s, t->proxies[i].rr_name.len),
					i);
		t->px_by_sid[t->proxies[i].server_id & 0xff] = i + 1;
	}
	for(i = 0; i < nb; i++)
		sc_index_add(&t->sbc_by_ip, sc_hash_ip(&t->sbcs[i].ip), i);
	for(i = 0; i < nh; i++)
		sc_index_add(&t->pair_by_name,
				sc_hash_bytes(t->pairs[i].name.s, t->pairs[i].name.len), i);
	return t;

oom:
	sc_err_set(err, file, 0, "internal error: topology block too small");
error:
	if(sc_topo_heap)
		free(t);
	else
		shm_free(t);
	return NULL;
}

/* err is initialised (count, each) by the caller */
static sc_topo_t *sc_topo_load_buf(const char *buf, int len, const char *name,
		const char *schema_file, sc_error_t *err)
{
	xmlDocPtr doc = NULL;
	sc_topo_t *t = NULL;
	sc_xml_errctx_t ectx;
	int i;

	snprintf(err->file, sizeof(err->file), "%s", name ? name : "<memory>");
	ectx.err = err;
	ectx.seen = 0;

	for(i = 0; buf != NULL && i < len; i++)
		if(buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
			break;
	if(buf == NULL || len <= 0 || i == len) {
		sc_err_set(err, err->file, 1, "empty file: no XML document");
		return NULL;
	}
	xmlSetStructuredErrorFunc(&ectx, sc_xml_structured_err);
	xmlSetGenericErrorFunc(NULL, sc_xml_generic_err);
	doc = xmlReadMemory(
			buf, len, err->file, NULL, XML_PARSE_NONET | XML_PARSE_BIG_LINES);
	if(doc == NULL) {
		if(!ectx.seen)
			sc_err_set(err, err->file, 0, "not a well-formed XML document");
		goto done;
	}
	if(sc_schema_validate(doc, schema_file, &ectx) < 0)
		goto done;
	t = sc_build(doc, err->file, err);
done:
	if(doc)
		xmlFreeDoc(doc);
	xmlSetStructuredErrorFunc(NULL, NULL);
	xmlSetGenericErrorFunc(NULL, NULL);
	return t;
}

sc_topo_t *sc_topo_load_mem(const char *buf, int len, const char *name,
		const char *schema_file, sc_error_t *err)
{
	sc_error_t dummy;

	if(err == NULL)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	return sc_topo_load_buf(buf, len, name, schema_file, err);
}

sc_topo_t *sc_topo_load(
		const char *file, const char *schema_file, sc_error_t *err)
{
	return sc_topo_load_each(file, schema_file, err, NULL, NULL);
}

sc_topo_t *sc_topo_load_each(const char *file, const char *schema_file,
		sc_error_t *err, sc_error_each_f each, void *arg)
{
	FILE *f;
	char *buf = NULL;
	long len;
	size_t rd;
	sc_topo_t *t;
	sc_error_t dummy;

	if(err == NULL)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	err->each = each;
	err->each_arg = arg;
	if(file == NULL || file[0] == '\0') {
		sc_err_set(err, "cluster_file", 0, "no cluster document configured");
		return NULL;
	}
	f = fopen(file, "rb");
	if(f == NULL) {
		sc_err_set(err, file, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if(fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
			|| fseek(f, 0, SEEK_SET) != 0) {
		sc_err_set(err, file, 0, "cannot read: %s", strerror(errno));
		fclose(f);
		return NULL;
	}
	if(len > 64 * 1024 * 1024) {
		sc_err_set(err, file, 0, "file too large (%ld bytes)", len);
		fclose(f);
		return NULL;
	}
	buf = malloc(len + 1);
	if(buf == NULL) {
		sc_err_set(err, file, 0, "out of memory");
		fclose(f);
		return NULL;
	}
	rd = fread(buf, 1, len, f);
	fclose(f);
	if((long)rd != len) {
		sc_err_set(err, file, 0, "short read");
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	t = sc_topo_load_buf(buf, (int)len, file, schema_file, err);
	free(buf);
	return t;
}

void sc_topo_free(sc_topo_t *t)
{
	if(t)
		shm_free(t);
}

int sc_topo_check_file(
		const char *file, const char *schema_file, sc_error_t *err)
{
	sc_topo_t *t;

	sc_topo_heap = 1;
	t = sc_topo_load(file, schema_file, err);
	sc_topo_heap = 0;
	if(t == NULL)
		return -1;
	free(t);
	return 0;
}

/* ---- look-ups ---- */

sc_proxy_t *sc_topo_proxy_by_name(sc_topo_t *t, const str *name)
{
	int i;
	for(i = 0; t && i < t->nproxies; i++)
		if(sc_str_eq(&t->proxies[i].name, name))
			return &t->proxies[i];
	return NULL;
}

sc_proxy_t *sc_topo_proxy_by_id(sc_topo_t *t, int server_id)
{
	int i;

	if(t == NULL || server_id < 1 || server_id > 255)
		return NULL;
	i = t->px_by_sid[server_id] - 1;
	return (i >= 0 && t->proxies[i].server_id == server_id) ? &t->proxies[i]
															: NULL;
}

sc_proxy_t *sc_topo_proxy_by_rr_host(sc_topo_t *t, const str *host, int port)
{
	int i, best = -1;

	if(t == NULL || host == NULL || host->len <= 0)
		return NULL;
	/* the chain holds later proxies first: keep the first in the document */
	for(i = sc_index_first(&t->px_by_rr, sc_hash_lower(host->s, host->len));
			i >= 0; i = t->px_by_rr.next[i])
		if(t->proxies[i].rr_port == port
				&& sc_str_caseeq(&t->proxies[i].rr_name, host))
			best = i;
	return best >= 0 ? &t->proxies[best] : NULL;
}

sc_pair_t *sc_topo_pair_by_name(sc_topo_t *t, const str *name)
{
	int i;

	if(t == NULL || t->npairs == 0)
		return NULL;
	for(i = sc_index_first(&t->pair_by_name, sc_hash_bytes(name->s, name->len));
			i >= 0; i = t->pair_by_name.next[i])
		if(sc_str_eq(&t->pairs[i].name, name))
			return &t->pairs[i];
	return NULL;
}

sc_server_t *sc_topo_server_by_name(sc_topo_t *t, const str *name)
{
	int i;

	if(t == NULL || t->nservers == 0)
		return NULL;
	for(i = sc_index_first(&t->srv_by_name, sc_hash_bytes(name->s, name->len));
			i >= 0; i = t->srv_by_name.next[i])
		if(sc_str_eq(&t->servers[i].name, name))
			return &t->servers[i];
	return NULL;
}

sc_server_t *sc_topo_server_by_uid(sc_topo_t *t, unsigned int uid)
{
	int i;

	if(t == NULL || t->nservers == 0)
		return NULL;
	for(i = sc_index_first(&t->srv_by_uid, sc_hash_bytes(&uid, sizeof(uid)));
			i >= 0; i = t->srv_by_uid.next[i])
		if(t->servers[i].h.uid == uid)
			return &t->servers[i];
	return NULL;
}

sc_server_t *sc_topo_server_by_addr(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i;
	sc_server_t *found = NULL;

	if(t == NULL || t->nservers == 0)
		return NULL;
	for(i = sc_index_first(&t->srv_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->srv_by_ip.next[i]) {
		sc_server_t *s = &t->servers[i];
		if(!sc_ip_eq(&s->ip, ip))
			continue;
		if(port && s->port != port)
			continue;
		if(transport && s->transport != transport)
			continue;
		if(found)
			return NULL; /* ambiguous */
		found = s;
	}
	return found;
}

sc_proxy_t *sc_topo_proxy_by_addr(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i;
	sc_proxy_t *found = NULL;

	if(t == NULL || t->nproxies == 0)
		return NULL;
	for(i = sc_index_first(&t->px_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->px_by_ip.next[i]) {
		sc_proxy_t *p = &t->proxies[i];
		if(!sc_ip_eq(&p->ip, ip))
			continue;
		if(port && p->port != port)
			continue;
		if(transport && p->transport != transport)
			continue;
		if(found)
			return NULL;
		found = p;
	}
	return found;
}

/* the source-matching rule (see sc_topo.h) */
static int sc_src_match(const sc_ip_t *eip, int eport, int eexplicit,
		int etransport, const sc_ip_t *ip, int port, int transport)
{
	if(!sc_ip_eq(eip, ip) || etransport != transport)
		return 0;
	if(transport == SC_TP_UDP || transport == SC_TP_SCTP || eexplicit)
		return eport == port;
	return 1;
}

sc_server_t *sc_topo_server_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i;
	sc_server_t *found = NULL;

	if(t == NULL || t->nservers == 0)
		return NULL;
	for(i = sc_index_first(&t->srv_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->srv_by_ip.next[i]) {
		sc_server_t *s = &t->servers[i];
		if(!sc_src_match(&s->ip, s->port, s->port_explicit, s->transport, ip,
				   port, transport))
			continue;
		if(found)
			return NULL; /* ambiguous */
		found = s;
	}
	return found;
}

sc_proxy_t *sc_topo_proxy_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i;
	sc_proxy_t *found = NULL;

	if(t == NULL || t->nproxies == 0)
		return NULL;
	for(i = sc_index_first(&t->px_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->px_by_ip.next[i]) {
		sc_proxy_t *p = &t->proxies[i];
		if(!sc_src_match(&p->ip, p->port, p->port_explicit, p->transport, ip,
				   port, transport))
			continue;
		if(found)
			return NULL;
		found = p;
	}
	return found;
}

sc_sbc_t *sc_topo_sbc_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i;
	sc_sbc_t *found = NULL;

	if(t == NULL || t->nsbcs == 0)
		return NULL;
	for(i = sc_index_first(&t->sbc_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->sbc_by_ip.next[i]) {
		sc_sbc_t *b = &t->sbcs[i];
		if(!sc_src_match(&b->ip, b->port, b->port_explicit, b->transport, ip,
				   port, transport))
			continue;
		if(found)
			return NULL;
		found = b;
	}
	return found;
}

sc_proxy_t *sc_topo_peer_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport)
{
	int i, sip, n = 0;
	sc_proxy_t *found = NULL;

	if(t == NULL || t->nproxies == 0
			|| (transport != SC_TP_TCP && transport != SC_TP_TLS))
		return NULL;
	for(i = sc_index_first(&t->px_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->px_by_ip.next[i]) {
		sc_proxy_t *p = &t->proxies[i];
		if(!sc_ip_eq(&p->ip, ip))
			continue;
		sip = p->transport == SC_TP_TLS ? p->port - 1 : p->port;
		if(port == sip || port == sip + 1)
			return p; /* from its listen port: this one */
		found = p;
		n++;
	}
	/* from another port (a connection it opened): the address names it
	 * only when no other proxy shares that address */
	return n == 1 ? found : NULL;
}

int sc_topo_xgr_allowed(sc_topo_t *t, const sc_ip_t *ip, int port)
{
	int i;

	if(t == NULL)
		return 0;
	if(t->xgr_any)
		return 1;
	if(sc_topo_server_by_addr(t, ip, port, 0) != NULL
			|| sc_topo_proxy_by_addr(t, ip, port, 0) != NULL)
		return 1;
	for(i = sc_index_first(&t->sbc_by_ip, sc_hash_ip(ip)); i >= 0;
			i = t->sbc_by_ip.next[i]) {
		sc_sbc_t *b = &t->sbcs[i];
		if(sc_ip_eq(&b->ip, ip) && (port == 0 || b->port == port))
			return 1;
	}
	return 0;
}

unsigned long sc_topo_shm_need(const sc_topo_t *t)
{
	return SC_SHM_BASE + (unsigned long)t->npairs * SC_SHM_PER_PAIR;
}

static int sc_server_same(const sc_server_t *a, const sc_server_t *b)
{
	return sc_str_eq(&a->name, &b->name) && a->port == b->port
		   && a->transport == b->transport && sc_ip_eq(&a->ip, &b->ip);
}

void sc_topo_carry_state(
		sc_topo_t *nt, const sc_topo_t *old, unsigned int *next_uid)
{
	int i, j, k;

	for(i = 0; i < nt->nservers; i++) {
		sc_server_t *s = &nt->servers[i];
		const sc_server_t *o = NULL;
		/* names are unique: the old one of that name, if the same */
		for(j = old ? sc_index_first(&old->srv_by_name,
							  sc_hash_bytes(s->name.s, s->name.len))
					: -1;
				j >= 0; j = old->srv_by_name.next[j]) {
			if(sc_server_same(s, &old->servers[j])) {
				o = &old->servers[j];
				break;
			}
		}
		if(o) {
			s->h = o->h;
		} else {
			memset(&s->h, 0, sizeof(s->h));
			s->h.uid = (*next_uid)++;
			s->h.rtt = -1;
		}
	}
	for(i = 0; i < nt->npairs; i++) {
		sc_pair_t *p = &nt->pairs[i];
		const sc_pair_t *o = NULL;
		int same = 0;
		for(j = old ? sc_index_first(&old->pair_by_name,
							  sc_hash_bytes(p->name.s, p->name.len))
					: -1;
				j >= 0; j = old->pair_by_name.next[j]) {
			if(sc_str_eq(&p->name, &old->pairs[j].name)) {
				o = &old->pairs[j];
				break;
			}
		}
		if(o && o->nservers == p->nservers) {
			same = 1;
			for(k = 0; k < p->nservers; k++)
				if(!sc_server_same(p->srv[k], o->srv[k]))
					same = 0;
		}
		if(same) {
			p->h = o->h;
		} else {
			/* new or changed pair: fresh state, but keep its counters */
			long long swrr = 0;
			unsigned long calls = o ? o->h.calls : 0;
			unsigned long regs = o ? o->h.registers : 0;
			unsigned long xc = o ? o->h.exported[0] : 0;
			unsigned long xr = o ? o->h.exported[1] : 0;
			memset(&p->h, 0, sizeof(p->h));
			p->h.calls = calls;
			p->h.registers = regs;
			/* what was exported goes with the counter it follows */
			p->h.exported[0] = xc;
			p->h.exported[1] = xr;
			p->h.swrr = swrr;
			p->h.ping_srv = -1;
			p->h.next_ping = 0; /* ping at once */
		}
	}
	/* the document says what the operator wants, at every load */
	for(i = 0; i < nt->npairs; i++)
		nt->pairs[i].h.admin = nt->pairs[i].admin;
	for(i = 0; i < nt->nservers; i++)
		nt->servers[i].h.admin = nt->servers[i].admin;
	/* uids are final now */
	for(i = 0; i < (int)nt->srv_by_uid.size; i++)
		nt->srv_by_uid.head[i] = -1;
	for(i = 0; i < nt->nservers; i++)
		sc_index_add(&nt->srv_by_uid,
				sc_hash_bytes(&nt->servers[i].h.uid, sizeof(unsigned int)), i);
}
