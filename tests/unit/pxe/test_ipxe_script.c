/* Unit tests for pxe/ipxe_script.c: substitution, the iPXE value rule,
 * unknown variables, malformed placeholders, the output cap, and every
 * template built into rackbootd rendering with the variables http.c sets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pxe/embedded.h"
#include "pxe/ipxe_script.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int render(const char *tmpl, const struct ipxe_var *vars, size_t n, size_t max, char **out,
                  char *err, size_t errlen)
{
	size_t len = 0;
	int r = ipxe_render(tmpl, strlen(tmpl), vars, n, max, out, &len, err, errlen);

	if (r == 0)
		assert_int_equal(len, strlen(*out));
	return r;
}

static void test_substitution(void **state)
{
	const struct ipxe_var vars[] = {
		{ "base", "http://10.0.0.1:8080" },
		{ "mac", "52:54:00:12:34:56" },
		{ "empty", "" },
	};
	static const struct {
		const char *tmpl, *want;
	} cases[] = {
		{ "", "" },
		{ "no placeholders\n", "no placeholders\n" },
		{ "{{base}}", "http://10.0.0.1:8080" },
		{ "chain {{base}}/boot/{{mac}}.ipxe\n",
		  "chain http://10.0.0.1:8080/boot/52:54:00:12:34:56.ipxe\n" },
		{ "a{{ mac }}b", "a52:54:00:12:34:56b" },
		{ "[{{empty}}]", "[]" },
		{ "${mac} stays for iPXE", "${mac} stays for iPXE" },
		{ "{single} brace", "{single} brace" },
		{ "{{mac}}{{mac}}", "52:54:00:12:34:5652:54:00:12:34:56" },
		{ "trailing {", "trailing {" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		char *out = NULL, err[128] = "";
		int r = render(cases[i].tmpl, vars, N(vars), IPXE_SCRIPT_MAX, &out, err,
		               sizeof(err));

		assert_int_equal(r, 0);
		assert_string_equal(out, cases[i].want);
		free(out);
	}
}

static void test_unknown_variable(void **state)
{
	const struct ipxe_var vars[] = { { "mac", "52:54:00:12:34:56" }, { "nullval", NULL } };
	char *out = (char *)0x1, err[128] = "";

	(void)state;
	assert_int_equal(render("kernel {{kernel}}\n", vars, N(vars), 4096, &out, err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, "'kernel'"));
	assert_ptr_equal(out, (char *)0x1); /* ret_* untouched on failure */
	assert_int_equal(render("{{nullval}}", vars, N(vars), 4096, &out, err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, "'nullval'"));
	assert_int_equal(render("{{mac}}", NULL, 0, 4096, &out, NULL, 0), -ENOENT);
}

static void test_malformed(void **state)
{
	const struct ipxe_var vars[] = { { "mac", "x" } };
	static const char *bad[] = {
		"{{mac",
		"{{mac}",
		"{{}}",
		"{{ }}",
		"{{ma c}}",
		"{{mac-1}}",
		"{{$mac}}",
		"{{",
		"x {{ {{mac}} }}",
		"{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", /* 33 characters */
	};
	char *out = NULL, err[128];

	(void)state;
	for (size_t i = 0; i < N(bad); i++) {
		err[0] = '\0';
		assert_int_equal(render(bad[i], vars, N(vars), 4096, &out, err, sizeof(err)),
		                 -EINVAL);
		assert_non_null(strstr(err, "malformed"));
	}
	/* A NUL inside the template is refused, not silently truncated. */
	assert_int_equal(ipxe_render("ab\0cd", 5, vars, N(vars), 4096, &out, NULL, NULL, 0),
	                 -EINVAL);
}

/* The injection vectors: each would let a hostile hostname run a command,
 * expand a setting, or turn the rest of the line into a comment/label. */
static void test_escaping(void **state)
{
	static const char *hostile[] = {
		"node1\nreboot", "node1\r\nshell", "x || shell", "x && shell",
		"x | y",         "${root-path}",   "$",          "#comment",
		"a;b",           "a\"b",           "a'b",        "a\\b",
		"a{b}",          "tab\there",      "nul\x01",    "del\x7f",
		"caf\xc3\xa9",   "a<b>c",          "a`b`",
	};
	static const char *fine[] = {
		"node-01.rack3.example.com",
		"console=tty0 console=ttyS0,115200 ip=dhcp",
		"http://10.0.0.1:8080",
		"52:54:00:12:34:56",
		"gpu_a100+ib@site~2",
		"a%20b?c",
		"",
	};
	char *out = NULL, err[160];

	(void)state;
	for (size_t i = 0; i < N(hostile); i++) {
		struct ipxe_var v = { "hostname", hostile[i] };

		assert_false(ipxe_value_is_safe(hostile[i]));
		err[0] = '\0';
		assert_int_equal(render("echo {{hostname}}\n", &v, 1, 4096, &out, err, sizeof(err)),
		                 -EINVAL);
		assert_non_null(strstr(err, "'hostname'"));
	}
	for (size_t i = 0; i < N(fine); i++) {
		struct ipxe_var v = { "hostname", fine[i] };

		assert_true(ipxe_value_is_safe(fine[i]));
		assert_int_equal(render("echo {{hostname}}\n", &v, 1, 4096, &out, NULL, 0), 0);
		assert_int_equal(strncmp(out, "echo ", 5), 0);
		assert_string_equal(out + 5 + strlen(fine[i]), "\n");
		free(out);
	}
	assert_false(ipxe_value_is_safe(NULL));
}

static void test_label_at_line_start(void **state)
{
	struct ipxe_var v = { "x", ":label" };
	char *out = NULL, err[128] = "";

	(void)state;
	assert_int_equal(render("echo ok\n{{x}}\n", &v, 1, 4096, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'x'"));
	assert_int_equal(render("  {{x}}", &v, 1, 4096, &out, NULL, 0), -EINVAL);
	/* Inside a line, ':' is harmless (URLs, MACs). */
	assert_int_equal(render("echo {{x}}\n", &v, 1, 4096, &out, NULL, 0), 0);
	assert_string_equal(out, "echo :label\n");
	free(out);
}

static void test_output_cap(void **state)
{
	char big[300];
	struct ipxe_var v = { "v", big };
	char *out = NULL, err[128] = "";
	size_t len = 0;

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* Exactly at the cap is fine, one byte over is not. */
	assert_int_equal(ipxe_render("{{v}}", 5, &v, 1, 299, &out, &len, NULL, 0), 0);
	assert_int_equal(len, 299);
	free(out);
	assert_int_equal(ipxe_render("{{v}}!", 6, &v, 1, 299, &out, &len, err, sizeof(err)),
	                 -E2BIG);
	assert_non_null(strstr(err, "exceeds"));
	/* The cap applies to template text too, and 0 means nothing fits. */
	assert_int_equal(ipxe_render("abc", 3, NULL, 0, 2, &out, &len, NULL, 0), -E2BIG);
	assert_int_equal(ipxe_render("", 0, NULL, 0, 0, &out, &len, NULL, 0), 0);
	assert_string_equal(out, "");
	free(out);
	/* A caller cannot raise the cap beyond IPXE_SCRIPT_MAX: a template that
	 * repeats a 299-byte value 300 times (~90 KB) is refused. */
	{
		size_t n = 300 * 5;
		char *tmpl = malloc(n + 1);

		assert_non_null(tmpl);
		for (size_t i = 0; i < 300; i++)
			memcpy(tmpl + i * 5, "{{v}}", 5);
		tmpl[n] = '\0';
		assert_int_equal(ipxe_render(tmpl, n, &v, 1, SIZE_MAX, &out, &len, NULL, 0),
		                 -E2BIG);
		free(tmpl);
	}
}

/* The variables http.c passes, with realistic values. */
static const struct ipxe_var standard_vars[] = {
	{ "base", "http://10.77.0.1:8080" },
	{ "server", "10.77.0.1" },
	{ "mac", "52:54:00:12:34:56" },
	{ "kernel", "vmlinuz" },
	{ "initrd", "agent/initrd.img" },
	{ "initrd_name", "initrd.img" },
	{ "cmdline", "console=tty0 console=ttyS0,115200" },
	{ "hostname", "node-01" },
	{ "profile", "gpu-a100" },
	{ "state", "provisioning" },
	{ "token", "00112233445566778899aabbccddeeff" },
};

static void test_embedded_templates(void **state)
{
	static const char *names[] = { "discovery.ipxe", "provision.ipxe", "localboot.ipxe" };

	(void)state;
	assert_null(rb_embedded_find("nonexistent.ipxe"));
	assert_null(rb_embedded_find(NULL));
	for (size_t i = 0; i < N(names); i++) {
		const struct rb_embedded_file *f = rb_embedded_find(names[i]);
		char *out = NULL, err[160] = "";
		size_t len = 0;
		int r;

		assert_non_null(f);
		assert_string_equal(f->name, names[i]);
		assert_int_equal(f->len, strlen(f->data));
		r = ipxe_render(f->data, f->len, standard_vars, N(standard_vars), IPXE_SCRIPT_MAX,
		                &out, &len, err, sizeof(err));
		if (r != 0)
			fail_msg("%s: %s", names[i], err);
		assert_int_equal(strncmp(out, "#!ipxe\n", 7), 0);
		assert_null(strstr(out, "{{"));
		assert_non_null(strstr(out, "52:54:00:12:34:56"));
		if (i < 2) {
			/* Boots the agent with the UEFI initrd name and the server
			 * URL, and never loops forever: it ends in reboot. */
			assert_non_null(strstr(out,
			                       "kernel http://10.77.0.1:8080/boot/vmlinuz "
			                       "initrd=initrd.img console=tty0 "
			                       "console=ttyS0,115200 "
			                       "rackboot.server=http://10.77.0.1:8080 "
			                       "rackboot.mac=52:54:00:12:34:56 "
			                       "rackboot.token=00112233445566778899aabbccddeeff "
			                       "rackboot.mode="));
			assert_non_null(
			        strstr(out, "initrd http://10.77.0.1:8080/boot/agent/initrd.img"));
			assert_non_null(strstr(out, "\nreboot\n"));
		} else {
			assert_non_null(strstr(out, "sanboot --no-describe --drive 0x80"));
			assert_non_null(strstr(out, "\nexit 1\n"));
		}
		free(out);
	}
}

/* Every template renders only when every standard variable is present:
 * dropping one variable the template uses fails with its name. */
static void test_embedded_missing_variable(void **state)
{
	const struct rb_embedded_file *f = rb_embedded_find("discovery.ipxe");
	struct ipxe_var vars[N(standard_vars)];
	char *out = NULL, err[160] = "";

	(void)state;
	assert_non_null(f);
	memcpy(vars, standard_vars, sizeof(vars));
	vars[3].name = "not_kernel"; /* "kernel" */
	assert_int_equal(ipxe_render(f->data, f->len, vars, N(vars), IPXE_SCRIPT_MAX, &out, NULL,
	                             err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, "'kernel'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitution),
		cmocka_unit_test(test_unknown_variable),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_label_at_line_start),
		cmocka_unit_test(test_output_cap),
		cmocka_unit_test(test_embedded_templates),
		cmocka_unit_test(test_embedded_missing_variable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
