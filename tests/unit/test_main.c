/*
 * sipcluster unit tests (Check): one runner for every suite.
 */
#include <check.h>
#include <stdlib.h>

Suite *topo_suite(void);
Suite *health_suite(void);
Suite *select_suite(void);
Suite *codec_suite(void);
Suite *sync_suite(void);
Suite *rcu_suite(void);

int main(void)
{
	SRunner *sr;
	int failed;

	sr = srunner_create(topo_suite());
	srunner_add_suite(sr, health_suite());
	srunner_add_suite(sr, select_suite());
	srunner_add_suite(sr, codec_suite());
	srunner_add_suite(sr, sync_suite());
	srunner_add_suite(sr, rcu_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
