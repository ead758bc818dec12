#include <check.h>
Suite *health_suite(void)
{
	return suite_create("health");
}
