/* Stage 2's pure parts: the root partition choice, filesystem and table
 * detection, template rendering, APPEND lines of boot loader configs, and
 * a root written by agent_postinst_apply (a directory, no chroot needed:
 * no kernel arguments, so update-grub is not run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/postinst.h"
#include "agent/stage2.h"
#include "agent/update.h"

static void test_pick_root(void **state)
{
	struct agent_rootpart p[] = {
		{ .nr = 1, .size = 256 << 20, .fstype = "" },
		{ .nr = 2, .size = 8ULL << 30, .fstype = "ext4" },
		{ .nr = 3, .size = 100ULL << 30, .fstype = "" },
		{ .nr = 4, .size = 8ULL << 30, .fstype = "xfs" },
		{ .nr = 5, .size = 20ULL << 30, .fstype = "xfs" },
	};
	char err[256];
	size_t idx = 99;

	(void)state;
	/* auto: the largest ext4/xfs (not the larger raw one) */
	assert_int_equal(agent_pick_root(p, 5, 0, &idx, err, sizeof(err)), 0);
	assert_int_equal(p[idx].nr, 5);
	/* a tie: the lower number */
	assert_int_equal(agent_pick_root(p, 4, 0, &idx, err, sizeof(err)), 0);
	assert_int_equal(p[idx].nr, 2);
	assert_int_equal(agent_pick_root(p, 5, 4, &idx, err, sizeof(err)), 0);
	assert_int_equal(p[idx].nr, 4);
	assert_int_equal(agent_pick_root(p, 5, 3, &idx, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "root partition 3 holds no ext4 or xfs"));
	assert_int_equal(agent_pick_root(p, 5, 9, &idx, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "root partition 9 is not on the disk"));
	assert_int_equal(agent_pick_root(p, 1, 0, &idx, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no ext4 or xfs partition for the root (partitions: 1"));
	assert_int_equal(agent_pick_root(p, 0, 0, &idx, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "partitions: none"));
}

static void test_fs_and_table(void **state)
{
	uint8_t *b = calloc(1, 65536);
	uint64_t t[8][3];
	size_t n = 0;

	(void)state;
	assert_string_equal(agent_fs_type(b, 2048), "");
	b[1024 + 56] = 0x53;
	b[1024 + 57] = 0xef;
	assert_string_equal(agent_fs_type(b, 2048), "ext4");
	assert_string_equal(agent_fs_type(b, 1024), ""); /* too short to tell */
	memcpy(b, "XFSB", 4);
	assert_string_equal(agent_fs_type(b, 2048), "xfs");

	/* MBR: a primary, an extended (skipped), an empty slot, a primary */
	memset(b, 0, 65536);
	assert_int_equal(agent_table_parts(b, 65536, 512, t, 8, &n), -ENOENT);
	b[510] = 0x55;
	b[511] = 0xaa;
	b[446 + 4] = 0x83;
	b[446 + 8] = 0x00;
	b[446 + 9] = 0x08;  /* LBA 2048 */
	b[446 + 14] = 0x01; /* 65536 sectors */
	b[462 + 4] = 0x05;
	b[462 + 8] = 1;
	b[462 + 12] = 1;
	b[494 + 4] = 0x83;
	b[494 + 10] = 0x10; /* LBA 1048576 */
	b[494 + 12] = 0x20; /* 32 sectors */
	assert_int_equal(agent_table_parts(b, 65536, 512, t, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(t[0][0], 1);
	assert_int_equal(t[0][1], 2048 * 512);
	assert_int_equal(t[0][2], 65536ULL * 512);
	assert_int_equal(t[1][0], 4);
	assert_int_equal(t[1][1], 1048576ULL * 512);
	assert_int_equal(t[1][2], 32 * 512);

	/* GPT: entries 1 and 3 used (2 unused) */
	memset(b, 0, 65536);
	memcpy(b + 512, "EFI PART", 8);
	b[512 + 72] = 2;   /* entries at LBA 2 */
	b[512 + 80] = 128; /* 128 entries */
	b[512 + 84] = 128; /* of 128 bytes */
	b[1024 + 32] = 34; /* entry 0: 34..2081 */
	b[1024 + 40] = 0x21;
	b[1024 + 41] = 0x08;
	b[1024 + 256 + 33] = 0x10; /* entry 2: 4096..8191 */
	b[1024 + 256 + 40] = 0xff;
	b[1024 + 256 + 41] = 0x1f;
	assert_int_equal(agent_table_parts(b, 65536, 512, t, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(t[0][0], 1);
	assert_int_equal(t[0][1], 34 * 512);
	assert_int_equal(t[0][2], 2048 * 512);
	assert_int_equal(t[1][0], 3);
	assert_int_equal(t[1][1], 4096 * 512);
	assert_int_equal(t[1][2], 4096 * 512);
	free(b);
}

static void test_render(void **state)
{
	const struct agent_var v[] = { { "a", "1" }, { "long", "value" }, { "empty", "" } };
	const char *t;
	char *out = NULL, err[128];
	size_t len;

	(void)state;
	assert_int_equal(
	        agent_render("x={{a}} {{long}}{{empty}}|{}{", 29, v, 3, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "x=1 value|{}{");
	free(out);
	assert_int_equal(agent_render("{{nope}}", 8, v, 3, &out, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "unknown placeholder {{nope}}"));
	assert_int_equal(agent_render("{{a", 3, v, 3, &out, err, sizeof(err)), -EINVAL);
	/* every template built in, and each renders with the variables stage 2 sets */
	static const char *const names[] = { "hostname",           "hosts",
		                             "authorized_keys",    "grub-rackboot.cfg",
		                             "agent.conf",         "rackboot-agent.service",
		                             "rackboot-agent.init" };
	const struct agent_var all[] = {
		{ "hostname", "h.example" },
		{ "short_hostname", "h" },
		{ "profile", "p" },
		{ "ssh_keys", "k" },
		{ "kernel_args", "x=1" },
		{ "server", "http://s" },
		{ "mac", "m" },
		{ "token", "t" },
		{ "repo", "http://s/repo" },
		{ "repo_hosts", "" },
		{ "image", "i" },
		{ "image_version", "1" },
		{ "interval_s", "30" },
		{ "jitter_s", "5" },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		t = agent_postinst_template(names[i], &len);
		assert_non_null(t);
		assert_int_equal(agent_render(t, len, all, sizeof(all) / sizeof(all[0]), &out, err,
		                              sizeof(err)),
		                 0);
		assert_null(strstr(out, "{{"));
		free(out);
	}
	assert_null(agent_postinst_template("passwd", &len));
}

static void test_append_lines(void **state)
{
	static const char cfg[] = "DEFAULT linux\nLABEL linux\n  KERNEL /vmlinuz\n"
	                          "  APPEND root=/dev/sda2 ro\r\n\tappend\tquiet  \n"
	                          "  APPENDIX no\n  append root=x iommu=pt\nlast";
	char *out = NULL, *again = NULL;
	unsigned changed = 0;

	(void)state;
	assert_int_equal(agent_append_lines(cfg, strlen(cfg), "iommu=pt", &out, &changed), 0);
	assert_int_equal(changed, 2);
	assert_string_equal(out,
	                    "DEFAULT linux\nLABEL linux\n  KERNEL /vmlinuz\n"
	                    "  APPEND root=/dev/sda2 ro iommu=pt\r\n\tappend\tquiet iommu=pt  \n"
	                    "  APPENDIX no\n  append root=x iommu=pt\nlast");
	/* idempotent: a second run changes nothing */
	assert_int_equal(agent_append_lines(out, strlen(out), "iommu=pt", &again, &changed), 0);
	assert_int_equal(changed, 0);
	assert_string_equal(again, out);
	free(out);
	free(again);
}

static void test_apply_dir(void **state)
{
	char dir[] = "/tmp/rbstage2XXXXXX", path[256], buf[2048], rep[512], err[512];
	char *keys[] = { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps a@b",
		         "ssh-rsa AAAAB3NzaC1yc2EAAAA c" };
	struct agent_postinst pi = { .profile = "gpu",
		                     .hostname = "gpu-1.rack",
		                     .ssh_keys = keys,
		                     .n_ssh_keys = 2,
		                     .kernel_args = "",
		                     .server = "http://10.0.0.1:8080",
		                     .mac = "52:54:00:00:00:01",
		                     .token = "0123456789abcdef0123456789abcdef",
		                     .repo = "http://10.0.0.1:8080/repo",
		                     .repo_hosts = "cache1.rack3.example 10.0.0.5:8080",
		                     .image = "debian12",
		                     .image_version = "3" };
	struct agent_update_conf uc;
	struct stat st;
	int rootfd, fd;
	ssize_t n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	rootfd = open(dir, O_RDONLY | O_DIRECTORY);
	/* a symlink where the config goes must not be followed */
	snprintf(path, sizeof(path), "%s/etc", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/etc/hostname", dir);
	assert_int_equal(symlink("/tmp/rbstage2-victim", path), 0);
	assert_int_equal(agent_postinst_apply(rootfd, dir, &pi, rep, sizeof(rep), err, sizeof(err)),
	                 geteuid() == 0 ? 0 : -EPERM);
	if (geteuid() != 0) { /* fchown to root needs root */
		close(rootfd);
		return;
	}
	assert_non_null(strstr(rep, "hostname gpu-1.rack, 2 SSH key(s)"));
	assert_int_equal(lstat("/tmp/rbstage2-victim", &st), -1);
	fd = openat(rootfd, "etc/hostname", O_RDONLY | O_NOFOLLOW);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	close(fd);
	assert_string_equal(buf, "gpu-1.rack\n");
	fd = openat(rootfd, "root/.ssh/authorized_keys", O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	close(fd);
	assert_non_null(strstr(buf, "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps a@b\n"
	                            "ssh-rsa AAAAB3NzaC1yc2EAAAA c\n"));
	assert_int_equal(fstatat(rootfd, "etc/rackboot/agent.conf", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* what update reads back: the repository and its other hosts */
	fd = openat(rootfd, "etc/rackboot/agent.conf", O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	close(fd);
	if (agent_update_conf_parse(buf, (size_t)n, &uc, err, sizeof(err)) != 0)
		fail_msg("agent.conf as written: %s", err);
	assert_string_equal(uc.repo, "http://10.0.0.1:8080/repo");
	assert_int_equal(uc.n_repo_hosts, 2);
	assert_string_equal(uc.repo_hosts[0], "cache1.rack3.example");
	assert_string_equal(uc.repo_hosts[1], "10.0.0.5:8080");
	assert_int_equal(fstatat(rootfd, "etc/default/grub.d/rackboot.cfg", &st, 0), -1);
	close(rootfd);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

/* Reads path below dir into buf ("" when absent). */
static void slurp(const char *dir, const char *path, char *buf, size_t len)
{
	char p[512];
	FILE *f;
	size_t n = 0;

	snprintf(p, sizeof(p), "%s/%s", dir, path);
	f = fopen(p, "r");
	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* network = "dhcp" in each kind of image: netplan, ifupdown (with and
 * without a "source" line), systemd-networkd, and none of them. */
static void test_network(void **state)
{
	static const struct {
		const char *setup, *report;
	} kinds[] = {
		{ "mkdir -p etc/netplan", "network: netplan" },
		{ "mkdir -p etc/network && printf 'auto lo\\niface lo inet loopback' "
		  ">etc/network/interfaces",
		  "network: ifupdown, boot NIC named boot0" },
		{ "mkdir -p etc/network && printf 'source /etc/network/interfaces.d/*\\n' "
		  ">etc/network/interfaces",
		  "network: ifupdown, boot NIC named boot0" },
		{ "mkdir -p lib/systemd && : >lib/systemd/systemd-networkd",
		  "network: systemd-networkd" },
		{ "true", "network: the image has no netplan, ifupdown or systemd-networkd" },
	};
	struct agent_postinst pi = { .profile = "gpu",
		                     .hostname = "",
		                     .kernel_args = "",
		                     .server = "http://10.0.0.1:8080",
		                     .mac = "52:54:00:00:00:01",
		                     .token = "0123456789abcdef0123456789abcdef",
		                     .repo = "http://10.0.0.1:8080/repo",
		                     .image = "debian12",
		                     .image_version = "3",
		                     .network_dhcp = true };
	char dir[] = "/tmp/rbnetXXXXXX", cmd[512], rep[512], err[512], buf[1024];
	struct stat st;

	(void)state;
	if (geteuid() != 0) /* files are chowned to root */
		skip();
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		int rootfd;

		memcpy(dir, "/tmp/rbnetXXXXXX", sizeof(dir));
		assert_non_null(mkdtemp(dir));
		snprintf(cmd, sizeof(cmd), "cd '%s' && %s", dir, kinds[k].setup);
		assert_int_equal(system(cmd), 0);
		rootfd = open(dir, O_RDONLY | O_DIRECTORY);
		assert_true(rootfd >= 0);
		assert_int_equal(
		        agent_postinst_apply(rootfd, dir, &pi, rep, sizeof(rep), err, sizeof(err)),
		        0);
		assert_non_null(strstr(rep, kinds[k].report));
		switch (k) {
		case 0:
			slurp(dir, "etc/netplan/60-rackboot.yaml", buf, sizeof(buf));
			assert_non_null(strstr(buf, "macaddress: \"52:54:00:00:00:01\""));
			assert_non_null(strstr(buf, "dhcp4: true"));
			assert_int_equal(fstatat(rootfd, "etc/netplan/60-rackboot.yaml", &st, 0),
			                 0);
			assert_int_equal(st.st_mode & 0777, 0600);
			break;
		case 1:
		case 2:
			slurp(dir, "etc/systemd/network/10-rackboot-boot.link", buf, sizeof(buf));
			assert_non_null(strstr(buf, "MACAddress=52:54:00:00:00:01\n"));
			assert_non_null(strstr(buf, "Name=boot0\n"));
			slurp(dir, "etc/network/interfaces.d/rackboot-boot0", buf, sizeof(buf));
			assert_non_null(strstr(buf, "iface boot0 inet dhcp\n"));
			slurp(dir, "etc/network/interfaces", buf, sizeof(buf));
			/* the source line added once, after the image's own lines */
			assert_string_equal(buf, k == 1 ? "auto lo\niface lo inet loopback\n"
			                                  "source /etc/network/interfaces.d/*\n"
			                                : "source /etc/network/interfaces.d/*\n");
			break;
		case 3:
			slurp(dir, "etc/systemd/network/10-rackboot-boot.network", buf,
			      sizeof(buf));
			assert_non_null(strstr(buf, "[Match]\nMACAddress=52:54:00:00:00:01\n"));
			assert_non_null(strstr(buf, "DHCP=yes\n"));
			assert_int_equal(
			        readlinkat(rootfd,
			                   "etc/systemd/system/multi-user.target.wants/"
			                   "systemd-networkd.service",
			                   buf, sizeof(buf)),
			        (ssize_t)strlen("/lib/systemd/system/systemd-networkd.service"));
			break;
		default:
			assert_int_equal(fstatat(rootfd, "etc/systemd/network", &st, 0), -1);
			assert_int_equal(fstatat(rootfd, "etc/netplan", &st, 0), -1);
		}
		close(rootfd);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pick_root), cmocka_unit_test(test_fs_and_table),
		cmocka_unit_test(test_render),    cmocka_unit_test(test_append_lines),
		cmocka_unit_test(test_apply_dir), cmocka_unit_test(test_network),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
