/*
 * Unit tests: cluster document parsing, validation and the topology model.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sc_topo.h"
#include "test_util.h"

extern long stub_shm_allocated;

#define HDR "<?xml version=\"1.0\"?>\n"

static const char *valid_doc = HDR
		"<sip-cluster name=\"example\">\n" /* 2 */
		"  <proxy name=\"proxy-dc1-a\" server-id=\"2\" address=\"127.0.1.1\" "
		"port=\"5060\" "
		"transport=\"udp\" geo-location=\"dc1\"/>\n" /* 3 */
		"  <proxy name=\"proxy-dc2-a\" server-id=\"3\" address=\"127.0.2.1\" "
		"geo-location=\"dc2\"/>\n" /* 4 */
		"  <ha-pair name=\"node-dc1-1\" geo-location=\"dc1\" "
		"weight=\"3\">\n" /* 5 */
		"    <server name=\"sips-dc1-1b\" address=\"127.0.1.12\" "
		"port=\"5070\" "
		"role=\"backup\"/>\n" /* 6 */
		"    <server name=\"sips-dc1-1a\" address=\"127.0.1.11\" "
		"port=\"5060\" "
		"role=\"primary\"/>\n" /* 7 */
		"  </ha-pair>\n"
		"  <!-- a comment -->\n"
		"  <ha-pair name=\"node-dc2-1\" geo-location=\"dc2\" "
		"oos-check=\"2\" "
		"oos-force=\"1\">\n" /* 10 */
		"    <server name=\"sips-dc2-1a\" address=\"::1\" "
		"transport=\"tcp\" "
		"role=\"primary\"/>\n" /* 11 */
		"  </ha-pair>\n"
		"</sip-cluster>\n";

static sc_topo_t *load(const char *doc, sc_error_t *err)
{
	return sc_topo_load_mem(doc, strlen(doc), "test.xml", NULL, err);
}

START_TEST(test_valid_document)
{
	sc_error_t err;
	long before = stub_shm_allocated;
	sc_topo_t *t = load(valid_doc, &err);
	char buf[600];

	sc_error_format(&err, buf, sizeof(buf));
	ck_assert_msg(t != NULL, "valid document rejected: %s", buf);
	ck_assert_int_eq(t->nproxies, 2);
	ck_assert_int_eq(t->npairs, 2);
	ck_assert_int_eq(t->nservers, 3);
	ck_assert_int_eq(t->ngeos, 2);
	ck_assert(STR_IS(t->name, "example"));
	ck_assert(STR_IS(t->geos[0], "dc1"));
	ck_assert(STR_IS(t->geos[1], "dc2"));

	/* defaults */
	ck_assert_int_eq(t->proxies[1].port, 5060);
	ck_assert_int_eq(t->proxies[1].transport, SC_TP_UDP);
	ck_assert_int_eq(t->proxies[0].line, 3);
	ck_assert_int_eq(t->pairs[1].weight, 1);
	ck_assert_int_eq(t->pairs[0].weight, 3);
	ck_assert_int_eq(t->pairs[0].oos_check, -1);
	ck_assert_int_eq(t->pairs[1].oos_check, 2);
	ck_assert_int_eq(t->pairs[1].oos_force, 1);

	/* the primary is srv[0] whatever the document order */
	ck_assert_int_eq(t->pairs[0].nservers, 2);
	ck_assert(STR_IS(t->pairs[0].srv[0]->name, "sips-dc1-1a"));
	ck_assert_int_eq(t->pairs[0].srv[0]->role, SC_ROLE_PRIMARY);
	ck_assert_int_eq(t->pairs[0].srv[0]->index, 0);
	ck_assert(STR_IS(t->pairs[0].srv[1]->name, "sips-dc1-1b"));
	ck_assert_int_eq(t->pairs[0].srv[1]->index, 1);
	ck_assert_int_eq(t->pairs[0].srv[1]->port, 5070);
	ck_assert_int_eq(t->pairs[0].srv[1]->line, 6);
	ck_assert_ptr_eq(t->pairs[0].srv[1]->pair, &t->pairs[0]);

	/* URIs */
	ck_assert(STR_IS(t->pairs[0].srv[1]->uri, "sip:127.0.1.12:5070"));
	ck_assert(STR_IS(t->pairs[1].srv[0]->uri, "sip:[::1]:5060;transport=tcp"));
	ck_assert(STR_IS(t->proxies[0].uri, "sip:127.0.1.1:5060"));

	sc_topo_free(t);
	ck_assert_int_eq(stub_shm_allocated, before);
}
END_TEST

START_TEST(test_lookups)
{
	sc_error_t err;
	sc_topo_t *t = load(valid_doc, &err);
	sc_ip_t ip;
	str n;

	ck_assert(t != NULL);
	n.s = "node-dc2-1";
	n.len = strlen(n.s);
	ck_assert_ptr_eq(sc_topo_pair_by_name(t, &n), &t->pairs[1]);
	ck_assert_ptr_null(sc_topo_server_by_name(t, &n));
	n.s = "sips-dc1-1b";
	n.len = strlen(n.s);
	ck_assert_ptr_eq(sc_topo_server_by_name(t, &n), t->pairs[0].srv[1]);
	n.s = "proxy-dc2-a";
	n.len = strlen(n.s);
	ck_assert_ptr_eq(sc_topo_proxy_by_name(t, &n), &t->proxies[1]);
	n.s = "nobody";
	n.len = strlen(n.s);
	ck_assert_ptr_null(sc_topo_proxy_by_name(t, &n));

	ck_assert_int_eq(sc_ip_parse("127.0.1.12", 10, &ip), 0);
	ck_assert_ptr_eq(sc_topo_server_by_addr(t, &ip, 5070, SC_TP_UDP),
			t->pairs[0].srv[1]);
	ck_assert_ptr_eq(sc_topo_server_by_addr(t, &ip, 0, 0), t->pairs[0].srv[1]);
	ck_assert_ptr_null(sc_topo_server_by_addr(t, &ip, 5060, SC_TP_UDP));
	ck_assert_ptr_null(sc_topo_server_by_addr(t, &ip, 5070, SC_TP_TCP));
	ck_assert_int_eq(sc_ip_parse("[::1]", 5, &ip), 0);
	ck_assert_ptr_eq(
			sc_topo_server_by_addr(t, &ip, 0, SC_TP_TCP), t->pairs[1].srv[0]);
	ck_assert_int_eq(sc_ip_parse("127.0.2.1", 9, &ip), 0);
	ck_assert_ptr_eq(sc_topo_proxy_by_addr(t, &ip, 5060, 0), &t->proxies[1]);
	ck_assert_ptr_null(sc_topo_server_by_addr(t, &ip, 0, 0));
	ck_assert_int_eq(sc_ip_parse("127.0.0.256", 11, &ip), -1);
	ck_assert_int_eq(sc_ip_parse("host", 4, &ip), -1);
	sc_topo_free(t);
}
END_TEST

/* sipcluster-check reports every error of a document, each with its line,
 * the first one also in err; the module's load keeps the first */
typedef struct each_log
{
	int n;
	int lines[16];
	char reasons[16][SC_ERR_REASON_MAX];
} each_log_t;

static void each_err(const sc_error_t *e, void *arg)
{
	each_log_t *l = arg;
	if(l->n < 16) {
		l->lines[l->n] = e->line;
		snprintf(l->reasons[l->n], SC_ERR_REASON_MAX, "%s", e->reason);
	}
	l->n++;
}

START_TEST(test_every_error_reported)
{
	static const char *semantic =
			HDR "<sip-cluster name=\"c\">\n"
				"<proxy name=\"p1\" server-id=\"7\" address=\"127.0.0.1\" "
				"geo-location=\"dc1\"/>\n"
				"<proxy name=\"p1\" server-id=\"7\" address=\"127.0.0.5\" "
				"geo-location=\"dc1\"/>\n"
				"<ha-pair name=\"h\" geo-location=\"dc1\">\n"
				"<server name=\"s1\" address=\"127.0.0.999\" "
				"role=\"primary\"/>\n"
				"<server name=\"s2\" address=\"127.0.0.1\" "
				"role=\"primary\"/>\n"
				"</ha-pair>\n</sip-cluster>\n";
	static const char *schema = HDR "<sip-cluster name=\"c\">\n"
									"<proxy name=\"p1\" address=\"127.0.0.1\" "
									"geo-location=\"dc1\"/>\n"
									"<proxy name=\"p2\" server-id=\"x\" "
									"address=\"127.0.0.2\" "
									"geo-location=\"dc1\"/>\n</sip-cluster>\n";
	char path[] = "/tmp/sc_test_every_XXXXXX";
	each_log_t l;
	sc_error_t err;
	sc_topo_t *t;
	int fd;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, semantic, strlen(semantic)), strlen(semantic));
	close(fd);
	memset(&l, 0, sizeof(l));
	t = sc_topo_load_each(path, NULL, &err, each_err, &l);
	ck_assert_ptr_null(t);
	/* duplicate name, duplicate server-id (line 4), bad address (6),
	 * address of p1 (7), two primaries (7): all of them, in order */
	ck_assert_int_eq(l.n, 5);
	ck_assert_int_eq(err.count, 5);
	ck_assert_int_eq(l.lines[0], 4);
	ck_assert_ptr_nonnull(strstr(l.reasons[0], "duplicate name 'p1'"));
	ck_assert_ptr_nonnull(strstr(l.reasons[1], "server-id 7 already used"));
	ck_assert_int_eq(l.lines[2], 6);
	ck_assert_ptr_nonnull(strstr(l.reasons[2], "not an IPv4 or IPv6 literal"));
	ck_assert_int_eq(l.lines[3], 7);
	ck_assert_ptr_nonnull(strstr(l.reasons[3], "already used by 'p1'"));
	ck_assert_ptr_nonnull(strstr(l.reasons[4], "two servers with role"));
	/* the first is what the module logs */
	ck_assert_int_eq(err.line, 4);
	ck_assert_ptr_nonnull(strstr(err.reason, "duplicate name 'p1'"));

	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, schema, strlen(schema)), strlen(schema));
	close(fd);
	memset(&l, 0, sizeof(l));
	t = sc_topo_load_each(path, NULL, &err, each_err, &l);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.lines[0], 3);
	ck_assert_int_eq(l.lines[1], 4);
	unlink(path);

	/* without a callback: the first error, counted */
	t = sc_topo_load_mem(semantic, strlen(semantic), "m.xml", NULL, &err);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(err.count, 5);
	ck_assert_int_eq(err.line, 4);
}
END_TEST

START_TEST(test_same_address_other_transport_ok)
{
	const char *doc = HDR "<sip-cluster name=\"c\">\n"
						  "<proxy name=\"p\" server-id=\"4\" "
						  "address=\"127.0.0.1\" geo-location=\"a\"/>\n"
						  "<proxy name=\"q\" server-id=\"5\" "
						  "address=\"127.0.0.1\" transport=\"tcp\" "
						  "geo-location=\"a\"/>\n"
						  "<proxy name=\"r\" server-id=\"6\" "
						  "address=\"127.0.0.1\" port=\"5070\" "
						  "geo-location=\"a\"/>\n"
						  "</sip-cluster>\n";
	sc_error_t err;
	sc_topo_t *t = load(doc, &err);
	ck_assert_msg(t != NULL, "rejected: %s", err.reason);
	ck_assert_int_eq(t->npairs, 0);
	ck_assert_int_eq(t->nproxies, 3);
	sc_topo_free(t);
}
END_TEST

/* ---- invalid documents: each names the line and a reason ---- */

typedef struct bad_doc
{
	const char *what;
	const char *doc;
	int line;			/* expected line, -1 = any > 0 */
	const char *reason; /* expected substring of the reason */
} bad_doc_t;

#define P1                                                      \
	"<proxy name=\"p1\" server-id=\"7\" address=\"127.0.0.1\" " \
	"geo-location=\"dc1\"/>\n"
#define OPEN HDR "<sip-cluster name=\"c\">\n" /* lines 1-2 */
#define CLOSE "</sip-cluster>\n"

static const bad_doc_t bad_docs[] = {
		{"empty file", "", 1, "empty"},
		{"only blanks", "   \n\n  ", -1, "empty"},
		{"non-XML bytes", "\x01\x02\xff\xfe garbage \x03", 1, ""},
		{"plain text", "hello world\n", 1, "Start tag expected"},
		{"truncated XML", OPEN P1 "<ha-pair name=\"x\" geo-lo", 4, ""},
		{"mismatched tag", OPEN P1 "</ha-pair>\n" CLOSE, 4, "mismatch"},
		{"wrong root element", HDR "<cluster name=\"c\">\n" P1 "</cluster>\n",
				2, "No matching global declaration"},
		{"cluster without name", HDR "<sip-cluster>\n" P1 CLOSE, 2,
				"'name' is required"},
		{"proxy without name",
				OPEN
				"<proxy address=\"127.0.0.1\" geo-location=\"a\"/>\n" CLOSE,
				3, "'name' is required"},
		{"proxy without geo-location",
				OPEN "<proxy name=\"p\" server-id=\"8\" "
					 "address=\"127.0.0.1\"/>\n" CLOSE,
				3, "'geo-location' is required"},
		{"proxy without address",
				OPEN "<proxy name=\"p\" server-id=\"9\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				3, "'address' is required"},
		{"pair without geo-location",
				OPEN P1 "<ha-pair name=\"h\">\n"
						"<server name=\"s\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				4, "'geo-location' is required"},
		{"port too big",
				OPEN P1 "<proxy name=\"p2\" server-id=\"10\" "
						"address=\"127.0.0.2\" port=\"70000\" "
						"geo-location=\"a\"/>\n" CLOSE,
				4, "'70000' is not a valid value"},
		{"port zero",
				OPEN P1 "<proxy name=\"p2\" server-id=\"11\" "
						"address=\"127.0.0.2\" port=\"0\" "
						"geo-location=\"a\"/>\n" CLOSE,
				4, "The value '0' is less than the minimum"},
		{"port not a number",
				OPEN P1 "<proxy name=\"p2\" server-id=\"12\" "
						"address=\"127.0.0.2\" port=\"http\" "
						"geo-location=\"a\"/>\n" CLOSE,
				4, "'http' is not a valid value"},
		{"unknown element", OPEN P1 "<gateway name=\"g\"/>\n" CLOSE, 4,
				"This element is not expected"},
		{"unknown attribute",
				OPEN "<proxy name=\"p\" server-id=\"13\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" "
					 "colour=\"red\"/>\n" CLOSE,
				3, "'colour' is not allowed"},
		{"bad transport",
				OPEN "<proxy name=\"p\" server-id=\"14\" address=\"127.0.0.1\" "
					 "transport=\"ws\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				3, "The value 'ws' is not an element of the set"},
		{"pair with three servers",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n"
						"<server name=\"s2\" address=\"127.0.0.3\" "
						"role=\"backup\"/>\n"
						"<server name=\"s3\" address=\"127.0.0.4\" "
						"role=\"backup\"/>\n"
						"</ha-pair>\n" CLOSE,
				7, "This element is not expected"},
		{"pair without servers",
				OPEN P1
				"<ha-pair name=\"h\" geo-location=\"dc1\">\n</ha-pair>\n" CLOSE,
				4, "Missing child element"},
		{"bad role",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"master\"/>\n</ha-pair>\n" CLOSE,
				5, "The value 'master' is not an element of the set"},
		{"two primaries",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n"
						"<server name=\"s2\" address=\"127.0.0.3\" "
						"role=\"primary\"/>\n"
						"</ha-pair>\n" CLOSE,
				6, "two servers with role 'primary'"},
		{"single backup",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"backup\"/>\n</ha-pair>\n" CLOSE,
				5, "its role must be 'primary'"},
		{"duplicate name server/pair",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"h\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				5, "duplicate name 'h'"},
		{"duplicate proxy name",
				OPEN P1
				"<proxy name=\"p1\" server-id=\"15\" address=\"127.0.0.9\" "
				"geo-location=\"dc1\"/>\n" CLOSE,
				4, "duplicate name 'p1'"},
		{"duplicate address:port:transport",
				OPEN P1
				"<ha-pair name=\"h\" geo-location=\"dc1\">\n"
				"<server name=\"s1\" address=\"127.0.0.2\" "
				"role=\"primary\"/>\n"
				"<server name=\"s2\" address=\"127.0.0.2\" port=\"5060\" "
				"role=\"backup\"/>\n"
				"</ha-pair>\n" CLOSE,
				6, "127.0.0.2:5060:udp, already used by 's1'"},
		{"server on a proxy's address",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
						"<server name=\"s1\" address=\"127.0.0.1\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				5, "already used by 'p1'"},
		{"address not an IP literal",
				OPEN
				"<proxy name=\"p\" server-id=\"16\" address=\"127.1.1.999\" "
				"geo-location=\"a\"/>\n" CLOSE,
				3, "not an IPv4 or IPv6 literal"},
		{"address is a host name",
				OPEN "<proxy name=\"p\" server-id=\"17\" "
					 "address=\"sip.example.com\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				3, "'sip.example.com' is not accepted"},
		{"no proxy",
				OPEN "<ha-pair name=\"h\" geo-location=\"dc1\">\n"
					 "<server name=\"s1\" address=\"127.0.0.2\" "
					 "role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				2, "no <proxy> element"},
		{"empty cluster", OPEN CLOSE, 2, "Missing child element"},
		{"oos-force out of range",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\" "
						"oos-force=\"33\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				4, "The value '33' is greater than the maximum"},
		{"negative weight",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\" "
						"weight=\"-1\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				4, "'-1' is not a valid value"},
		{"secret too short",
				HDR "<sip-cluster name=\"c\" secret=\"short\">\n" P1 CLOSE, 2,
				"length"},
		{"sbc without address", OPEN P1 "<sbc name=\"b\"/>\n" CLOSE, 4,
				"'address' is required"},
		{"sbc on a proxy's address",
				OPEN P1 "<sbc name=\"b\" address=\"127.0.0.1\"/>\n" CLOSE, 4,
				"already used by 'p1'"},
		{"sbc name taken",
				OPEN P1 "<sbc name=\"p1\" address=\"127.0.0.7\"/>\n" CLOSE, 4,
				"duplicate name 'p1'"},
		{"proxy without server-id",
				OPEN "<proxy name=\"p\" address=\"127.0.0.1\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				3, "'server-id' is required"},
		{"server-id 0",
				OPEN "<proxy name=\"p\" server-id=\"0\" address=\"127.0.0.1\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				3, "less than the minimum"},
		{"duplicate server-id",
				OPEN P1 "<proxy name=\"p2\" server-id=\"7\" "
						"address=\"127.0.0.2\" geo-location=\"a\"/>\n" CLOSE,
				4, "server-id 7 already used by proxy 'p1'"},
		{"bad admin state",
				OPEN P1 "<ha-pair name=\"h\" geo-location=\"dc1\" "
						"admin=\"drained\">\n"
						"<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n</ha-pair>\n" CLOSE,
				4, "'drained' is not an element of the set"},
		{"rr-host an IP literal",
				OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" rr-host=\"127.0.0.9\"/>\n" CLOSE,
				3, "rr-host '127.0.0.9' is an IP literal"},
		{"rr-host not a DNS name",
				OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" rr-host=\"dc_1.example\"/>\n" CLOSE,
				3, "rr-host"},
		{"rr-host port out of range",
				OPEN
				"<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
				"geo-location=\"a\" rr-host=\"dc1.example:70000\"/>\n" CLOSE,
				3, "port outside 1-65535"},
		{"rr-host port 0",
				OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" rr-host=\"dc1.example:0\"/>\n" CLOSE,
				3, "port outside 1-65535"},
		{"rr-host shared by two geo-locations",
				OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" rr-host=\"sip.example\"/>\n"
					 "<proxy name=\"q\" server-id=\"9\" address=\"127.0.0.2\" "
					 "geo-location=\"b\" rr-host=\"SIP.example\"/>\n" CLOSE,
				4, "also the rr-host of proxy 'p' (line 3) in another"},
		{"rr-host on one proxy of a geo-location only",
				OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
					 "geo-location=\"a\" rr-host=\"a.example\"/>\n"
					 "<proxy name=\"q\" server-id=\"9\" address=\"127.0.0.2\" "
					 "geo-location=\"a\"/>\n" CLOSE,
				4, "differs from proxy 'p' (line 3, rr-host 'a.example')"},
		{"server outside a pair",
				OPEN P1 "<server name=\"s1\" address=\"127.0.0.2\" "
						"role=\"primary\"/>\n" CLOSE,
				4, "This element is not expected"},
};

#define N_BAD ((int)(sizeof(bad_docs) / sizeof(bad_docs[0])))

START_TEST(test_rr_host)
{
	static const char *doc =
			OPEN "<proxy name=\"p\" server-id=\"8\" address=\"127.0.0.1\" "
				 "geo-location=\"a\" rr-host=\"dc-a.Example.net\"/>\n"
				 "<proxy name=\"q\" server-id=\"9\" address=\"127.0.0.2\" "
				 "geo-location=\"a\" rr-host=\"DC-A.example.NET\"/>\n"
				 "<proxy name=\"r\" server-id=\"10\" address=\"127.0.0.3\" "
				 "geo-location=\"b\" rr-host=\"dc-b.example.net:5070\"/>\n"
				 "<proxy name=\"s\" server-id=\"11\" address=\"127.0.0.4\" "
				 "geo-location=\"c\"/>\n" CLOSE;
	sc_error_t err;
	char buf[700];
	sc_topo_t *t = load(doc, &err);
	str h;

	sc_error_format(&err, buf, sizeof(buf));
	ck_assert_msg(t != NULL, "rejected: %s", buf);
	ck_assert_int_eq(t->proxies[0].rr_port, 0);
	ck_assert_int_eq(t->proxies[2].rr_port, 5070);
	ck_assert_int_eq(t->proxies[2].rr_name.len, 16);
	ck_assert_int_eq(t->proxies[3].rr_host.len, 0);
	/* by name, whatever the case, and port */
	h.s = "dc-a.example.net";
	h.len = strlen(h.s);
	ck_assert_ptr_eq(sc_topo_proxy_by_rr_host(t, &h, 0), &t->proxies[0]);
	ck_assert_ptr_null(sc_topo_proxy_by_rr_host(t, &h, 5060));
	h.s = "DC-B.example.net";
	h.len = strlen(h.s);
	ck_assert_ptr_eq(sc_topo_proxy_by_rr_host(t, &h, 5070), &t->proxies[2]);
	ck_assert_ptr_null(sc_topo_proxy_by_rr_host(t, &h, 0));
	h.s = "dc-a.example";
	h.len = strlen(h.s);
	ck_assert_ptr_null(sc_topo_proxy_by_rr_host(t, &h, 0));
	/* a proxy without one is never found by an empty name */
	h.len = 0;
	ck_assert_ptr_null(sc_topo_proxy_by_rr_host(t, &h, 0));
	ck_assert_ptr_eq(sc_topo_proxy_by_id(t, 10), &t->proxies[2]);
	ck_assert_ptr_eq(sc_topo_proxy_by_id(t, 8), &t->proxies[0]);
	ck_assert_ptr_eq(sc_topo_proxy_by_id(t, 11), &t->proxies[3]);
	ck_assert_ptr_null(sc_topo_proxy_by_id(t, 12));
	ck_assert_ptr_null(sc_topo_proxy_by_id(t, 0));
	ck_assert_ptr_null(sc_topo_proxy_by_id(t, 256));
	ck_assert_ptr_null(sc_topo_proxy_by_id(t, -1));
	sc_topo_free(t);
}
END_TEST

START_TEST(test_invalid_document)
{
	const bad_doc_t *b = &bad_docs[_i];
	sc_error_t err;
	long before = stub_shm_allocated;
	sc_topo_t *t;
	char buf[700];

	t = load(b->doc, &err);
	sc_error_format(&err, buf, sizeof(buf));
	ck_assert_msg(t == NULL, "'%s' was accepted", b->what);
	ck_assert_msg(strcmp(err.file, "test.xml") == 0, "'%s': file is '%s'",
			b->what, err.file);
	if(b->line > 0)
		ck_assert_msg(err.line == b->line, "'%s': line %d, expected %d (%s)",
				b->what, err.line, b->line, buf);
	else
		ck_assert_msg(err.line > 0, "'%s': no line (%s)", b->what, buf);
	ck_assert_msg(strlen(err.reason) > 0, "'%s': no reason", b->what);
	ck_assert_msg(strstr(err.reason, b->reason) != NULL,
			"'%s': reason '%s' lacks '%s'", b->what, err.reason, b->reason);
	/* the formatted error is file:line: reason */
	ck_assert_msg(strncmp(buf, "test.xml:", 9) == 0, "'%s': formatted '%s'",
			b->what, buf);
	ck_assert_int_eq(stub_shm_allocated, before);
}
END_TEST

START_TEST(test_file_errors)
{
	sc_error_t err;
	char path[] = "/tmp/sc_test_XXXXXX";
	int fd;
	sc_topo_t *t;

	t = sc_topo_load("/nonexistent/cluster.xml", NULL, &err);
	ck_assert_ptr_null(t);
	ck_assert_str_eq(err.file, "/nonexistent/cluster.xml");
	ck_assert(strstr(err.reason, "cannot open") != NULL);

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	t = sc_topo_load(path, NULL, &err);
	ck_assert_ptr_null(t);
	ck_assert_str_eq(err.file, path);
	ck_assert_int_eq(err.line, 1);
	ck_assert(strstr(err.reason, "empty") != NULL);

	/* a file with an error on line 3 reports the path */
	{
		FILE *f = fopen(path, "w");
		fputs(OPEN "<proxy name=\"p\" server-id=\"18\" "
				   "geo-location=\"a\"/>\n" CLOSE,
				f);
		fclose(f);
	}
	t = sc_topo_load(path, NULL, &err);
	ck_assert_ptr_null(t);
	ck_assert_str_eq(err.file, path);
	ck_assert_int_eq(err.line, 3);

	/* and a valid one loads */
	{
		FILE *f = fopen(path, "w");
		fputs(valid_doc, f);
		fclose(f);
	}
	t = sc_topo_load(path, NULL, &err);
	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(t->file.s, path);
	sc_topo_free(t);
	unlink(path);
}
END_TEST

START_TEST(test_external_schema)
{
	sc_error_t err;
	sc_topo_t *t;

	t = sc_topo_load_mem(
			valid_doc, strlen(valid_doc), "test.xml", SC_XSD_PATH, &err);
	ck_assert_msg(t != NULL, "rejected with %s: %s", SC_XSD_PATH, err.reason);
	sc_topo_free(t);
	t = sc_topo_load_mem(
			valid_doc, strlen(valid_doc), "test.xml", "/nonexistent.xsd", &err);
	ck_assert_ptr_null(t);
	ck_assert(strstr(err.reason, "schema") != NULL);
}
END_TEST

/* ---- state carried across reloads ---- */

/* a custom schema that allows a pair without servers: the C check still
 * refuses it (no crash on a ;scp= naming such a pair later) */
START_TEST(test_custom_schema_pair_without_servers)
{
	static const char *xsd =
			"<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\n"
			"<xs:element name=\"sip-cluster\"><xs:complexType>\n"
			"<xs:sequence><xs:any processContents=\"skip\" minOccurs=\"0\" "
			"maxOccurs=\"unbounded\"/></xs:sequence>\n"
			"<xs:anyAttribute processContents=\"skip\"/>\n"
			"</xs:complexType></xs:element></xs:schema>\n";
	const char *doc = OPEN P1
			"<ha-pair name=\"h\" geo-location=\"dc1\">\n</ha-pair>\n" CLOSE;
	char path[] = "/tmp/sc-test-xsd-XXXXXX";
	int fd = mkstemp(path);
	sc_error_t err;
	sc_topo_t *t;

	ck_assert(fd >= 0);
	ck_assert(write(fd, xsd, strlen(xsd)) == (ssize_t)strlen(xsd));
	close(fd);
	t = sc_topo_load_mem(doc, strlen(doc), "test.xml", path, &err);
	unlink(path);
	ck_assert_msg(t == NULL, "a pair without servers was accepted");
	ck_assert_int_eq(err.line, 4);
	ck_assert_msg(
			strstr(err.reason, "has no <server>") != NULL, "%s", err.reason);
}
END_TEST

/* <sbc>, the secret, and who a source is (port rule per transport) */
START_TEST(test_sbc_secret_and_sources)
{
	const char *doc =
			HDR "<sip-cluster name=\"c\" secret=\"0123456789abcdef\">\n"
				"<proxy name=\"p1\" server-id=\"19\" address=\"127.0.0.1\" "
				"port=\"5060\" "
				"geo-location=\"dc1\"/>\n"
				"<proxy name=\"p2\" server-id=\"20\" address=\"127.0.0.2\" "
				"transport=\"tcp\" "
				"geo-location=\"dc1\"/>\n"
				"<sbc name=\"b1\" address=\"127.0.0.9\" port=\"5070\"/>\n"
				"<ha-pair name=\"h\" geo-location=\"dc1\">\n"
				"<server name=\"s1\" address=\"127.0.0.3\" port=\"5080\" "
				"transport=\"tcp\" role=\"primary\"/>\n"
				"<server name=\"s2\" address=\"127.0.0.4\" transport=\"tcp\" "
				"role=\"backup\"/>\n"
				"</ha-pair>\n" CLOSE;
	sc_error_t err;
	sc_topo_t *t = load(doc, &err);
	sc_ip_t ip;
	unsigned char key[16];

	ck_assert_msg(t != NULL, "rejected: %s", err.reason);
	ck_assert_int_eq(t->nsbcs, 1);
	ck_assert(STR_IS(t->sbcs[0].name, "b1"));
	ck_assert_int_eq(t->sbcs[0].port, 5070);
	ck_assert(t->has_key);
	sc_key_derive("0123456789abcdef", 16, key);
	ck_assert(memcmp(key, t->key, 16) == 0);
	ck_assert_int_eq(t->proxies[0].port_explicit, 1);
	ck_assert_int_eq(t->proxies[1].port_explicit, 0);

	/* TCP server with an explicit port: the port must match */
	sc_ip_parse("127.0.0.3", 9, &ip);
	ck_assert(sc_topo_server_by_src(t, &ip, 5080, SC_TP_TCP) != NULL);
	ck_assert(sc_topo_server_by_src(t, &ip, 40000, SC_TP_TCP) == NULL);
	ck_assert(sc_topo_server_by_src(t, &ip, 5080, SC_TP_UDP) == NULL);
	/* TCP server without a port in the document: any source port */
	sc_ip_parse("127.0.0.4", 9, &ip);
	ck_assert(sc_topo_server_by_src(t, &ip, 40000, SC_TP_TCP) != NULL);
	/* UDP: the port always */
	sc_ip_parse("127.0.0.1", 9, &ip);
	ck_assert(sc_topo_proxy_by_src(t, &ip, 5060, SC_TP_UDP) != NULL);
	ck_assert(sc_topo_proxy_by_src(t, &ip, 5061, SC_TP_UDP) == NULL);
	sc_ip_parse("127.0.0.9", 9, &ip);
	ck_assert(sc_topo_sbc_by_src(t, &ip, 5070, SC_TP_UDP) != NULL);
	ck_assert(sc_topo_sbc_by_src(t, &ip, 5060, SC_TP_UDP) == NULL);
	ck_assert(sc_topo_server_by_src(t, &ip, 5070, SC_TP_UDP) == NULL);
	sc_topo_free(t);

	/* no secret: no key */
	t = load(valid_doc, &err);
	ck_assert(t != NULL);
	ck_assert(!t->has_key);
	ck_assert_int_eq(t->nsbcs, 0);
	sc_topo_free(t);
}
END_TEST

/* a large document: the uniqueness checks (hash sets) find a duplicate
 * name or address:port:transport anywhere, naming the first use's line;
 * a clean one loads with every pair; the shm it needs grows with it */
static char *big_doc(int n, const char *last_name, const char *last_addr)
{
	size_t cap = 512 + (size_t)n * 200;
	char *d = malloc(cap), *w = d;
	int k;

	w += sprintf(w, HDR "<sip-cluster name=\"big\">\n" /* line 2 */
					"<proxy name=\"p1\" server-id=\"1\" address=\"127.9.0.1\" "
					"geo-location=\"dc1\"/>\n"); /* 3 */
	for(k = 0; k < n; k++) /* pair k: lines 4 + 3k .. 6 + 3k */
		w += sprintf(w,
				"<ha-pair name=\"n%d\" geo-location=\"dc1\">\n"
				"<server name=\"%s%d\" address=\"%s\" role=\"primary\"/>\n"
				"</ha-pair>\n",
				k, k == n - 1 && last_name ? last_name : "s",
				k == n - 1 && last_name ? 0 : k,
				k == n - 1 && last_addr ? last_addr : "");
	strcpy(w, CLOSE);
	return d;
}

static char *big_doc_addrs(int n, const char *last_name, const char *last_addr)
{
	/* every server its own address 127.10.x.y */
	char *d = big_doc(n, last_name, last_addr), *out, *r, *w;
	int k = 0;

	out = malloc(strlen(d) + (size_t)n * 16 + 1);
	for(r = d, w = out; *r;) {
		if(strncmp(r, "address=\"\"", 10) == 0) {
			w += sprintf(w, "address=\"127.10.%d.%d\"", k / 250, 1 + k % 250);
			k++;
			r += 10;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	free(d);
	return out;
}

START_TEST(test_large_document_linear_checks)
{
	sc_error_t err;
	sc_topo_t *t;
	char *d;
	unsigned long small;

	d = big_doc_addrs(20000, NULL, NULL);
	t = load(d, &err);
	ck_assert_msg(t != NULL, "rejected: %s:%d: %s", err.file, err.line,
			err.reason);
	ck_assert_int_eq(t->npairs, 20000);
	ck_assert_int_eq(t->nservers, 20000);
	ck_assert(sc_topo_shm_need(t) == SC_SHM_BASE + 20000UL * SC_SHM_PER_PAIR);
	small = SC_SHM_BASE + SC_SHM_PER_PAIR;
	ck_assert(sc_topo_shm_need(t) > small);
	sc_topo_free(t);
	free(d);

	/* the last server takes the first one's name (s0, line 5) */
	d = big_doc_addrs(20000, "s", NULL);
	t = load(d, &err);
	ck_assert(t == NULL);
	ck_assert_int_eq(err.line, 4 + 3 * 19999 + 1);
	ck_assert_msg(strstr(err.reason, "duplicate name 's0'") != NULL
					  && strstr(err.reason, "at line 5") != NULL,
			"%s", err.reason);
	free(d);

	/* the last server takes the first one's address (line 5) */
	d = big_doc_addrs(20000, NULL, "127.10.0.1");
	t = load(d, &err);
	ck_assert(t == NULL);
	ck_assert_int_eq(err.line, 4 + 3 * 19999 + 1);
	ck_assert_msg(strstr(err.reason, "127.10.0.1:5060:udp") != NULL
					  && strstr(err.reason, "'s0' at line 5") != NULL,
			"%s", err.reason);
	free(d);
}
END_TEST

/* the cluster channel (sc_topo_peer_by_src): TCP/TLS only; a proxy with
 * an address of its own is known by it from any port (the connections it
 * opens come from an ephemeral one); proxies sharing an address only from
 * their listen ports */
START_TEST(test_peer_by_src)
{
	const char *doc =
			HDR "<sip-cluster name=\"c\">\n"
				"<proxy name=\"p1\" server-id=\"1\" address=\"127.0.0.1\" "
				"port=\"5060\" geo-location=\"dc1\"/>\n"
				"<proxy name=\"p2\" server-id=\"2\" address=\"127.0.0.2\" "
				"port=\"5070\" geo-location=\"dc1\"/>\n"
				"<proxy name=\"p3\" server-id=\"3\" address=\"127.0.0.2\" "
				"port=\"5081\" transport=\"tls\" geo-location=\"dc1\"/>\n"
				"<ha-pair name=\"h\" geo-location=\"dc1\">\n"
				"<server name=\"s1\" address=\"127.0.0.3\" "
				"role=\"primary\"/>\n"
				"</ha-pair>\n" CLOSE;
	sc_error_t err;
	sc_topo_t *t = load(doc, &err);
	sc_ip_t ip;
	sc_proxy_t *p;

	ck_assert_msg(t != NULL, "rejected: %s", err.reason);
	sc_ip_parse("127.0.0.1", 9, &ip);
	p = sc_topo_peer_by_src(t, &ip, 40000, SC_TP_TCP);
	ck_assert(p != NULL && STR_IS(p->name, "p1"));
	ck_assert(sc_topo_peer_by_src(t, &ip, 5060, SC_TP_TLS) == p);
	/* never over UDP (or SCTP): a datagram's source proves nothing */
	ck_assert(sc_topo_peer_by_src(t, &ip, 5060, SC_TP_UDP) == NULL);
	ck_assert(sc_topo_peer_by_src(t, &ip, 5060, SC_TP_SCTP) == NULL);
	/* a shared address: the listen ports tell (p3's SIP port is 5080) */
	sc_ip_parse("127.0.0.2", 9, &ip);
	p = sc_topo_peer_by_src(t, &ip, 5070, SC_TP_TCP);
	ck_assert(p != NULL && STR_IS(p->name, "p2"));
	p = sc_topo_peer_by_src(t, &ip, 5071, SC_TP_TLS);
	ck_assert(p != NULL && STR_IS(p->name, "p2"));
	p = sc_topo_peer_by_src(t, &ip, 5080, SC_TP_TCP);
	ck_assert(p != NULL && STR_IS(p->name, "p3"));
	p = sc_topo_peer_by_src(t, &ip, 5081, SC_TP_TLS);
	ck_assert(p != NULL && STR_IS(p->name, "p3"));
	ck_assert(sc_topo_peer_by_src(t, &ip, 40000, SC_TP_TCP) == NULL);
	/* a SIP Server's address is no proxy */
	sc_ip_parse("127.0.0.3", 9, &ip);
	ck_assert(sc_topo_peer_by_src(t, &ip, 5060, SC_TP_TCP) == NULL);
	sc_topo_free(t);
}
END_TEST

/* admin= in the document is applied at every load, over run-time state */
START_TEST(test_admin_from_document)
{
	const char *doc =
			HDR "<sip-cluster name=\"c\">\n"
				"<proxy name=\"p1\" server-id=\"1\" address=\"127.0.0.1\" "
				"geo-location=\"dc1\"/>\n"
				"<ha-pair name=\"h\" geo-location=\"dc1\" "
				"admin=\"out-of-service\">\n"
				"<server name=\"s1\" address=\"127.0.0.3\" role=\"primary\"/>\n"
				"<server name=\"s2\" address=\"127.0.0.4\" role=\"backup\" "
				"admin=\"active\"/>\n"
				"</ha-pair>\n" CLOSE;
	sc_error_t err;
	sc_topo_t *t = load(doc, &err), *t2;
	unsigned int uid = 1;

	ck_assert_msg(t != NULL, "rejected: %s", err.reason);
	ck_assert_int_eq(t->proxies[0].server_id, 1);
	ck_assert_int_eq(t->pairs[0].admin, SC_ADMIN_OOS);
	ck_assert_int_eq(t->servers[1].admin, SC_ADMIN_ACTIVE);
	ck_assert_int_eq(t->servers[0].admin, SC_ADMIN_AUTO);
	sc_topo_carry_state(t, NULL, &uid);
	ck_assert_int_eq(t->pairs[0].h.admin, SC_ADMIN_OOS);
	ck_assert(!sc_pair_usable(&t->pairs[0]));
	/* an operator override at run time, then a reload: the document wins */
	t->pairs[0].h.admin = SC_ADMIN_AUTO;
	t2 = load(doc, &err);
	sc_topo_carry_state(t2, t, &uid);
	ck_assert_int_eq(t2->pairs[0].h.admin, SC_ADMIN_OOS);
	ck_assert_int_eq(t2->servers[1].h.admin, SC_ADMIN_ACTIVE);
	ck_assert_int_eq(sc_pair_active_index(&t2->pairs[0]), 1);
	sc_topo_free(t);
	sc_topo_free(t2);
}
END_TEST

START_TEST(test_carry_state)
{
	sc_error_t err;
	sc_topo_t *a, *b;
	unsigned int uid = 1;
	const char *doc2 =
			HDR "<sip-cluster name=\"example\">\n"
				"  <proxy name=\"proxy-dc1-a\" server-id=\"21\" "
				"address=\"127.0.1.1\" "
				"geo-location=\"dc1\"/>\n"
				"  <ha-pair name=\"node-dc1-1\" geo-location=\"dc1\">\n"
				"    <server name=\"sips-dc1-1a\" address=\"127.0.1.11\" "
				"role=\"primary\"/>\n"
				"    <server name=\"sips-dc1-1b\" address=\"127.0.1.12\" "
				"port=\"5070\" role=\"backup\"/>\n"
				"  </ha-pair>\n"
				"  <ha-pair name=\"node-dc1-3\" geo-location=\"dc1\">\n"
				"    <server name=\"sips-dc2-1a\" address=\"::1\" "
				"transport=\"udp\" role=\"primary\"/>\n"
				"  </ha-pair>\n"
				"</sip-cluster>\n";

	a = load(valid_doc, &err);
	ck_assert_ptr_nonnull(a);
	sc_topo_carry_state(a, NULL, &uid);
	ck_assert_int_eq(uid, 4);
	ck_assert_uint_eq(a->servers[0].h.uid, 1);
	ck_assert_uint_eq(a->servers[2].h.uid, 3);
	/* run-time state on the first pair: backup active */
	a->pairs[0].h.active = 1;
	a->pairs[0].h.switchovers = 7;
	a->pairs[0].srv[1]->h.last_code = 200;
	a->pairs[0].srv[1]->h.pings = 42;
	a->pairs[1].h.calls = 5;
	a->pairs[1].srv[0]->h.pings = 9;

	b = load(doc2, &err);
	ck_assert_ptr_nonnull(b);
	sc_topo_carry_state(b, a, &uid);
	/* unchanged pair and servers keep everything */
	ck_assert_int_eq(b->pairs[0].h.active, 1);
	ck_assert_uint_eq(b->pairs[0].h.switchovers, 7);
	ck_assert_int_eq(b->pairs[0].srv[1]->h.last_code, 200);
	ck_assert_uint_eq(b->pairs[0].srv[1]->h.pings, 42);
	ck_assert_uint_eq(b->pairs[0].srv[1]->h.uid, a->pairs[0].srv[1]->h.uid);
	ck_assert_uint_eq(b->pairs[0].srv[0]->h.uid, a->pairs[0].srv[0]->h.uid);
	/* a server whose transport changed is a new server: fresh state */
	ck_assert_uint_eq(b->pairs[1].srv[0]->h.pings, 0);
	ck_assert_uint_eq(b->pairs[1].srv[0]->h.uid, 4);
	ck_assert_int_eq(b->pairs[1].srv[0]->h.rtt, -1);
	ck_assert_uint_eq(uid, 5);
	/* the uid index follows the carried uids */
	ck_assert_ptr_eq(sc_topo_server_by_uid(b, b->pairs[0].srv[1]->h.uid),
			b->pairs[0].srv[1]);
	ck_assert_ptr_eq(sc_topo_server_by_uid(b, 4), b->pairs[1].srv[0]);
	ck_assert_ptr_null(sc_topo_server_by_uid(b, 3)); /* its server is gone */
	/* node-dc2-1 is gone */
	{
		str n = {"node-dc2-1", 10};
		ck_assert_ptr_null(sc_topo_pair_by_name(b, &n));
	}
	sc_topo_free(a);
	sc_topo_free(b);
}
END_TEST

Suite *topo_suite(void)
{
	Suite *s = suite_create("topology");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_valid_document);
	tcase_add_test(tc, test_lookups);
	tcase_add_test(tc, test_same_address_other_transport_ok);
	tcase_add_test(tc, test_every_error_reported);
	tcase_add_test(tc, test_rr_host);
	tcase_add_loop_test(tc, test_invalid_document, 0, N_BAD);
	tcase_add_test(tc, test_file_errors);
	tcase_add_test(tc, test_external_schema);
	tcase_add_test(tc, test_carry_state);
	tcase_add_test(tc, test_custom_schema_pair_without_servers);
	tcase_add_test(tc, test_sbc_secret_and_sources);
	tcase_add_test(tc, test_peer_by_src);
	tcase_add_test(tc, test_large_document_linear_checks);
	tcase_add_test(tc, test_admin_from_document);
	suite_add_tcase(s, tc);
	return s;
}
