/* Operator tokens (optoken.c): the tokens file grammar (vectors of good
 * and bad lines), the check (right, wrong, empty, another's), and the
 * file operations on a real temporary file: create appends a hash line
 * (never the token), refuses a taken or bad name, revoke removes one line
 * and keeps the others and comments, both keep the mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/optoken.h"
#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char H1[] = "4c3ee1e3a9ab1d1c9a1d9e3e41b0e0b0d1c9a1d9e3e41b0e0b0d1c9a1d9e3e41";

static void test_parse_good(void **state)
{
	char text[400], err[200];
	struct rb_optokens *set = NULL;

	snprintf(text, sizeof(text),
	         "# operators\n\n%s alice\n  %s\tbob@site  \r\n%s ci-deploy_2.x", H1, H1, H1);
	assert_int_equal(rb_optokens_parse(text, strlen(text), &set, err, sizeof(err)), 0);
	assert_int_equal(rb_optokens_count(set), 3);
	assert_string_equal(rb_optokens_name(set, 0), "alice");
	assert_string_equal(rb_optokens_name(set, 1), "bob@site");
	assert_string_equal(rb_optokens_name(set, 2), "ci-deploy_2.x");
	assert_null(rb_optokens_name(set, 3));
	rb_optokens_free(set);
	assert_int_equal(rb_optokens_parse("", 0, &set, err, sizeof(err)), 0);
	assert_int_equal(rb_optokens_count(set), 0);
	rb_optokens_free(set);
	rb_optokens_free(NULL);
}

static void test_parse_bad(void **state)
{
	static const struct {
		const char *tail; /* after the hash */
		const char *want;
	} bad[] = {
		{ "", "expected" },
		{ "x", "expected" },         /* no separator */
		{ " a b", "may only hold" }, /* space in a name */
		{ " -rf", "may only hold" }, /* leading '-' */
		{ " na\x01me", "may only hold" },
		{ " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1 to 64" },
	};
	char text[300], err[200];
	struct rb_optokens *set = NULL;

	for (size_t i = 0; i < N(bad); i++) {
		snprintf(text, sizeof(text), "# c\n%s%s\n", H1, bad[i].tail);
		err[0] = '\0';
		if (rb_optokens_parse(text, strlen(text), &set, err, sizeof(err)) != -EINVAL ||
		    !strstr(err, "line 2: ") || !strstr(err, bad[i].want))
			fail_msg("line \"%s\": \"%s\"", bad[i].tail, err);
	}
	/* Not hex, short hash, duplicate names, a NUL. */
	assert_int_equal(rb_optokens_parse("zz alice\n", 9, &set, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%.63sg alice\n", H1);
	assert_int_equal(rb_optokens_parse(text, strlen(text), &set, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "64 hex"));
	snprintf(text, sizeof(text), "%s a\n%s a\n", H1, H1);
	assert_int_equal(rb_optokens_parse(text, strlen(text), &set, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "used twice"));
	snprintf(text, sizeof(text), "%s a\n", H1);
	text[10] = '\0';
	assert_int_equal(rb_optokens_parse(text, 67, &set, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
}

static void test_names(void **state)
{
	assert_true(rb_optoken_name_ok("a"));
	assert_true(rb_optoken_name_ok("ops@site.example"));
	assert_false(rb_optoken_name_ok(""));
	assert_false(rb_optoken_name_ok(NULL));
	assert_false(rb_optoken_name_ok("-x"));
	assert_false(rb_optoken_name_ok("a/b"));
	assert_false(rb_optoken_name_ok("a b"));
}

static void test_bearer(void **state)
{
	size_t n = 0;
	const char *t;

	t = rb_bearer_token("Bearer abc", &n);
	assert_non_null(t);
	assert_int_equal(n, 3);
	t = rb_bearer_token("bearer   abc  ", &n);
	assert_non_null(t);
	assert_memory_equal(t, "abc", 3);
	assert_int_equal(n, 3);
	assert_null(rb_bearer_token("Basic abc", &n));
	assert_null(rb_bearer_token("Bearer ", &n));
	assert_null(rb_bearer_token("Bearer    ", &n));
	assert_null(rb_bearer_token(NULL, &n));
	assert_null(rb_bearer_token("Bearerabc", &n));
}

static void test_file(void **state)
{
	char dir[] = "/tmp/rboptokXXXXXX", path[64], t1[RB_OPTOKEN_LEN + 1], t2[RB_OPTOKEN_LEN + 1],
	     err[300], *text;
	struct rb_optokens *set = NULL;
	struct stat st;
	FILE *f;
	long len;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tokens", dir);
	assert_int_equal(rb_optoken_create(path, "alice", t1, err, sizeof(err)), 0);
	assert_int_equal(strlen(t1), RB_OPTOKEN_LEN);
	assert_memory_equal(t1, "rbo_", 4);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A comment an operator added survives everything below. */
	f = fopen(path, "a");
	assert_non_null(f);
	fputs("# kept\n", f);
	fclose(f);
	assert_int_equal(rb_optoken_create(path, "bob", t2, err, sizeof(err)), 0);
	assert_string_not_equal(t1, t2);
	assert_int_equal(rb_optoken_create(path, "alice", t2, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "exists already"));
	assert_int_equal(rb_optoken_create(path, "bad name", t2, err, sizeof(err)), -EINVAL);

	/* The file holds hashes only. */
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	assert_null(strstr(text, t1 + 4));
	assert_int_equal(rb_optokens_parse(text, (size_t)len, &set, err, sizeof(err)), 0);
	free(text);
	assert_string_equal(rb_optokens_check(set, t1, strlen(t1)), "alice");
	assert_string_equal(rb_optokens_check(set, t2, strlen(t2)), "bob");
	assert_null(rb_optokens_check(set, t1, strlen(t1) - 1));
	assert_null(rb_optokens_check(set, "", 0));
	assert_null(rb_optokens_check(NULL, t1, strlen(t1)));
	rb_optokens_free(set);

	/* Revoke one: the other and the comment stay, the mode too. */
	assert_int_equal(rb_optoken_revoke(path, "alice", err, sizeof(err)), 0);
	assert_int_equal(rb_optoken_revoke(path, "alice", err, sizeof(err)), -ENOENT);
	assert_int_equal(rb_optokens_load(path, &set, err, sizeof(err)), 0);
	assert_int_equal(rb_optokens_count(set), 1);
	assert_null(rb_optokens_check(set, t1, strlen(t1)));
	assert_string_equal(rb_optokens_check(set, t2, strlen(t2)), "bob");
	rb_optokens_free(set);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f = fopen(path, "r");
	assert_non_null(f);
	{
		char line[200];
		bool kept = false;

		while (fgets(line, sizeof(line), f))
			kept = kept || !strcmp(line, "# kept\n");
		assert_true(kept);
	}
	fclose(f);
	assert_int_equal(rb_optokens_load("/nonexistent/x", &set, err, sizeof(err)), -ENOENT);
	unlink(path);
	assert_int_equal(rb_optoken_revoke(path, "bob", err, sizeof(err)), -ENOENT);
	assert_int_equal(access(path, F_OK), -1); /* revoke does not leave a file behind */
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good), cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_names),      cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
