/* kexec's boot-entry parsing (agent/kexec.c): extlinux/syslinux configs
 * as syslinux, Debian's u-boot-menu and this project's test disks write
 * them (DEFAULT, MENU DEFAULT, global APPEND, INITRD lists, initrd= in
 * APPEND, relative paths, "APPEND -"), Boot Loader Specification entries,
 * and every refusal; then the search in a real directory tree standing for
 * the mounted root: config before loader entries before the vmlinuz links,
 * newest loader entry first, /boot-relative paths, absolute symlinks kept
 * inside the root, the profile's kernel_args appended once. The load
 * itself (kexec_file_load, the reboot) runs under QEMU:
 * tests/e2e/test_kexec.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/kexec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int xl(const char *text, const char *dir, struct agent_boot_entry *e, char *err)
{
	memset(e, 0xa5, sizeof(*e));
	return agent_extlinux_parse(text, strlen(text), dir, e, err, 256);
}

static void test_extlinux_vectors(void **state)
{
	struct agent_boot_entry e;
	char err[256];

	(void)state;
	/* the e2e installed disk's config */
	assert_int_equal(xl("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n"
	                    "\tKERNEL /boot/vmlinuz\n\tINITRD /boot/initrd\n"
	                    "\tAPPEND root=/dev/vda1 ro console=ttyS0 panic=-1 quiet\n",
	                    "boot/extlinux", &e, err),
	                 0);
	assert_string_equal(e.kernel, "boot/vmlinuz");
	assert_int_equal(e.n_initrd, 1);
	assert_string_equal(e.initrd[0], "boot/initrd");
	assert_string_equal(e.cmdline, "root=/dev/vda1 ro console=ttyS0 panic=-1 quiet");
	assert_string_equal(e.label, "linux");

	/* DEFAULT picks the second label; keywords in any case; CRLF; relative
	 * paths are the config directory's; INITRD lists */
	assert_int_equal(
	        xl("# comment\r\ndefault second\r\nlabel first\r\n  linux vmlinuz-old\r\n"
	           "label second\r\n  Linux vmlinuz-new\r\n  initrd ucode.img,initrd.img\r\n"
	           "  append root=UUID=abc rw\r\n",
	           "boot/extlinux", &e, err),
	        0);
	assert_string_equal(e.label, "second");
	assert_string_equal(e.kernel, "boot/extlinux/vmlinuz-new");
	assert_int_equal(e.n_initrd, 2);
	assert_string_equal(e.initrd[0], "boot/extlinux/ucode.img");
	assert_string_equal(e.initrd[1], "boot/extlinux/initrd.img");
	assert_string_equal(e.cmdline, "root=UUID=abc rw");

	/* MENU DEFAULT wins over DEFAULT; the global APPEND for a label without
	 * its own; no initrd */
	assert_int_equal(xl("UI menu.c32\nDEFAULT a\nAPPEND quiet root=/dev/sda2\nLABEL a\n"
	                    "KERNEL /a\nLABEL b\nMENU LABEL Debian\nMENU DEFAULT\nKERNEL /b\n",
	                    "", &e, err),
	                 0);
	assert_string_equal(e.label, "b");
	assert_string_equal(e.kernel, "b");
	assert_int_equal(e.n_initrd, 0);
	assert_string_equal(e.cmdline, "quiet root=/dev/sda2");

	/* no DEFAULT: the first label; "APPEND -" is none even with a global
	 * one; initrd= among the APPEND words when there is no INITRD line */
	assert_int_equal(xl("APPEND global\nLABEL one\nKERNEL /vmlinuz\nAPPEND -\nLABEL two\n", "x",
	                    &e, err),
	                 0);
	assert_string_equal(e.label, "one");
	assert_string_equal(e.cmdline, "");
	assert_int_equal(xl("LABEL l\nKERNEL /vmlinuz\nAPPEND initrd=/i1,i2 root=/dev/vda1\n",
	                    "boot/syslinux", &e, err),
	                 0);
	assert_int_equal(e.n_initrd, 2);
	assert_string_equal(e.initrd[0], "i1");
	assert_string_equal(e.initrd[1], "boot/syslinux/i2");
	assert_string_equal(e.cmdline, "initrd=/i1,i2 root=/dev/vda1");
}

static void test_extlinux_refusals(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "", "no LABEL" },
		{ "DEFAULT linux\nKERNEL /boot/vmlinuz\n", "no LABEL" },
		{ "DEFAULT nope\nLABEL linux\nKERNEL /k\n", "DEFAULT nope names no LABEL" },
		{ "LABEL linux\nAPPEND root=/dev/vda1\n", "LABEL linux has no KERNEL or LINUX" },
		{ "LABEL hd\nKERNEL chain.c32\n", "COM32 module" },
		{ "LABEL l\nKERNEL /boot/../../etc/shadow\n", "not a plain path" },
		{ "LABEL l\nKERNEL /k\nINITRD ../x\n", "not a plain path" },
		{ "LABEL l\nKERNEL /k\nINITRD a,b,c,d,e,f,g,h,i\n", "more than 8 initrds" },
	};
	struct agent_boot_entry e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(xl(bad[i].text, "", &e, err), -EINVAL);
		if (!strstr(err, bad[i].why))
			fail_msg("vector %zu: \"%s\" does not say \"%s\"", i, err, bad[i].why);
	}
	{
		/* an APPEND over the kernel's line limit */
		size_t n = AGENT_KEXEC_CMDLINE_MAX + 64;
		char *t = malloc(n + 64);

		assert_non_null(t);
		memcpy(t, "LABEL l\nKERNEL /k\nAPPEND ", 25);
		memset(t + 25, 'a', n);
		t[25 + n] = '\0';
		assert_int_equal(xl(t, "", &e, err), -EINVAL);
		assert_non_null(strstr(err, "APPEND longer than"));
		free(t);
	}
}

static void test_bls(void **state)
{
	static const char fedora[] =
	        "title Fedora Linux (6.5.6-300.fc39.x86_64) 39\nversion 6.5.6-300.fc39.x86_64\n"
	        "linux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd "
	        "/initramfs-6.5.6-300.fc39.x86_64.img\n"
	        "options root=UUID=1234 ro rhgb\noptions quiet\ngrub_users $grub_users\n";
	struct agent_boot_entry e;
	char err[256];

	(void)state;
	assert_int_equal(agent_bls_parse(fedora, strlen(fedora), &e, err, sizeof(err)), 0);
	assert_string_equal(e.kernel, "vmlinuz-6.5.6-300.fc39.x86_64");
	assert_int_equal(e.n_initrd, 1);
	assert_string_equal(e.initrd[0], "initramfs-6.5.6-300.fc39.x86_64.img");
	assert_string_equal(e.cmdline, "root=UUID=1234 ro rhgb quiet");
	assert_string_equal(e.label, "Fedora Linux (6.5.6-300.fc39.x86_64) 39");
	assert_int_equal(agent_bls_parse("title x\nefi /EFI/x.efi\n", 23, &e, err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "efi entry"));
	assert_int_equal(agent_bls_parse("title x\noptions a\n", 18, &e, err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "no linux line"));
	assert_int_equal(agent_bls_parse("linux /../x\n", 12, &e, err, sizeof(err)), -EINVAL);
}

/* ---- the search in a directory tree ----------------------------------------------- */

static char top[64];

static bool have_openat2(void)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC };
	long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));

	if (fd >= 0)
		close((int)fd);
	return fd >= 0 || errno != ENOSYS;
}

static void put(const char *path, const char *text)
{
	char p[256], *s;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", top, path);
	for (s = p + strlen(top) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void rm(const char *path)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", top, path);
	unlink(p);
}

static int find(const char *uuid, const char *extra, struct agent_boot_entry *e, char *what,
                char *err)
{
	int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	assert_true(fd >= 0);
	r = agent_kexec_find_entry(fd, uuid, extra, e, what, 320, err, 512);
	close(fd);
	return r;
}

static int setup_tree(void **state)
{
	(void)state;
	snprintf(top, sizeof(top), "/tmp/rbt-kexec.XXXXXX");
	return mkdtemp(top) ? 0 : -1;
}

static int teardown_tree(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_find(void **state)
{
	struct agent_boot_entry e;
	char what[320], err[512], p[256];

	(void)state;
	/* nothing at all */
	assert_int_equal(find(NULL, "", &e, what, err), -ENOENT);
	assert_non_null(strstr(err, "no kernel to start"));

	/* Debian's links only: absolute symlinks resolve inside the root; the
	 * line from the root's UUID, the profile's arguments after it */
	put("boot/vmlinuz-6.1.0-56-amd64", "kernel");
	put("boot/initrd.img-6.1.0-56-amd64", "initrd");
	if (have_openat2()) {
		snprintf(p, sizeof(p), "%s/vmlinuz", top);
		assert_int_equal(symlink("/boot/vmlinuz-6.1.0-56-amd64", p), 0);
		snprintf(p, sizeof(p), "%s/initrd.img", top);
		assert_int_equal(symlink("boot/initrd.img-6.1.0-56-amd64", p), 0);
	} else {
		/* valgrind does not know openat2; the fallback follows no
		 * symlink at all (common/util.c): plain files then */
		print_message("no openat2: the links are plain files\n");
		put("vmlinuz", "kernel");
		put("initrd.img", "initrd");
	}
	assert_int_equal(find("0a0b", "nvidia-drm.modeset=1", &e, what, err), 0);
	assert_string_equal(e.kernel, "vmlinuz");
	assert_int_equal(e.n_initrd, 1);
	assert_string_equal(e.initrd[0], "initrd.img");
	assert_string_equal(e.cmdline, "root=UUID=0a0b ro nvidia-drm.modeset=1");
	/* no UUID and no etc/kernel/cmdline: no line to boot with */
	assert_int_equal(find(NULL, "", &e, what, err), -ENOENT);
	put("etc/kernel/cmdline", "root=/dev/sda2 ro quiet\n");
	assert_int_equal(find(NULL, "", &e, what, err), 0);
	assert_string_equal(e.cmdline, "root=/dev/sda2 ro quiet");

	/* a symlink pointing out of the root stays in it */
	snprintf(p, sizeof(p), "%s/boot/vmlinuz", top);
	assert_int_equal(symlink("../../../../../../etc/passwd", p), 0);
	assert_int_equal(find(NULL, "", &e, what, err), 0);
	assert_string_equal(e.kernel, "vmlinuz"); /* boot/vmlinuz resolves to nothing */
	unlink(p);

	/* loader entries beat the links: the newest by version order, paths
	 * relative to a separate /boot found below boot/ */
	put("boot/loader/entries/deb-6.1.0-9.conf", "linux /vmlinuz-6.1.0-9\noptions old\n");
	put("boot/loader/entries/deb-6.1.0-56.conf",
	    "linux /vmlinuz-6.1.0-56-amd64\ninitrd /initrd.img-6.1.0-56-amd64\noptions root=x\n");
	assert_int_equal(find(NULL, "quiet", &e, what, err), 0);
	assert_string_equal(what, "boot/loader/entries/deb-6.1.0-56.conf");
	assert_string_equal(e.kernel, "boot/vmlinuz-6.1.0-56-amd64");
	assert_string_equal(e.initrd[0], "boot/initrd.img-6.1.0-56-amd64");
	assert_string_equal(e.cmdline, "root=x quiet");
	/* the newest one's kernel missing: the next entry is not taken blindly,
	 * it must exist too (vmlinuz-6.1.0-9 does not), and so must the links' */
	rm("boot/vmlinuz-6.1.0-56-amd64");
	rm("vmlinuz");
	assert_int_equal(find(NULL, "", &e, what, err), -ENOENT);
	assert_non_null(
	        strstr(err, "deb-6.1.0-56.conf: kernel vmlinuz-6.1.0-56-amd64: No such file"));
	put("boot/vmlinuz-6.1.0-56-amd64", "kernel");

	/* an extlinux config beats both; kernel_args already on its APPEND line
	 * (stage 2 put them there) are not added twice */
	put("boot/extlinux/extlinux.conf",
	    "DEFAULT l\nLABEL l\nKERNEL /boot/vmlinuz-6.1.0-56-amd64\n"
	    "INITRD /boot/initrd.img-6.1.0-56-amd64\n"
	    "APPEND root=/dev/vda1 ro nvidia-drm.modeset=1\n");
	assert_int_equal(find(NULL, "nvidia-drm.modeset=1", &e, what, err), 0);
	assert_string_equal(what, "boot/extlinux/extlinux.conf LABEL l");
	assert_string_equal(e.cmdline, "root=/dev/vda1 ro nvidia-drm.modeset=1");
	/* a config whose kernel is missing: said, and the next source taken */
	put("boot/extlinux/extlinux.conf", "LABEL l\nKERNEL /boot/vmlinuz-gone\n");
	assert_int_equal(find(NULL, "", &e, what, err), 0);
	assert_string_equal(what, "boot/loader/entries/deb-6.1.0-56.conf");
}

/* What the caller falls back on: a reason, before anything is mounted. */
static void test_load_refusals(void **state)
{
	struct agent_kexec_opts o = { .target = "/proc/self/cmdline", .extra_args = "" };
	char rep[256] = "", err[256] = "";

	(void)state;
	assert_int_equal(agent_kexec_load(&o, rep, sizeof(rep), err, sizeof(err)), -ENOTBLK);
	assert_string_equal(err, "/proc/self/cmdline is not a block device");
	o.target = "/nonexistent/disk";
	assert_int_equal(agent_kexec_load(&o, rep, sizeof(rep), err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/disk: No such file"));
	assert_string_equal(rep, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extlinux_vectors),
		cmocka_unit_test(test_extlinux_refusals),
		cmocka_unit_test(test_bls),
		cmocka_unit_test(test_load_refusals),
		cmocka_unit_test_setup_teardown(test_find, setup_tree, teardown_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
