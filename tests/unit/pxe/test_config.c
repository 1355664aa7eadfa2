/* Config loading and validation: defaults, every kind of bad value names
 * the file and line, overrides, boot-file mapping by architecture,
 * provisioning profiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/nodecfg.h"
#include "pxe/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpl[] = "/tmp/rbcfgXXXXXX";

static const char *write_conf(const char *text)
{
	int fd;

	memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return tmpl;
}

/* Loads text; returns the rc and leaves stderr text in errbuf. */
static int load(const char *text, struct rb_config **cfg, char *errbuf, size_t n)
{
	const char *p = write_conf(text);
	FILE *err = fmemopen(errbuf, n, "w");
	int r;

	memset(errbuf, 0, n);
	r = rb_config_load(p, NULL, err, cfg);
	fclose(err);
	unlink(p);
	return r;
}

static void test_defaults(void **state)
{
	struct rb_config *c = NULL;

	assert_int_equal(rb_config_load(NULL, NULL, stderr, &c), 0);
	assert_int_equal(c->dhcp_mode, RB_DHCP_PROXY);
	assert_int_equal(c->dhcp_port, 67);
	assert_int_equal(c->proxy_port, 4011);
	assert_int_equal(c->tftp_port, 69);
	assert_int_equal(c->tftp_max_blksize, 1468);
	assert_int_equal(c->tftp_max_window, 16);
	assert_int_equal(c->http_port, 8080);
	assert_string_equal(c->boot_bios, "undionly.kpxe");
	assert_string_equal(c->tftp_root, "/srv/rackboot/tftp");
	assert_string_equal(c->default_profile, "");
	assert_string_equal(c->repo_url, "");
	assert_int_equal(c->n_profiles, 0);
	assert_null(rb_config_profile(c, ""));
	assert_null(c->path);
	rb_config_free(c);
}

static void test_full_file(void **state)
{
	struct rb_config *c = NULL;
	char err[512];
	char a[INET_ADDRSTRLEN];

	assert_int_equal(load("interface = \"br0\"\n"
	                      "dhcp {\n mode = \"full\"\n pool_start = \"10.77.0.100\"\n"
	                      " pool_end = \"10.77.0.200\"\n dns = {\"10.77.0.1\", \"10.77.0.2\"}\n"
	                      " host \"52:54:00:12:34:56\" { address = \"10.77.0.50\" hostname = "
	                      "\"node01\" }\n}\n"
	                      "tftp { max_windowsize = 32 }\n",
	                      &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c->dhcp_mode, RB_DHCP_FULL);
	assert_string_equal(inet_ntop(AF_INET, &c->pool_start, a, sizeof(a)), "10.77.0.100");
	assert_int_equal(c->n_dns, 2);
	assert_int_equal(c->n_hosts, 1);
	assert_int_equal(c->hosts[0].mac[5], 0x56);
	assert_string_equal(c->hosts[0].hostname, "node01");
	assert_int_equal(c->tftp_max_window, 32);
	assert_non_null(c->path);
	rb_config_free(c);
}

static void test_profiles(void **state)
{
	const struct rb_profile *p;
	struct rb_config *c = NULL;
	char err[512];

	assert_int_equal(load("default_profile = \"debian12\"\n"
	                      "http { repo_url = \"http://10.77.0.1:8080/repo//\" }\n"
	                      "profile \"debian12\" {\n image = \"debian12\"\n}\n"
	                      "profile \"gpu-a100_2\" {\n image = \"ubuntu+cuda\"\n"
	                      " version = \"24.04-3\"\n wipe = \"full\"\n"
	                      " grow_last_partition = true\n after = \"poweroff\"\n"
	                      " disk = \"/dev/disk/by-id/nvme-SAMSUNG_MZ1L2_S665:1\"\n}\n",
	                      &c, err, sizeof(err)),
	                 0);
	assert_string_equal(c->default_profile, "debian12");
	/* Trailing slashes go: agents append "/images/...". */
	assert_string_equal(c->repo_url, "http://10.77.0.1:8080/repo");
	assert_int_equal(c->n_profiles, 2);
	p = rb_config_profile(c, "debian12");
	assert_non_null(p);
	/* The defaults of a profile. */
	assert_string_equal(p->image, "debian12");
	assert_string_equal(p->version, "latest");
	assert_int_equal(p->wipe, RB_WIPE_METADATA);
	assert_false(p->grow_last_partition);
	assert_int_equal(p->after, RB_AFTER_REBOOT);
	assert_string_equal(p->disk, "");
	p = rb_config_profile(c, "gpu-a100_2");
	assert_non_null(p);
	assert_string_equal(p->image, "ubuntu+cuda");
	assert_string_equal(p->version, "24.04-3");
	assert_int_equal(p->wipe, RB_WIPE_FULL);
	assert_true(p->grow_last_partition);
	assert_int_equal(p->after, RB_AFTER_POWEROFF);
	assert_string_equal(p->disk, "/dev/disk/by-id/nvme-SAMSUNG_MZ1L2_S665:1");
	assert_string_equal(rb_wipe_name(p->wipe), "full");
	assert_string_equal(rb_after_name(p->after), "poweroff");
	assert_string_equal(rb_after_name(RB_AFTER_KEXEC), "kexec");
	assert_null(rb_config_profile(c, "gpu"));
	assert_null(rb_config_profile(c, NULL));
	rb_config_free(c);
}

/* Package sets and the stage-2 keys of a profile. */
static void test_package_sets(void **state)
{
	const struct rb_profile *p;
	const struct rb_package_set *ps;
	struct rb_config *c = NULL;
	char err[512];

	assert_int_equal(
	        load("package_set \"gpu\" {\n packages = {\"nvidia-driver=550.54.15\", "
	             "\"cuda-runtime\"}\n}\n"
	             "package_set \"site\" { packages = {\"slurm-client=23.02.6-1~bpo12+1\", "
	             "\"cuda-runtime\"} }\n"
	             "profile \"gpu-node\" {\n image = \"debian12\"\n"
	             " package_sets = {\"gpu\", \"site\"}\n"
	             " kernel_args = \"modprobe.blacklist=nouveau intel_iommu=on iommu=pt\"\n"
	             " hostname = \"gpu-{mac}.{ip}.rack1\"\n"
	             " ssh_keys = {\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@site\",\n"
	             "  \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== \"}\n"
	             " root_partition = 2\n update_interval_s = 30\n update_jitter_s = 0\n"
	             " network = \"dhcp\"\n}\n"
	             "profile \"plain\" { image = \"debian12\" }\n",
	             &c, err, sizeof(err)),
	        0);
	assert_int_equal(c->n_package_sets, 2);
	ps = rb_config_package_set(c, "gpu");
	assert_non_null(ps);
	assert_int_equal(ps->n_pkgs, 2);
	assert_string_equal(ps->pkgs[0].name, "nvidia-driver");
	assert_string_equal(ps->pkgs[0].version, "550.54.15");
	assert_string_equal(ps->pkgs[1].name, "cuda-runtime");
	assert_string_equal(ps->pkgs[1].version, "");
	ps = rb_config_package_set(c, "site");
	assert_string_equal(ps->pkgs[0].version, "23.02.6-1~bpo12+1");
	assert_null(rb_config_package_set(c, "none"));
	assert_null(rb_config_package_set(c, NULL));
	p = rb_config_profile(c, "gpu-node");
	assert_int_equal(p->n_package_sets, 2);
	assert_string_equal(p->package_sets[0], "gpu");
	assert_string_equal(p->package_sets[1], "site");
	assert_string_equal(p->kernel_args, "modprobe.blacklist=nouveau intel_iommu=on iommu=pt");
	assert_string_equal(p->hostname, "gpu-{mac}.{ip}.rack1");
	assert_int_equal(p->n_ssh_keys, 2);
	assert_string_equal(p->ssh_keys[1], "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== ");
	assert_int_equal(p->root_partition, 2);
	assert_int_equal(p->update_interval_s, 30);
	assert_int_equal(p->update_jitter_s, 0);
	assert_true(p->network_dhcp);
	/* the defaults */
	p = rb_config_profile(c, "plain");
	assert_int_equal(p->update_interval_s, 300);
	assert_int_equal(p->update_jitter_s, 60);
	assert_false(p->network_dhcp);
	assert_int_equal(p->n_package_sets, 0);
	assert_null(p->package_sets);
	assert_int_equal(p->n_ssh_keys, 0);
	assert_string_equal(p->kernel_args, "");
	assert_string_equal(p->hostname, "");
	assert_int_equal(p->root_partition, 0);
	rb_config_free(c);
}

static void test_rules(void **state)
{
	struct rb_config *c = NULL;
	char err[512];

	assert_int_equal(load("profile \"gpu\" { image = \"cuda\" }\n"
	                      "profile \"deb\" { image = \"debian12\" }\n"
	                      "rule \"gpu\" {\n profile = \"gpu\"\n gpu_vendor = \"0x10DE\"\n"
	                      " min_gpus = 4\n min_memory_gib = 512\n"
	                      " cpu_model = \"Xeon(R) Platinum 'x' #1 {\"\n min_disks = 2\n"
	                      " min_nic_speed_mbps = 100000\n mac = \"52:54:00:*\"\n"
	                      " hostname = \"gpu-??.example.org\"\n}\n"
	                      "rule \"rest\" { profile = \"deb\" }\n",
	                      &c, err, sizeof(err)),
	                 0);
	/* File order is kept; unset conditions are 0 and "". */
	assert_int_equal(c->n_rules, 2);
	assert_string_equal(c->rules[0].name, "gpu");
	assert_string_equal(c->rules[0].profile, "gpu");
	assert_string_equal(c->rules[0].gpu_vendor, "0x10DE");
	assert_int_equal(c->rules[0].min_gpus, 4);
	assert_int_equal(c->rules[0].min_memory_gib, 512);
	assert_string_equal(c->rules[0].cpu_model, "Xeon(R) Platinum 'x' #1 {");
	assert_int_equal(c->rules[0].min_disks, 2);
	assert_int_equal(c->rules[0].min_nic_speed_mbps, 100000);
	assert_string_equal(c->rules[0].mac, "52:54:00:*");
	assert_string_equal(c->rules[0].hostname, "gpu-??.example.org");
	assert_string_equal(c->rules[1].name, "rest");
	assert_string_equal(c->rules[1].profile, "deb");
	assert_string_equal(c->rules[1].gpu_vendor, "");
	assert_int_equal(c->rules[1].min_gpus + c->rules[1].min_memory_gib + c->rules[1].min_disks +
	                         c->rules[1].min_nic_speed_mbps,
	                 0);
	assert_string_equal(c->rules[1].cpu_model, "");
	assert_string_equal(c->rules[1].mac, "");
	assert_string_equal(c->rules[1].hostname, "");
	rb_config_free(c);
}

struct bad {
	const char *text;
	const char *expect; /* substring of the error */
};

static const struct bad bad_vectors[] = {
	{ "\n\ndhcp { mode = \"fast\" }\n",
	  ":3: mode = \"fast\": expected \"proxy\" or \"full\" or \"off\"" },
	{ "dhcp {\n  port = 70000\n}\n", ":2: port = 70000: expected a port number" },
	{ "server_address = \"10.0.0.300\"\n",
	  ":1: server_address = \"10.0.0.300\": expected an IPv4" },
	{ "tftp {\n max_blksize = 7\n}\n",
	  ":2: max_blksize = 7: expected a number from 512 to 65464" },
	{ "tftp { root = \"relative/dir\" }\n",
	  ":1: root = \"relative/dir\": expected an absolute path" },
	{ "dhcp {\n host \"52:54:00:zz:34:56\" { address = \"10.0.0.5\" }\n}\n",
	  "expected a MAC address" },
	{ "dhcp {\n host \"52:54:00:12:34:56\" { hostname = \"x\" }\n}\n", "address is missing" },
	{ "tftp { port = \"abc\" }\n", ":1:" },
	{ "no_such_option = 1\n", ":1:" },
	{ "dhcp { mode = \"full\" }\n", "needs pool_start and pool_end" },
	{ "dhcp { mode = \"full\" pool_start = \"10.0.0.200\" pool_end = \"10.0.0.100\" }\n",
	  "pool_start must not be above pool_end" },
	{ "dhcp { netmask = \"255.0.255.0\" }\n", "not a contiguous netmask" },
	{ "log_level = \"loud\"\n", "expected \"error\" or \"warning\" or \"info\" or \"debug\"" },
	{ "user = \"bad user\"\n", "expected a name" },
	{ "discovery { cmdline = \"quiet\n  chain http://evil/x\" }\n", "discovery cmdline" },
	{ "discovery { kernel = \"vmlinuz || shell\" }\n", "discovery kernel" },
	{ "dhcp { mode = \"proxy\"\n", ":1: section opened here is never closed" },
	{ "dhcp { mode = \"proxy\" }\n}\n", ":2: unexpected closing brace" },
	{ "\nprofile \"a b\" { image = \"x\" }\n", ":2: profile \"a b\": expected a name" },
	{ "profile \"..\" { image = \"x\" }\n", "profile \"..\": expected a name" },
	{ "profile \"p\" {\n version = \"1\"\n}\n", "profile \"p\": image is missing" },
	{ "profile \"p\" {\n image = \"../etc\"\n}\n", ":2: image = \"../etc\": expected a name" },
	{ "profile \"p\" {\n image = \"x\"\n version = \"\"\n}\n",
	  ":3: version = \"\": expected a name" },
	{ "profile \"p\" {\n image = \"x\"\n wipe = \"zero\"\n}\n",
	  ":3: wipe = \"zero\": expected \"none\" or \"metadata\" or \"full\"" },
	{ "profile \"p\" {\n image = \"x\"\n after = \"halt\"\n}\n",
	  ":3: after = \"halt\": expected \"reboot\" or \"poweroff\" or \"none\" or \"kexec\"" },
	{ "profile \"p\" {\n image = \"x\"\n disk = \"sda\"\n}\n",
	  ":3: disk = \"sda\": expected \"\" (the agent picks) or a device path under /dev/" },
	{ "profile \"p\" { image = \"x\" disk = \"/dev/../etc/shadow\" }\n",
	  "disk = \"/dev/../etc/shadow\": expected" },
	{ "profile \"p\" { image = \"x\" disk = \"/dev/sda; reboot\" }\n", "disk = " },
	{ "profile \"p\" { image = \"x\" grow_last_partition = \"maybe\" }\n", ":1:" },
	{ "profile \"p\" { image = \"x\" }\nprofile \"p\" { image = \"y\" }\n",
	  "duplicate title 'p'" },
	{ "default_profile = \"gpu\"\n", "default_profile \"gpu\": no such profile" },
	{ "default_profile = \"a/b\"\n", ":1: default_profile = \"a/b\": expected a name" },
	{ "http {\n repo_url = \"ftp://mirror/repo\"\n}\n",
	  ":2: repo_url = \"ftp://mirror/repo\"" },
	{ "http { repo_url = \"http://a b/repo\" }\n", "repo_url = \"http://a b/repo\"" },
	{ "http { repo_url = \"http://\" }\n", "repo_url = \"http://\": expected" },
	/* Rules: an undefined profile names the file and the rule's line. */
	{ "profile \"deb\" { image = \"d\" }\nrule \"gpu\" {\n profile = \"gpu\"\n}\n",
	  ":4: rule \"gpu\": profile \"gpu\" is not defined" },
	{ "rule \"r\" { min_gpus = 1 }\n", "rule \"r\": profile is missing" },
	{ "rule \"a b\" { profile = \"p\" }\n", "rule \"a b\": expected a name" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" }\n"
	  "rule \"r\" { profile = \"p\" }\n",
	  ":3:" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" {\n profile = \"p\"\n"
	  " gpu_vendor = \"nvidia\"\n min_gpus = 1\n}\n",
	  ":4: gpu_vendor = \"nvidia\": expected \"\" or a PCI vendor id" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" gpu_vendor = \"0x10de\" "
	  "}\n",
	  "rule \"r\": gpu_vendor needs min_gpus = 1 or more" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" min_gpus = -1 }\n",
	  ":2: min_gpus = -1: expected a number from 0 to 1024" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" min_memory_gib = "
	  "2000000 }\n",
	  "min_memory_gib = 2000000: expected a number from 0 to 1048576" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" min_disks = \"two\" }\n",
	  ":2:" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" "
	  "min_nic_speed_mbps = 100000001 }\n",
	  "min_nic_speed_mbps = 100000001: expected" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" cpu_model = "
	  "\"Xeon\\\\\" }\n",
	  "cpu_model = " },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" mac = \"52:54:00:*;\" }\n",
	  "mac = \"52:54:00:*;\": expected \"\" or a pattern" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" hostname = \"a/b*\" }\n",
	  "hostname = \"a/b*\": expected \"\" or a pattern" },
	{ "profile \"p\" { image = \"x\" }\nrule \"r\" { profile = \"p\" no_such = 1 }\n", ":2:" },
	/* Package sets and the stage-2 keys of a profile. */
	{ "profile \"p\" {\n image = \"x\"\n package_sets = {\"gpu\"}\n}\n",
	  ":4: profile \"p\": package set \"gpu\" is not defined" },
	{ "package_set \"a\" { packages = {\"x=1\"} }\npackage_set \"b\" { packages = "
	  "{\"x\"} }\nprofile \"p\" {\n image = \"x\"\n package_sets = {\"a\", \"b\"}\n}\n",
	  ":6: profile \"p\": its package sets want different versions of x (\"1\" in an "
	  "earlier set, \"\" in \"b\"" },
	{ "package_set \"a\" {\n packages = {\"x=1\", \"y\", \"x=2\"}\n}\n",
	  "package_set \"a\": package \"x\" is named twice" },
	{ "package_set \"a\" {\n packages = {\"../x\"}\n}\n",
	  ":2: packages = \"../x\": expected \"NAME\"" },
	{ "package_set \"a\" { packages = {\"x=\"} }\n", "packages = \"x=\": expected" },
	{ "package_set \"a\" { packages = {\"x=1 2\"} }\n", "packages = \"x=1 2\": expected" },
	{ "package_set \"a b\" { }\n", "package_set \"a b\": expected a name" },
	{ "package_set \"a\" { }\npackage_set \"a\" { }\n", "duplicate title 'a'" },
	{ "package_set \"a\" { version = \"1\" }\n", ":1:" },
	{ "profile \"p\" {\n image = \"x\"\n package_sets = {\"a/b\"}\n}\n",
	  ":3: package_sets = \"a/b\": expected a name" },
	{ "profile \"p\" {\n image = \"x\"\n kernel_args = \"quiet $(reboot)\"\n}\n",
	  ":3: kernel_args = \"quiet $(reboot)\": expected words" },
	{ "profile \"p\" { image = \"x\" kernel_args = \"a  b\" }\n", "kernel_args = \"a  b\"" },
	{ "profile \"p\" { image = \"x\" kernel_args = \"a;b\" }\n", "kernel_args = \"a;b\"" },
	{ "profile \"p\" {\n image = \"x\"\n hostname = \"gpu_{mac}\"\n}\n",
	  ":3: hostname = \"gpu_{mac}\": expected \"\" or a host name" },
	{ "profile \"p\" { image = \"x\" hostname = \"gpu-{serial}\" }\n",
	  "hostname = \"gpu-{serial}\"" },
	{ "profile \"p\" { image = \"x\" hostname = \"-{mac}\" }\n", "hostname = \"-{mac}\"" },
	{ "profile \"p\" { image = \"x\" hostname = \"a..b\" }\n", "hostname = \"a..b\"" },
	{ "profile \"p\" {\n image = \"x\"\n ssh_keys = {\"AAAAC3Nza ops@site\"}\n}\n",
	  ":3: ssh_keys = \"AAAAC3Nza ops@site...\": expected an OpenSSH public key" },
	{ "profile \"p\" { image = \"x\" ssh_keys = {\"ssh-ed25519 AAAA\"} }\n",
	  "expected an OpenSSH public key" },
	{ "profile \"p\" { image = \"x\" ssh_keys = {\"command=\\\"sh\\\" ssh-ed25519 "
	  "AAAAC3NzaC1lZDI1NTE5AAAAIOps\"} }\n",
	  ":1:" },
	{ "profile \"p\" {\n image = \"x\"\n root_partition = 129\n}\n",
	  ":3: root_partition = 129: expected a number from 0 to 128" },
	{ "profile \"p\" {\n image = \"x\"\n update_interval_s = 1\n}\n",
	  ":3: update_interval_s = 1: expected a number from 5 to 86400" },
	{ "profile \"p\" {\n image = \"x\"\n network = \"static\"\n}\n",
	  ":3: network = \"static\": expected \"image\" or \"dhcp\"" },
};

static void test_bad_values(void **state)
{
	for (size_t i = 0; i < sizeof(bad_vectors) / sizeof(bad_vectors[0]); i++) {
		struct rb_config *c = (void *)0x1;
		char err[512];
		int r = load(bad_vectors[i].text, &c, err, sizeof(err));

		if (r != -EINVAL || !strstr(err, bad_vectors[i].expect) ||
		    !strstr(err, "/tmp/rbcfg"))
			fail_msg("vector %zu: r=%d err=\"%s\", want \"%s\" with the file name", i,
			         r, err, bad_vectors[i].expect);
		/* Nothing was handed out. */
		assert_ptr_equal(c, (void *)0x1);
	}
}

static void test_missing_file(void **state)
{
	struct rb_config *c = NULL;
	char err[256] = "";
	FILE *f = fmemopen(err, sizeof(err), "w");

	assert_int_equal(rb_config_load("/nonexistent/rb.conf", NULL, f, &c), -ENOENT);
	fclose(f);
	assert_non_null(strstr(err, "/nonexistent/rb.conf: cannot read"));
	assert_null(c);
}

static void test_overrides(void **state)
{
	struct rb_config_overrides o = {
		.interface = "eth9", .root = "/srv/x", .dhcp_mode = "full", .http_port = "81"
	};
	struct rb_config *c = NULL;
	char err[256];
	FILE *f;

	/* full without a pool is refused even from the command line */
	f = fmemopen(err, sizeof(err), "w");
	assert_int_equal(rb_config_load(NULL, &o, f, &c), -EINVAL);
	fclose(f);
	o.dhcp_mode = "off";
	assert_int_equal(rb_config_load(NULL, &o, stderr, &c), 0);
	assert_string_equal(c->interface, "eth9");
	assert_string_equal(c->tftp_root, "/srv/x/tftp");
	assert_string_equal(c->http_boot_root, "/srv/x/boot");
	assert_string_equal(c->repo_root, "/srv/x/repo");
	assert_int_equal(c->http_port, 81);
	rb_config_free(c);
	o.http_port = "0";
	f = fmemopen(err, sizeof(err), "w");
	assert_int_equal(rb_config_load(NULL, &o, f, &c), -EINVAL);
	fclose(f);
}

static void test_boot_file_by_arch(void **state)
{
	struct rb_config *c = NULL;
	bool http = true;

	assert_int_equal(rb_config_load(NULL, NULL, stderr, &c), 0);
	assert_string_equal(rb_config_boot_file(c, 0, &http), "undionly.kpxe");
	assert_false(http);
	assert_string_equal(rb_config_boot_file(c, 7, &http), "snponly.efi");
	assert_string_equal(rb_config_boot_file(c, 9, &http), "snponly.efi");
	assert_string_equal(rb_config_boot_file(c, 11, &http), "snponly-arm64.efi");
	assert_string_equal(rb_config_boot_file(c, 16, &http), "ipxe.efi");
	assert_true(http);
	assert_null(rb_config_boot_file(c, 42, &http));
	rb_config_free(c);
}

static void test_print_roundtrip(void **state)
{
	struct rb_config *c = NULL, *c2 = NULL;
	char err[512];
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(
	        load("dhcp { mode = \"full\" pool_start = \"10.1.0.10\" pool_end = "
	             "\"10.1.0.20\" host \"52:54:00:00:00:01\" { address = \"10.1.0.5\" } }\n"
	             "default_profile = \"b\"\nhttp { repo_url = \"https://cdn.example/r\" }\n"
	             "profile \"a\" { image = \"x\" package_sets = {\"gpu\", \"empty\"} "
	             "kernel_args = \"iommu=pt\" hostname = \"g-{mac}\" "
	             "ssh_keys = {\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF ops@site\"} "
	             "root_partition = 3 }\n"
	             "package_set \"gpu\" { packages = {\"nvidia-driver=550.54.15\", "
	             "\"cuda\"} }\npackage_set \"empty\" { }\n"
	             "profile \"b\" { image = \"y\" version = \"2\" wipe = \"none\" "
	             "grow_last_partition = true after = \"none\" disk = \"/dev/vdb\" }\n"
	             "rule \"g\" { profile = \"a\" gpu_vendor = \"0x10de\" min_gpus = 1 "
	             "min_memory_gib = 64 cpu_model = \"EPYC 'Genoa' #9\" min_disks = 2 "
	             "min_nic_speed_mbps = 25000 mac = \"52:54:*\" hostname = \"n?.x\" }\n"
	             "rule \"r\" { profile = \"b\" }\n",
	             &c, err, sizeof(err)),
	        0);
	f = open_memstream(&buf, &len);
	rb_config_print(c, f);
	fclose(f);
	/* What --check-config prints is itself a valid config with the same values. */
	assert_int_equal(load(buf, &c2, err, sizeof(err)), 0);
	assert_int_equal(c2->dhcp_mode, RB_DHCP_FULL);
	assert_int_equal(c2->n_hosts, 1);
	assert_int_equal(c2->pool_end.s_addr, c->pool_end.s_addr);
	assert_string_equal(c2->default_profile, "b");
	assert_string_equal(c2->repo_url, "https://cdn.example/r");
	assert_int_equal(c2->n_profiles, 2);
	for (size_t i = 0; i < 2; i++) {
		struct rb_profile p;

		memcpy(&p, &c2->profiles[i], sizeof(p)); /* padding too */
		p.line = c->profiles[i].line;            /* the printed file has other lines */
		p.package_sets = c->profiles[i].package_sets;
		p.ssh_keys = c->profiles[i].ssh_keys;
		assert_memory_equal(&p, &c->profiles[i], sizeof(p));
		assert_int_equal(c2->profiles[i].n_package_sets, c->profiles[i].n_package_sets);
		for (size_t j = 0; j < c->profiles[i].n_package_sets; j++)
			assert_string_equal(c2->profiles[i].package_sets[j],
			                    c->profiles[i].package_sets[j]);
		for (size_t j = 0; j < c->profiles[i].n_ssh_keys; j++)
			assert_string_equal(c2->profiles[i].ssh_keys[j],
			                    c->profiles[i].ssh_keys[j]);
	}
	assert_int_equal(c2->n_package_sets, 2);
	assert_int_equal(c2->package_sets[0].n_pkgs, 2);
	assert_string_equal(c2->package_sets[0].pkgs[0].version, "550.54.15");
	assert_string_equal(c2->package_sets[0].pkgs[1].version, "");
	assert_int_equal(c2->package_sets[1].n_pkgs, 0);
	assert_int_equal(c2->profiles[1].after, RB_AFTER_NONE);
	assert_true(c2->profiles[1].grow_last_partition);
	assert_int_equal(c2->n_rules, 2);
	for (size_t i = 0; i < 2; i++) {
		struct rb_rule r;

		memcpy(&r, &c2->rules[i], sizeof(r)); /* padding too */
		r.line = c->rules[i].line;            /* the printed file has other lines */
		assert_memory_equal(&r, &c->rules[i], sizeof(r));
	}
	assert_string_equal(c2->rules[0].cpu_model, "EPYC 'Genoa' #9");
	free(buf);
	rb_config_free(c);
	rb_config_free(c2);
}

/* common/nodecfg.c: what the config, the plan and the agent accept. */
static void test_nodecfg(void **state)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xAB, 0x0c, 0xde };
	char n[65], v[65], h[254];

	assert_int_equal(rb_pkg_want_parse("cuda-runtime", n, v), 0);
	assert_string_equal(n, "cuda-runtime");
	assert_string_equal(v, "");
	assert_int_equal(rb_pkg_want_parse("nvidia-driver=1:550.54.15-1~x", n, v), -EINVAL);
	assert_int_equal(rb_pkg_want_parse("nvidia-driver=550.54.15-1~x", n, v), 0);
	assert_string_equal(v, "550.54.15-1~x");
	assert_int_equal(rb_pkg_want_parse("=1", n, v), -EINVAL);
	assert_int_equal(rb_pkg_want_parse("a=1=2", n, v), -EINVAL);
	assert_int_equal(rb_pkg_want_parse("", n, v), -EINVAL);

	assert_true(rb_hostname_ok("gpu-01.rack-1.example.org"));
	assert_false(rb_hostname_ok("gpu-.x"));
	assert_false(rb_hostname_ok(".x"));
	assert_false(rb_hostname_ok("x."));
	assert_false(rb_hostname_ok("a_b"));
	assert_false(rb_hostname_ok(""));
	memset(h, 'a', 64);
	h[64] = '\0';
	assert_false(rb_hostname_ok(h)); /* a label of 64 */
	h[63] = '\0';
	assert_true(rb_hostname_ok(h));

	assert_true(rb_hostname_pattern_ok(""));
	assert_true(rb_hostname_pattern_ok("gpu-{mac}"));
	assert_true(rb_hostname_pattern_ok("n{ip}.x"));
	assert_false(rb_hostname_pattern_ok("{mac"));
	assert_false(rb_hostname_pattern_ok("{host}"));
	/* 52 + 12 = 64: a label too long once {mac} is filled in */
	memset(h, 'a', 52);
	memcpy(h + 52, "{mac}", 6);
	assert_false(rb_hostname_pattern_ok(h));

	assert_int_equal(rb_hostname_expand("gpu-{mac}", mac, NULL, h, sizeof(h)), 0);
	assert_string_equal(h, "gpu-525400ab0cde");
	assert_int_equal(rb_hostname_expand("n-{ip}-{mac}", mac, "10.77.0.5", h, sizeof(h)), 0);
	assert_string_equal(h, "n-10-77-0-5-525400ab0cde");
	assert_int_equal(rb_hostname_expand("n-{ip}", mac, "", h, sizeof(h)), -ENOENT);
	assert_int_equal(rb_hostname_expand("", mac, NULL, h, sizeof(h)), 0);
	assert_string_equal(h, "");
	assert_int_equal(rb_hostname_expand("gpu-{mac}", mac, NULL, h, 10), -ENAMETOOLONG);

	assert_true(rb_ssh_key_ok("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps"));
	assert_true(rb_ssh_key_ok("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlz= a b c"));
	assert_false(rb_ssh_key_ok("ssh-dss AAAAB3NzaC1kc3MAAACBAP"));
	assert_false(rb_ssh_key_ok("ssh-ed25519 AAAA$(x)AAAAAAAAAAAAAA"));
	assert_false(rb_ssh_key_ok("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps a\nb"));
	assert_false(rb_ssh_key_ok("ssh-ed25519"));

	assert_true(rb_kernel_args_ok(""));
	assert_true(rb_kernel_args_ok("modprobe.blacklist=nouveau iommu=pt console=ttyS0,115200"));
	assert_false(rb_kernel_args_ok(" quiet"));
	assert_false(rb_kernel_args_ok("quiet "));
	assert_false(rb_kernel_args_ok("a=\"b c\""));
	assert_false(rb_kernel_args_ok("a=$HOME"));
	assert_false(rb_kernel_args_ok("a\nb"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),        cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_bad_values),      cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_overrides),       cmocka_unit_test(test_boot_file_by_arch),
		cmocka_unit_test(test_print_roundtrip), cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_rules),           cmocka_unit_test(test_package_sets),
		cmocka_unit_test(test_nodecfg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
