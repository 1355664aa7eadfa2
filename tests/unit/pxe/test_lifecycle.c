/* The operator lifecycle (lifecycle.c) as a table: every action in every
 * kind of state, held or not, with the resulting state and flag, or the
 * 409 reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/lifecycle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct vec {
	const char *action, *state;
	bool held;
	const char *want_state; /* NULL: refused */
	bool want_held;
	const char *why; /* substring of the reason when refused */
};

static const struct vec vecs[] = {
	/* provision: nodes without an installation, and retired ones */
	{ "provision", "new", false, "provisioning", false, NULL },
	{ "provision", "discovered", false, "provisioning", false, NULL },
	{ "provision", "failed", false, "provisioning", false, NULL },
	{ "provision", "retired", false, "provisioning", false, NULL },
	{ "provision", "new", true, NULL, false, "node is held; release it first" },
	{ "provision", "provisioning", false, NULL, false, "already being provisioned" },
	{ "provision", "wiping", false, NULL, false, "already being provisioned (state wiping)" },
	{ "provision", "imaging", false, NULL, false, "already being provisioned" },
	{ "provision", "installing", false, NULL, false, "already being provisioned" },
	{ "provision", "updating", false, NULL, false, "already being provisioned" },
	{ "provision", "ready", false, NULL, false, "installed; use reimage" },
	{ "provision", "imaged", false, NULL, false, "installed; use reimage" },
	{ "provision", "localboot", false, NULL, false, "installed; use reimage" },
	{ "provision", "weird", false, NULL, false, "not allowed in this state (state weird)" },
	/* reimage: from anything but retired, never while held */
	{ "reimage", "new", false, "provisioning", false, NULL },
	{ "reimage", "ready", false, "provisioning", false, NULL },
	{ "reimage", "imaging", false, "provisioning", false, NULL },
	{ "reimage", "failed", false, "provisioning", false, NULL },
	{ "reimage", "updating", false, "provisioning", false, NULL },
	{ "reimage", "retired", false, NULL, false, "node is retired" },
	{ "reimage", "ready", true, NULL, false, "node is held" },
	/* hold / release: a flag, the state stays */
	{ "hold", "ready", false, "ready", true, NULL },
	{ "hold", "imaging", false, "imaging", true, NULL },
	{ "hold", "ready", true, NULL, false, "already held" },
	{ "hold", "retired", false, NULL, false, "node is retired" },
	{ "release", "ready", true, "ready", false, NULL },
	{ "release", "ready", false, NULL, false, "node is not held" },
	{ "release", "retired", false, NULL, false, "node is not held" },
	/* retire: from anything, clearing the hold */
	{ "retire", "ready", false, "retired", false, NULL },
	{ "retire", "imaging", true, "retired", false, NULL },
	{ "retire", "new", false, "retired", false, NULL },
	{ "retire", "retired", false, NULL, false, "already retired" },
};

static void test_table(void **state)
{
	for (size_t i = 0; i < N(vecs); i++) {
		const struct vec *v = &vecs[i];
		enum lifecycle_action a;
		char next[24] = "unset", why[200] = "";
		bool held = !v->want_held;
		int r;

		assert_int_equal(lifecycle_action_parse(v->action, &a), 0);
		assert_string_equal(lifecycle_action_name(a), v->action);
		r = lifecycle_apply(a, v->state, v->held, next, &held, why, sizeof(why));
		if (v->want_state) {
			if (r != 0)
				fail_msg("%s in %s%s: refused \"%s\"", v->action, v->state,
				         v->held ? " (held)" : "", why);
			assert_string_equal(next, v->want_state);
			assert_int_equal(held, v->want_held);
		} else {
			char prefix[40];

			if (r != -EPERM)
				fail_msg("%s in %s%s: allowed (-> %s), want refused", v->action,
				         v->state, v->held ? " (held)" : "", next);
			snprintf(prefix, sizeof(prefix), "cannot %s: ", v->action);
			assert_memory_equal(why, prefix, strlen(prefix));
			if (!strstr(why, v->why))
				fail_msg("%s in %s: reason \"%s\" lacks \"%s\"", v->action,
				         v->state, why, v->why);
			/* Nothing is written on a refusal. */
			assert_string_equal(next, "unset");
		}
	}
}

static void test_parse(void **state)
{
	enum lifecycle_action a;

	assert_int_equal(lifecycle_action_parse("reboot", &a), -EINVAL);
	assert_int_equal(lifecycle_action_parse("", &a), -EINVAL);
	assert_int_equal(lifecycle_action_parse(NULL, &a), -EINVAL);
	assert_int_equal(lifecycle_action_parse("Reimage", &a), -EINVAL);
	assert_true(lifecycle_state_busy("imaging"));
	assert_false(lifecycle_state_busy("ready"));
	assert_true(lifecycle_state_installed("ready"));
	assert_false(lifecycle_state_installed("retired"));
}

static void test_short_buffer(void **state)
{
	char next[24], why[12];
	bool held;

	/* The reason is cut, never overflows. */
	assert_int_equal(
	        lifecycle_apply(LC_REIMAGE, "retired", false, next, &held, why, sizeof(why)),
	        -EPERM);
	assert_int_equal(strlen(why), sizeof(why) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_short_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
