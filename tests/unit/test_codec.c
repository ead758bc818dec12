/*
 * Unit tests: the parsers and encoders of message-derived strings and the
 * route-set trust rule (sc_codec.c).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "sc_codec.h"
#include "test_util.h"

#define S(lit) ((str){(char *)(lit), (int)sizeof(lit) - 1})

START_TEST(test_siphash_reference_vector)
{
	/* SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e */
	unsigned char key[16], msg[15];
	int i;

	for(i = 0; i < 16; i++)
		key[i] = (unsigned char)i;
	for(i = 0; i < 15; i++)
		msg[i] = (unsigned char)i;
	ck_assert(sc_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
	/* the empty message of the reference implementation's table */
	ck_assert(sc_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
}
END_TEST

START_TEST(test_pin_round_trip_and_mac)
{
	unsigned char key[16], other[16];
	char buf[128];
	str pair = S("node-dc1-1"), cid = S("abc@host"), v, p, m;
	int n;

	sc_key_derive("a-secret-of-16+chars", 20, key);
	sc_key_derive("another-secret-16chars", 22, other);
	n = sc_pin_encode(&pair, &cid, key, buf, sizeof(buf));
	ck_assert_int_eq(n, (int)strlen(";scp=node-dc1-1~") + 16);
	ck_assert(strncmp(buf, ";scp=node-dc1-1~", 16) == 0);
	/* decode the value as a Route URI would carry it */
	v.s = buf + 5;
	v.len = n - 5;
	ck_assert_int_eq(sc_pin_decode(&v, &p, &m), 0);
	ck_assert(STR_IS(p, "node-dc1-1"));
	ck_assert_int_eq(m.len, 16);
	ck_assert(sc_pin_verify(&p, &m, &cid, key));
	/* another Call-ID, another key, another pair: no */
	{
		str cid2 = S("abd@host"), p2 = S("node-dc2-1");
		ck_assert(!sc_pin_verify(&p, &m, &cid2, key));
		ck_assert(!sc_pin_verify(&p, &m, &cid, other));
		ck_assert(!sc_pin_verify(&p2, &m, &cid, key));
		ck_assert(!sc_pin_verify(&p, &m, &cid, NULL));
	}
	/* no key: a bare pin */
	n = sc_pin_encode(&pair, &cid, NULL, buf, sizeof(buf));
	ck_assert_str_eq(buf, ";scp=node-dc1-1");
	v.s = buf + 5;
	v.len = n - 5;
	ck_assert_int_eq(sc_pin_decode(&v, &p, &m), 0);
	ck_assert_int_eq(m.len, 0);
	ck_assert(!sc_pin_verify(&p, &m, &cid, key));
	/* too small a buffer */
	ck_assert_int_eq(sc_pin_encode(&pair, &cid, key, buf, 20), -1);
}
END_TEST

START_TEST(test_pin_long_callid)
{
	unsigned char key[16];
	char cidbuf[2000], buf[128];
	str pair = S("n1"), cid, v, p, m;
	int n;

	memset(cidbuf, 'c', sizeof(cidbuf));
	cid.s = cidbuf;
	cid.len = sizeof(cidbuf);
	sc_key_derive("0123456789abcdef", 16, key);
	n = sc_pin_encode(&pair, &cid, key, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	v.s = buf + 5;
	v.len = n - 5;
	ck_assert_int_eq(sc_pin_decode(&v, &p, &m), 0);
	ck_assert(sc_pin_verify(&p, &m, &cid, key));
	cidbuf[1999] = 'd';
	ck_assert(!sc_pin_verify(&p, &m, &cid, key));
}
END_TEST

START_TEST(test_pin_decode_rejects)
{
	const char *bad[] = {"", "~", "n1~", "n1~0123", "n1~0123456789abcdeZ",
			"n1~0123456789ABCDEF", "n1;lr", "n 1", "n1%3B",
			"n1~0123456789abcdef0", "n1~~0123456789abcde",
			"0123456789012345678901234567890123456789012345678901234567890123",
			NULL};
	str v, p, m;
	int i;

	for(i = 0; bad[i]; i++) {
		v.s = (char *)bad[i];
		v.len = strlen(bad[i]);
		ck_assert_msg(sc_pin_decode(&v, &p, &m) < 0, "accepted '%s'", bad[i]);
	}
	v = S("n1");
	ck_assert_int_eq(sc_pin_decode(&v, &p, &m), 0);
	ck_assert(STR_IS(p, "n1"));
	ck_assert_int_eq(sc_pin_decode(NULL, &p, &m), -1);
}
END_TEST

START_TEST(test_flow_round_trip)
{
	const char *ok[] = {"sip:127.0.0.1:5060", "sip:127.1.2.3:5062;transport=tcp",
			"sips:[2001:db8::1]:5061;transport=tls", "sip:[::1]:5060",
			"sip:host.example.net", "sip:h-1.example:1", NULL};
	char enc[512], dec[256];
	str u, v;
	int i, n, dl;

	for(i = 0; ok[i]; i++) {
		u.s = (char *)ok[i];
		u.len = strlen(ok[i]);
		n = sc_flow_encode(&u, enc, sizeof(enc));
		ck_assert_int_gt(n, 0);
		/* nothing a URI parameter cannot carry */
		ck_assert(strpbrk(enc, ";=,?@<> \"") == NULL);
		v.s = enc;
		v.len = n;
		ck_assert_int_eq(sc_flow_decode(&v, dec, sizeof(dec), &dl), 0);
		ck_assert_int_eq(dl, u.len);
		ck_assert_str_eq(dec, ok[i]);
	}
	/* what the path module writes (":" unescaped) decodes too */
	v = S("sip:127.25.9.3:55065");
	ck_assert_int_eq(sc_flow_decode(&v, dec, sizeof(dec), &dl), 0);
	v = S("sip:127.2.3.4:5060%3btransport%3dtcp");
	ck_assert_int_eq(sc_flow_decode(&v, dec, sizeof(dec), &dl), 0);
	ck_assert_str_eq(dec, "sip:127.2.3.4:5060;transport=tcp");
}
END_TEST

START_TEST(test_flow_decode_rejects)
{
	const char *bad[] = {"", "127.0.0.1:5060", "tel:+123", "sip:", "sip::5060",
			"sip:127.2.3.4:", "sip:127.2.3.4:5060%", "sip:127.2.3.4:5060%3",
			"sip:127.2.3.4:5060%zz", "sip:127.2.3.4%3e", "sip:127.2.3.4:5060;lr",
			"sip:127.2.3.4:5060;transport=", "sip:a@127.2.3.4", "sip:[::1",
			"sip:127.2.3.4:5060%3btransport%3dtcp%3bmaddr%3d127.6.6.6",
			"sip:127.2.3.4:1234567", "sip:127.2.3.4%00", "sip:127.2.3.4%20x", NULL};
	char dec[256];
	str v;
	int i, dl;

	for(i = 0; bad[i]; i++) {
		v.s = (char *)bad[i];
		v.len = strlen(bad[i]);
		ck_assert_msg(sc_flow_decode(&v, dec, sizeof(dec), &dl) < 0,
				"accepted '%s'", bad[i]);
	}
	/* output buffer too small */
	v = S("sip:127.0.0.1:5060");
	ck_assert_int_eq(sc_flow_decode(&v, dec, 8, &dl), -1);
}
END_TEST

START_TEST(test_expires_parse)
{
	unsigned int e;

	ck_assert_int_eq(sc_expires_parse("3600", 4, &e), 0);
	ck_assert_uint_eq(e, 3600);
	ck_assert_int_eq(sc_expires_parse(" 0 \r\n", 5, &e), 0);
	ck_assert_uint_eq(e, 0);
	/* RFC 3261 20.19: above 2^32-1 means 2^32-1, no overflow to the past */
	ck_assert_int_eq(sc_expires_parse("4294967296", 10, &e), 0);
	ck_assert_uint_eq(e, 4294967295u);
	ck_assert_int_eq(sc_expires_parse("99999999999999999999999", 23, &e), 0);
	ck_assert_uint_eq(e, 4294967295u);
	ck_assert_int_eq(sc_expires_parse("2147483647", 10, &e), 0);
	ck_assert_uint_eq(e, 2147483647u);
	/* empty, signed, garbage: refused (never "0 = remove") */
	ck_assert_int_eq(sc_expires_parse("", 0, &e), -1);
	ck_assert_int_eq(sc_expires_parse("  ", 2, &e), -1);
	ck_assert_int_eq(sc_expires_parse("abc", 3, &e), -1);
	ck_assert_int_eq(sc_expires_parse("-1", 2, &e), -1);
	ck_assert_int_eq(sc_expires_parse("+5", 2, &e), -1);
	ck_assert_int_eq(sc_expires_parse("1x", 2, &e), -1);
	ck_assert_int_eq(sc_expires_parse("1 2", 3, &e), -1);
	ck_assert_int_eq(sc_expires_parse(NULL, 3, &e), -1);
}
END_TEST

START_TEST(test_expires_clamp)
{
	ck_assert_uint_eq(sc_expires_clamp(0, 60, 86400), 0);
	ck_assert_uint_eq(sc_expires_clamp(30, 60, 86400), 60);
	ck_assert_uint_eq(sc_expires_clamp(3600, 60, 86400), 3600);
	ck_assert_uint_eq(sc_expires_clamp(4294967295u, 60, 86400), 86400);
	ck_assert_uint_eq(sc_expires_clamp(4294967295u, 0, 0), 4294967295u);
}
END_TEST

START_TEST(test_xgr_parse)
{
	str u;
	const char *bad[] = {"", "   ", "<>", "tel:+1", "<sip:127.2.3.4",
			"sip:127.2.3.4>", "sip:a b", "sip:127.2.3.4, sip:127.5.6.7",
			"\"x\" <sip:127.2.3.4>", "sip:", "<sip:127.2.3.4>;x=1", NULL};
	int i;

	ck_assert_int_eq(sc_xgr_parse("sip:127.0.0.1:5080", 18, &u), 0);
	ck_assert(STR_IS(u, "sip:127.0.0.1:5080"));
	ck_assert_int_eq(
			sc_xgr_parse(" <sip:127.0.0.1:5080;transport=tcp> \r\n", 38, &u), 0);
	ck_assert(STR_IS(u, "sip:127.0.0.1:5080;transport=tcp"));
	ck_assert_int_eq(sc_xgr_parse("SIPS:h.example", 14, &u), 0);
	for(i = 0; bad[i]; i++)
		ck_assert_msg(sc_xgr_parse(bad[i], strlen(bad[i]), &u) < 0,
				"accepted '%s'", bad[i]);
	{
		char big[300];
		memset(big, 'a', sizeof(big));
		memcpy(big, "sip:", 4);
		ck_assert_int_eq(sc_xgr_parse(big, sizeof(big), &u), -1);
	}
}
END_TEST

START_TEST(test_uri_param)
{
	str params = S("lr;ftag=abc;scp=node-dc1-1;x"), v;

	ck_assert_int_eq(sc_uri_param(&params, "scp", &v), 0);
	ck_assert(STR_IS(v, "node-dc1-1"));
	ck_assert_int_eq(sc_uri_param(&params, "lr", &v), 0);
	ck_assert_int_eq(v.len, 0);
	ck_assert_int_eq(sc_uri_param(&params, "sc", &v), -1);
	ck_assert_int_eq(sc_uri_param(&params, "SCP", &v), 0);
	ck_assert_int_eq(sc_uri_param(&params, "x", &v), 0);
	{
		str e = S("scp=");
		ck_assert_int_eq(sc_uri_param(&e, "scp", &v), 0);
		ck_assert_int_eq(v.len, 0);
	}
	{
		str e = S(";;;");
		ck_assert_int_eq(sc_uri_param(&e, "scp", &v), -1);
	}
}
END_TEST

static int plan(int src, const int *k, int n, int *consume, int *next)
{
	sc_plan_t p;
	int v = sc_route_plan(src, k, n, &p);
	*consume = p.consume;
	*next = p.next;
	return v;
}

START_TEST(test_route_plan_outsider)
{
	int c, nx;
	const int self_foreign[] = {SC_HOP_SELF, SC_HOP_FOREIGN};
	const int foreign[] = {SC_HOP_FOREIGN};
	const int self_proxy_server_foreign[] = {
			SC_HOP_SELF, SC_HOP_PROXY, SC_HOP_SERVER, SC_HOP_FOREIGN};
	const int proxies[] = {SC_HOP_PROXY, SC_HOP_SELF, SC_HOP_PROXY};
	int many[60];
	int i;

	/* ours then a foreign host, or only a foreign host: refused */
	ck_assert_int_eq(
			plan(SC_SRC_OUTSIDER, self_foreign, 2, &c, &nx), SC_PLAN_DENY);
	ck_assert_int_eq(plan(SC_SRC_OUTSIDER, foreign, 1, &c, &nx), SC_PLAN_DENY);
	ck_assert_int_eq(plan(SC_SRC_SBC, foreign, 1, &c, &nx), SC_PLAN_DENY);
	/* cluster entries consumed, the SIP Server next: allowed */
	ck_assert_int_eq(
			plan(SC_SRC_OUTSIDER, self_proxy_server_foreign, 4, &c, &nx),
			SC_PLAN_OK);
	ck_assert_int_eq(c, 2);
	ck_assert_int_eq(nx, 2);
	/* every entry a proxy of the cluster: all consumed */
	ck_assert_int_eq(plan(SC_SRC_OUTSIDER, proxies, 3, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 3);
	ck_assert_int_eq(nx, -1);
	/* 60 times ourselves: consumed at once, no loop */
	for(i = 0; i < 60; i++)
		many[i] = SC_HOP_SELF;
	ck_assert_int_eq(plan(SC_SRC_OUTSIDER, many, 60, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 60);
	/* no Route at all */
	ck_assert_int_eq(plan(SC_SRC_OUTSIDER, NULL, 0, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 0);
	ck_assert_int_eq(nx, -1);
}
END_TEST

START_TEST(test_route_plan_cluster)
{
	int c, nx;
	const int self_proxy[] = {SC_HOP_SELF, SC_HOP_PROXY, SC_HOP_FOREIGN};
	const int self_foreign[] = {SC_HOP_SELF, SC_HOP_FOREIGN};
	const int self_only[] = {SC_HOP_SELF, SC_HOP_SELF};

	/* towards an endpoint: the proxy holding its flow is the next hop */
	ck_assert_int_eq(plan(SC_SRC_SERVER, self_proxy, 3, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 1);
	ck_assert_int_eq(nx, 1);
	ck_assert_int_eq(plan(SC_SRC_PROXY, self_proxy, 3, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 1);
	/* a SIP Server may route anywhere (it is trusted) */
	ck_assert_int_eq(plan(SC_SRC_SERVER, self_foreign, 2, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(nx, 1);
	ck_assert_int_eq(plan(SC_SRC_SERVER, self_only, 2, &c, &nx), SC_PLAN_OK);
	ck_assert_int_eq(c, 2);
	ck_assert_int_eq(nx, -1);
}
END_TEST

/* a reply counts only from where its branch went */
START_TEST(test_reply_src)
{
	sc_addr_t d = {2, {127, 0, 1, 11}, 5060, 1}, s = d;

	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 0), 1);
	s.port = 5070; /* another port */
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 0), 0);
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 1), 1);
	s = d;
	s.ip[3] = 66; /* another address */
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 1), 0);
	s = d;
	s.proto = 2; /* another transport */
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 1), 0);
	s = d;
	s.af = 10; /* another family, same first bytes */
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 1), 0);
	/* IPv6: all 16 bytes count; bytes past an IPv4 address do not */
	{
		sc_addr_t d6 = {10, {0}, 5060, 2}, s6;
		d6.ip[15] = 1;
		s6 = d6;
		ck_assert_int_eq(sc_reply_src_ok(&d6, &s6, 0), 1);
		s6.ip[8] = 1;
		ck_assert_int_eq(sc_reply_src_ok(&d6, &s6, 0), 0);
		s = d;
		s.ip[7] = 9;
		ck_assert_int_eq(sc_reply_src_ok(&d, &s, 0), 1);
	}
	/* nothing to compare with: never */
	ck_assert_int_eq(sc_reply_src_ok(NULL, &s, 1), 0);
	d.af = 0;
	s.af = 0;
	ck_assert_int_eq(sc_reply_src_ok(&d, &s, 1), 0);
}
END_TEST

Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, test_reply_src);
	tcase_add_test(tc, test_siphash_reference_vector);
	tcase_add_test(tc, test_pin_round_trip_and_mac);
	tcase_add_test(tc, test_pin_long_callid);
	tcase_add_test(tc, test_pin_decode_rejects);
	tcase_add_test(tc, test_flow_round_trip);
	tcase_add_test(tc, test_flow_decode_rejects);
	tcase_add_test(tc, test_expires_parse);
	tcase_add_test(tc, test_expires_clamp);
	tcase_add_test(tc, test_xgr_parse);
	tcase_add_test(tc, test_uri_param);
	tcase_add_test(tc, test_route_plan_outsider);
	tcase_add_test(tc, test_route_plan_cluster);
	suite_add_tcase(s, tc);
	return s;
}
