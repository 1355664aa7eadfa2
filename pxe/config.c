/* Configuration: embedded defaults, the libconfuse file, command-line
 * overrides, validation. Owns struct rb_config and everything it points to.
 * Every value is checked while the file is parsed, so an error names the
 * file, the line and the expected form; a config with any error is freed
 * whole and never applied. Must never touch sockets or the registry. */
#include "pxe/config.h"
#include "common/hostport.h"
#include "common/manifest.h"
#include "common/nodecfg.h"
#include "common/util.h"
#include "pxe/ipxe_script.h"

#include <arpa/inet.h>
#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

enum kind {
	K_IPV4,
	K_IPV4_OR_EMPTY,
	K_PORT,
	K_PORT_OR_ZERO,
	K_RANGE,
	K_ENUM,
	K_PATH,
	K_NAME,
	K_IMG_NAME,          /* img_name_is_valid(); "" too when min is 0 */
	K_DEV_PATH_OR_EMPTY, /* "" or an absolute path under /dev/ */
	K_URL_OR_EMPTY,      /* "" or http(s)://... */
	K_HOST_PORT,         /* "host" or "host:port" (rb_hostport_parse()), at most max */
	K_PCI_ID_OR_EMPTY,   /* "" or "0x" and 4 hex digits, like "0x10de" */
	K_TEXT_OR_EMPTY,     /* printable ASCII without quotes or backslashes */
	K_MAC_GLOB,          /* "" or hex digits, ':', '*' and '?' */
	K_HOST_GLOB,         /* "" or letters, digits, ".-_", '*' and '?' */
	K_PKG_WANT,          /* "NAME" or "NAME=VERSION" (rb_pkg_want_parse()) */
	K_HOST_PATTERN,      /* rb_hostname_pattern_ok() */
	K_SSH_KEY,           /* rb_ssh_key_ok() */
	K_KERNEL_ARGS,       /* rb_kernel_args_ok() */
};

struct rule {
	const char *section; /* libconfuse section name, "root" for top level */
	const char *option;
	enum kind kind;
	long min, max;
	const char *const *choices; /* K_ENUM, NULL-terminated */
};

static const char *const dhcp_modes[] = { "proxy", "full", "off", NULL };
static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };
/* Same order as enum rb_wipe and enum rb_after. */
static const char *const wipe_modes[] = { "none", "metadata", "full", NULL };
static const char *const after_actions[] = { "reboot", "poweroff", "none", "kexec", NULL };
static const char *const network_modes[] = { "image", "dhcp", NULL };

static const struct rule rules[] = {
	{ "root", "server_address", K_IPV4_OR_EMPTY, 0, 0, NULL },
	{ "root", "log_level", K_ENUM, 0, 0, log_levels },
	{ "root", "state_dir", K_PATH, 0, 0, NULL },
	{ "root", "interface", K_NAME, 0, 15, NULL },
	{ "root", "user", K_NAME, 0, 32, NULL },
	{ "root", "default_profile", K_IMG_NAME, 0, 0, NULL },
	{ "dhcp", "mode", K_ENUM, 0, 0, dhcp_modes },
	{ "dhcp", "port", K_PORT, 0, 0, NULL },
	{ "dhcp", "proxy_port", K_PORT_OR_ZERO, 0, 0, NULL },
	{ "dhcp", "pool_start", K_IPV4_OR_EMPTY, 0, 0, NULL },
	{ "dhcp", "pool_end", K_IPV4_OR_EMPTY, 0, 0, NULL },
	{ "dhcp", "netmask", K_IPV4, 0, 0, NULL },
	{ "dhcp", "router", K_IPV4_OR_EMPTY, 0, 0, NULL },
	{ "dhcp", "dns", K_IPV4, 0, 0, NULL },
	{ "dhcp", "domain", K_NAME, 0, 253, NULL },
	{ "dhcp", "lease_time", K_RANGE, 60, 31536000, NULL },
	{ "host", "address", K_IPV4, 0, 0, NULL },
	{ "host", "hostname", K_NAME, 0, 63, NULL },
	{ "tftp", "port", K_PORT, 0, 0, NULL },
	{ "tftp", "root", K_PATH, 0, 0, NULL },
	{ "tftp", "max_blksize", K_RANGE, 512, 65464, NULL },
	{ "tftp", "max_windowsize", K_RANGE, 1, 64, NULL },
	{ "tftp", "timeout_ms", K_RANGE, 50, 255000, NULL },
	{ "tftp", "retries", K_RANGE, 1, 20, NULL },
	{ "tftp", "max_transfers", K_RANGE, 1, 100000, NULL },
	{ "http", "port", K_PORT, 0, 0, NULL },
	{ "http", "boot_root", K_PATH, 0, 0, NULL },
	{ "http", "repo_root", K_PATH, 0, 0, NULL },
	{ "http", "threads", K_RANGE, 1, 256, NULL },
	{ "api", "heartbeat_s", K_RANGE, 1, 300, NULL },
	{ "http", "max_conns", K_RANGE, 1, 100000, NULL },
	{ "http", "idle_timeout_s", K_RANGE, 1, 3600, NULL },
	{ "http", "header_timeout_s", K_RANGE, 1, 3600, NULL },
	{ "http", "repo_url", K_URL_OR_EMPTY, 0, 0, NULL },
	{ "http", "repo_hosts", K_HOST_PORT, 0, RB_REPO_HOSTS_MAX, NULL },
	{ "registry", "path", K_NAME, 0, 4095, NULL },
	{ "profile", "image", K_IMG_NAME, 1, 0, NULL },
	{ "profile", "version", K_IMG_NAME, 1, 0, NULL },
	{ "profile", "wipe", K_ENUM, 0, 0, wipe_modes },
	{ "profile", "after", K_ENUM, 0, 0, after_actions },
	{ "profile", "disk", K_DEV_PATH_OR_EMPTY, 0, 0, NULL },
	{ "profile", "package_sets", K_IMG_NAME, 1, 0, NULL },
	{ "profile", "kernel_args", K_KERNEL_ARGS, 0, 0, NULL },
	{ "profile", "hostname", K_HOST_PATTERN, 0, 0, NULL },
	{ "profile", "ssh_keys", K_SSH_KEY, 0, 0, NULL },
	{ "profile", "root_partition", K_RANGE, 0, 128, NULL },
	{ "profile", "update_interval_s", K_RANGE, 5, 86400, NULL },
	{ "profile", "network", K_ENUM, 0, 0, network_modes },
	{ "profile", "update_jitter_s", K_RANGE, 0, 86400, NULL },
	{ "package_set", "packages", K_PKG_WANT, 0, 0, NULL },
	{ "rule", "profile", K_IMG_NAME, 1, 0, NULL },
	{ "rule", "gpu_vendor", K_PCI_ID_OR_EMPTY, 0, 0, NULL },
	{ "rule", "min_gpus", K_RANGE, 0, 1024, NULL },
	{ "rule", "min_memory_gib", K_RANGE, 0, 1048576, NULL },
	{ "rule", "cpu_model", K_TEXT_OR_EMPTY, 0, 128, NULL },
	{ "rule", "min_disks", K_RANGE, 0, 4096, NULL },
	{ "rule", "min_nic_speed_mbps", K_RANGE, 0, 100000000, NULL },
	{ "rule", "mac", K_MAC_GLOB, 0, 32, NULL },
	{ "rule", "hostname", K_HOST_GLOB, 0, 253, NULL },
};

static FILE *err_out;
/* The tree being parsed: sections know the line the parser stands on, only
 * the root knows the file name. */
static cfg_t *parsing;

static void error_func(cfg_t *cfg, const char *fmt, va_list ap)
{
	if (parsing && parsing->filename)
		fprintf(err_out, "%s:%d: ", parsing->filename, cfg ? cfg->line : parsing->line);
	else
		fputs("rackbootd: config: ", err_out);
	vfprintf(err_out, fmt, ap);
	fputc('\n', err_out);
}

static const struct rule *find_rule(const char *section, const char *option)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(rules); i++)
		if (!strcmp(rules[i].section, section) && !strcmp(rules[i].option, option))
			return &rules[i];
	return NULL;
}

static bool name_ok(const char *s, long max)
{
	if ((long)strlen(s) > max)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '"' || *s == '/')
			return false;
	return true;
}

/* A disk the agent is told to write: "/dev/" and a clean path below it in
 * characters that name devices (/dev/disk/by-id/... names included). */
static bool dev_path_ok(const char *s)
{
	if (strncmp(s, "/dev/", 5) != 0 || strlen(s) >= sizeof(((struct rb_profile *)0)->disk) ||
	    !rb_path_is_safe(s + 5))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("/._+:@-", *s)))
			return false;
	return true;
}

/* A URL handed to agents in JSON: http(s), printable, no spaces or quotes. */
static bool url_ok(const char *s)
{
	const char *host;

	if (!strncmp(s, "http://", 7))
		host = s + 7;
	else if (!strncmp(s, "https://", 8))
		host = s + 8;
	else
		return false;
	if (!*host || *host == '/' || strlen(s) > 1000)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '"' ||
		    *s == '\\')
			return false;
	return true;
}

static bool pci_id_ok(const char *s)
{
	if (strlen(s) != 6 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return false;
	for (s += 2; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

/* Strings of a rule: charset is what else may appear besides letters and
 * digits ("" = any printable ASCII but quotes and backslashes). */
static bool text_ok(const char *s, long max, const char *charset, bool letters)
{
	if ((long)strlen(s) > max)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (!*charset) {
			if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
				return false;
		} else if (!(letters ? isalnum(ch) : isxdigit(ch)) && !strchr(charset, ch)) {
			return false;
		}
	}
	return true;
}

static int check_value(cfg_t *cfg, const struct rule *r, cfg_opt_t *opt, unsigned idx)
{
	const char *name = cfg_opt_name(opt);
	struct in_addr a;

	switch (r->kind) {
	case K_IPV4:
	case K_IPV4_OR_EMPTY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (r->kind == K_IPV4_OR_EMPTY && (!s || !*s))
			return 0;
		if (!s || inet_pton(AF_INET, s, &a) != 1) {
			cfg_error(cfg, "%s = \"%s\": expected an IPv4 address like \"10.77.0.1\"",
			          name, s ? s : "");
			return -1;
		}
		return 0;
	}
	case K_PORT:
	case K_PORT_OR_ZERO: {
		long v = cfg_opt_getnint(opt, idx);

		if (v < (r->kind == K_PORT ? 1 : 0) || v > 65535) {
			cfg_error(cfg, "%s = %ld: expected a port number %s1..65535", name, v,
			          r->kind == K_PORT ? "" : "0 (off) or ");
			return -1;
		}
		return 0;
	}
	case K_RANGE: {
		long v = cfg_opt_getnint(opt, idx);

		if (v < r->min || v > r->max) {
			cfg_error(cfg, "%s = %ld: expected a number from %ld to %ld", name, v,
			          r->min, r->max);
			return -1;
		}
		return 0;
	}
	case K_ENUM: {
		const char *s = cfg_opt_getnstr(opt, idx);
		char choices[128] = "";
		size_t o = 0;

		for (const char *const *c = r->choices; *c; c++) {
			if (s && !strcmp(s, *c))
				return 0;
			o += (size_t)snprintf(choices + o, sizeof(choices) - o, "%s\"%s\"",
			                      c == r->choices ? "" : " or ", *c);
		}
		cfg_error(cfg, "%s = \"%s\": expected %s", name, s ? s : "", choices);
		return -1;
	}
	case K_PATH: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (!s || s[0] != '/' || strlen(s) > 4000) {
			cfg_error(cfg, "%s = \"%s\": expected an absolute path", name, s ? s : "");
			return -1;
		}
		return 0;
	}
	case K_NAME: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && !name_ok(s, r->max) && !(r->option[0] == 'p' && s[0] == '/')) {
			cfg_error(cfg,
			          "%s = \"%s\": expected a name of at most %ld characters "
			          "without spaces, quotes or slashes",
			          name, s, r->max);
			return -1;
		}
		return 0;
	}
	case K_IMG_NAME: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (r->min == 0 && s && !*s)
			return 0;
		if (!img_name_is_valid(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected a name of 1 to 64 letters, digits and "
			          "._+- not starting with '.'",
			          name, s ? s : "");
			return -1;
		}
		return 0;
	}
	case K_DEV_PATH_OR_EMPTY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && *s && !dev_path_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"\" (the agent picks) or a device path "
			          "under /dev/ like \"/dev/nvme0n1\"",
			          name, s);
			return -1;
		}
		return 0;
	}
	case K_PCI_ID_OR_EMPTY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && *s && !pci_id_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"\" or a PCI vendor id like \"0x10de\" "
			          "(NVIDIA)",
			          name, s);
			return -1;
		}
		return 0;
	}
	case K_TEXT_OR_EMPTY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && !text_ok(s, r->max, "", true)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected text of at most %ld printable ASCII "
			          "characters without quotes or backslashes",
			          name, s, r->max);
			return -1;
		}
		return 0;
	}
	case K_MAC_GLOB:
	case K_HOST_GLOB: {
		const char *s = cfg_opt_getnstr(opt, idx);
		bool mac = r->kind == K_MAC_GLOB;

		if (s && !text_ok(s, r->max, mac ? ":*?" : ".-_*?", !mac)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"\" or a pattern of at most %ld %s, "
			          "'*' (any run) and '?' (one character), like \"%s\"",
			          name, s, r->max,
			          mac ? "hex digits, ':'" : "letters, digits, '.-_'",
			          mac ? "52:54:00:*" : "gpu-*.example.org");
			return -1;
		}
		return 0;
	}
	case K_PKG_WANT: {
		const char *s = cfg_opt_getnstr(opt, idx);
		char n[65], v[65];

		if (!s || rb_pkg_want_parse(s, n, v) < 0) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"NAME\" (the newest in the catalogue) or "
			          "\"NAME=VERSION\" (exact), like \"cuda-runtime=12.4.1-1\"",
			          name, s ? s : "");
			return -1;
		}
		return 0;
	}
	case K_HOST_PATTERN: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && !rb_hostname_pattern_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"\" or a host name of letters, digits, "
			          "'-' and '.' (labels of 1 to 63) where {mac} and {ip} may stand "
			          "for the node's, like \"gpu-{mac}\"",
			          name, s);
			return -1;
		}
		return 0;
	}
	case K_SSH_KEY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (!s || !rb_ssh_key_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%.40s...\": expected an OpenSSH public key line like "
			          "\"ssh-ed25519 AAAA... ops@site\" (no options, no quotes)",
			          name, s ? s : "");
			return -1;
		}
		return 0;
	}
	case K_KERNEL_ARGS: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && !rb_kernel_args_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected words of letters, digits and ._,:/+=@%%- "
			          "separated by single spaces (at most %d characters), like "
			          "\"modprobe.blacklist=nouveau iommu=pt\"",
			          name, s, RB_KERNEL_ARGS_MAX);
			return -1;
		}
		return 0;
	}
	case K_URL_OR_EMPTY: {
		const char *s = cfg_opt_getnstr(opt, idx);

		if (s && *s && !url_ok(s)) {
			cfg_error(cfg,
			          "%s = \"%s\": expected \"\" or a URL like "
			          "\"http://10.77.0.1:8080/repo\" (no spaces or quotes)",
			          name, s);
			return -1;
		}
		return 0;
	}
	case K_HOST_PORT: {
		const char *s = cfg_opt_getnstr(opt, idx);
		char host[RB_HOST_MAX];
		unsigned port;

		if (idx >= (unsigned)r->max) {
			cfg_error(cfg, "%s: at most %ld hosts", name, r->max);
			return -1;
		}
		if (!s || rb_hostport_parse(s, host, &port) < 0) {
			cfg_error(cfg,
			          "%s = \"%s\": expected a host the agent may download from, "
			          "\"host\" (any port) or \"host:port\", like "
			          "\"cache1.rack3.example\" or \"10.0.0.5:8080\" ([v6]:port for "
			          "IPv6; no scheme, path or user)",
			          name, s ? s : "");
			return -1;
		}
		return 0;
	}
	}
	return 0;
}

static int validate_opt(cfg_t *cfg, cfg_opt_t *opt)
{
	const struct rule *r = find_rule(cfg->name, cfg_opt_name(opt));

	if (!r)
		return 0;
	for (unsigned i = 0; i < cfg_opt_size(opt); i++)
		if (check_value(cfg, r, opt, i) < 0)
			return -1;
	return 0;
}

/* libconfuse accepts a file that ends inside a section, so a truncated
 * file would load with the rest at defaults. Refuse unbalanced braces. */
static int check_braces(const char *path)
{
	FILE *f = fopen(path, "re");
	int c, prev = 0, line = 1, depth = 0, open_line[32] = { 0 };
	char quote = 0;
	bool comment = false, block = false;

	if (!f)
		return 0; /* cfg_parse() reports it */
	while ((c = fgetc(f)) != EOF) {
		if (c == '\n') {
			line++;
			comment = false;
		}
		if (comment) {
			;
		} else if (block) {
			if (prev == '*' && c == '/')
				block = false;
		} else if (quote) {
			if (c == quote && prev != '\\')
				quote = 0;
		} else if (c == '"' || c == '\'') {
			quote = (char)c;
		} else if (c == '#' || (prev == '/' && c == '/')) {
			comment = true;
		} else if (prev == '/' && c == '*') {
			block = true;
			c = 0;
		} else if (c == '{') {
			if (depth < 32)
				open_line[depth] = line;
			depth++;
		} else if (c == '}') {
			depth--;
			if (depth < 0)
				break;
		}
		prev = c;
	}
	fclose(f);
	if (depth > 0) {
		fprintf(err_out, "%s:%d: section opened here is never closed (missing '}')\n", path,
		        open_line[RB_MIN(depth - 1, 31)]);
		return -EINVAL;
	}
	if (depth < 0) {
		fprintf(err_out, "%s:%d: '}' without a section to close\n", path, line);
		return -EINVAL;
	}
	return 0;
}

static int validate_host(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
	uint8_t mac[6];

	if (rb_mac_parse(cfg_title(sec), mac) < 0) {
		cfg_error(cfg, "host \"%s\": expected a MAC address like \"52:54:00:12:34:56\"",
		          cfg_title(sec));
		return -1;
	}
	if (!cfg_size(sec, "address")) {
		cfg_error(cfg, "host \"%s\": address is missing", cfg_title(sec));
		return -1;
	}
	return 0;
}

static int validate_profile(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);

	if (!img_name_is_valid(cfg_title(sec))) {
		cfg_error(cfg,
		          "profile \"%s\": expected a name of 1 to 64 letters, digits and ._+- "
		          "not starting with '.'",
		          cfg_title(sec));
		return -1;
	}
	if (!cfg_size(sec, "image")) {
		cfg_error(cfg,
		          "profile \"%s\": image is missing (the name in the repository "
		          "catalogue, e.g. image = \"debian12\")",
		          cfg_title(sec));
		return -1;
	}
	return 0;
}

static int validate_package_set(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
	unsigned n = cfg_size(sec, "packages");

	if (!img_name_is_valid(cfg_title(sec))) {
		cfg_error(cfg,
		          "package_set \"%s\": expected a name of 1 to 64 letters, digits and "
		          "._+- not starting with '.'",
		          cfg_title(sec));
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		char a[65], av[65], b[65], bv[65];

		if (rb_pkg_want_parse(cfg_getnstr(sec, "packages", i), a, av) < 0)
			return -1; /* reported by the option's validator */
		for (unsigned j = 0; j < i; j++)
			if (rb_pkg_want_parse(cfg_getnstr(sec, "packages", j), b, bv) == 0 &&
			    !strcmp(a, b)) {
				cfg_error(cfg, "package_set \"%s\": package \"%s\" is named twice",
				          cfg_title(sec), a);
				return -1;
			}
	}
	return 0;
}

static int validate_rule(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);

	if (!img_name_is_valid(cfg_title(sec))) {
		cfg_error(cfg,
		          "rule \"%s\": expected a name of 1 to 64 letters, digits and ._+- "
		          "not starting with '.'",
		          cfg_title(sec));
		return -1;
	}
	if (!cfg_size(sec, "profile")) {
		cfg_error(cfg,
		          "rule \"%s\": profile is missing (the profile a matching node gets, "
		          "e.g. profile = \"gpu\")",
		          cfg_title(sec));
		return -1;
	}
	/* A vendor alone would count zero GPUs and match every node. */
	if (*cfg_getstr(sec, "gpu_vendor") && cfg_getint(sec, "min_gpus") < 1) {
		cfg_error(cfg,
		          "rule \"%s\": gpu_vendor needs min_gpus = 1 or more (with min_gpus = "
		          "0 it matches nodes without GPUs too)",
		          cfg_title(sec));
		return -1;
	}
	return 0;
}

/* Default paths: one tree an operator can find everything in. */
#define DEF_STATE "/var/lib/rackboot"
#define DEF_ROOT  "/srv/rackboot"

static cfg_opt_t host_opts[] = {
	CFG_STR("address", NULL, CFGF_NODEFAULT),
	CFG_STR("hostname", "", CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t dhcp_opts[] = {
	CFG_STR("mode", "proxy", CFGF_NONE),
	CFG_INT("port", 67, CFGF_NONE),
	CFG_INT("proxy_port", 4011, CFGF_NONE),
	CFG_STR("pool_start", "", CFGF_NONE),
	CFG_STR("pool_end", "", CFGF_NONE),
	CFG_STR("netmask", "255.255.255.0", CFGF_NONE),
	CFG_STR("router", "", CFGF_NONE),
	CFG_STR_LIST("dns", "{}", CFGF_NONE),
	CFG_STR("domain", "", CFGF_NONE),
	CFG_INT("lease_time", 3600, CFGF_NONE),
	CFG_SEC("host", host_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END(),
};

static cfg_opt_t boot_opts[] = {
	CFG_STR("bios", "undionly.kpxe", CFGF_NONE),
	CFG_STR("uefi_ia32", "ipxe-i386.efi", CFGF_NONE),
	CFG_STR("uefi_x64", "snponly.efi", CFGF_NONE),
	CFG_STR("uefi_arm64", "snponly-arm64.efi", CFGF_NONE),
	CFG_STR("http_uefi_x64", "ipxe.efi", CFGF_NONE),
	CFG_STR("http_uefi_arm64", "ipxe-arm64.efi", CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t tftp_opts[] = {
	CFG_BOOL("enable", cfg_true, CFGF_NONE),
	CFG_INT("port", 69, CFGF_NONE),
	CFG_STR("root", DEF_ROOT "/tftp", CFGF_NONE),
	CFG_INT("max_blksize", 1468, CFGF_NONE),
	CFG_INT("max_windowsize", 16, CFGF_NONE),
	CFG_INT("timeout_ms", 1000, CFGF_NONE),
	CFG_INT("retries", 5, CFGF_NONE),
	CFG_INT("max_transfers", 1000, CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t http_opts[] = {
	CFG_INT("port", 8080, CFGF_NONE),
	CFG_STR("boot_root", DEF_ROOT "/boot", CFGF_NONE),
	CFG_STR("repo_root", DEF_ROOT "/repo", CFGF_NONE),
	CFG_STR("templates_dir", "", CFGF_NONE),
	CFG_STR("repo_url", "", CFGF_NONE),
	CFG_STR_LIST("repo_hosts", "{}", CFGF_NONE),
	CFG_INT("threads", 4, CFGF_NONE),
	CFG_INT("max_conns", 1000, CFGF_NONE),
	CFG_INT("idle_timeout_s", 60, CFGF_NONE),
	CFG_INT("header_timeout_s", 30, CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t registry_opts[] = {
	CFG_STR("path", "", CFGF_NONE),
	CFG_END(),
};

/* The operator API (pxe/api_ops.c): where the hashes of operator tokens
 * are ("" = <state_dir>/tokens) and whether /metrics needs one too. */
static cfg_opt_t api_opts[] = {
	CFG_STR("tokens_file", "", CFGF_NONE),
	CFG_BOOL("metrics_auth", cfg_false, CFGF_NONE),
	CFG_INT("heartbeat_s", 15, CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t discovery_opts[] = {
	CFG_STR("kernel", "vmlinuz", CFGF_NONE),
	CFG_STR("initrd", "initrd.img", CFGF_NONE),
	CFG_STR("cmdline", "console=tty0 console=ttyS0,115200", CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t profile_opts[] = {
	CFG_STR("image", NULL, CFGF_NODEFAULT),
	CFG_STR("version", "latest", CFGF_NONE),
	CFG_STR("wipe", "metadata", CFGF_NONE),
	CFG_BOOL("grow_last_partition", cfg_false, CFGF_NONE),
	CFG_STR("after", "reboot", CFGF_NONE),
	CFG_STR("disk", "", CFGF_NONE),
	CFG_STR_LIST("package_sets", "{}", CFGF_NONE),
	CFG_STR("kernel_args", "", CFGF_NONE),
	CFG_STR("hostname", "", CFGF_NONE),
	CFG_STR_LIST("ssh_keys", "{}", CFGF_NONE),
	CFG_INT("root_partition", 0, CFGF_NONE),
	CFG_INT("update_interval_s", 300, CFGF_NONE),
	CFG_STR("network", "image", CFGF_NONE),
	CFG_INT("update_jitter_s", 60, CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t package_set_opts[] = {
	CFG_STR_LIST("packages", "{}", CFGF_NONE),
	CFG_END(),
};

static cfg_opt_t rule_opts[] = {
	CFG_STR("profile", NULL, CFGF_NODEFAULT),    CFG_STR("gpu_vendor", "", CFGF_NONE),
	CFG_INT("min_gpus", 0, CFGF_NONE),           CFG_INT("min_memory_gib", 0, CFGF_NONE),
	CFG_STR("cpu_model", "", CFGF_NONE),         CFG_INT("min_disks", 0, CFGF_NONE),
	CFG_INT("min_nic_speed_mbps", 0, CFGF_NONE), CFG_STR("mac", "", CFGF_NONE),
	CFG_STR("hostname", "", CFGF_NONE),          CFG_END(),
};

static cfg_opt_t root_opts[] = {
	CFG_STR("user", "nobody", CFGF_NONE),
	CFG_STR("state_dir", DEF_STATE, CFGF_NONE),
	CFG_STR("interface", "", CFGF_NONE),
	CFG_STR("server_address", "", CFGF_NONE),
	CFG_STR("log_level", "info", CFGF_NONE),
	CFG_STR("default_profile", "", CFGF_NONE),
	CFG_SEC("dhcp", dhcp_opts, CFGF_NONE),
	CFG_SEC("boot", boot_opts, CFGF_NONE),
	CFG_SEC("tftp", tftp_opts, CFGF_NONE),
	CFG_SEC("http", http_opts, CFGF_NONE),
	CFG_SEC("registry", registry_opts, CFGF_NONE),
	CFG_SEC("api", api_opts, CFGF_NONE),
	CFG_SEC("discovery", discovery_opts, CFGF_NONE),
	CFG_SEC("profile", profile_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("package_set", package_set_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("rule", rule_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END(),
};

static void install_validators(cfg_t *cfg)
{
	char key[64];

	for (size_t i = 0; i < RB_ARRAY_SIZE(rules); i++) {
		const struct rule *r = &rules[i];

		if (!strcmp(r->section, "root"))
			snprintf(key, sizeof(key), "%s", r->option);
		else if (!strcmp(r->section, "host"))
			snprintf(key, sizeof(key), "dhcp|host|%s", r->option);
		else
			snprintf(key, sizeof(key), "%s|%s", r->section, r->option);
		cfg_set_validate_func(cfg, key, validate_opt);
	}
	cfg_set_validate_func(cfg, "dhcp|host", validate_host);
	cfg_set_validate_func(cfg, "profile", validate_profile);
	cfg_set_validate_func(cfg, "package_set", validate_package_set);
	cfg_set_validate_func(cfg, "rule", validate_rule);
}

void rb_config_free(struct rb_config *c)
{
	if (!c)
		return;
	char **strs[] = { &c->path,
		          &c->user,
		          &c->state_dir,
		          &c->interface,
		          &c->domain,
		          &c->boot_bios,
		          &c->boot_uefi_ia32,
		          &c->boot_uefi_x64,
		          &c->boot_uefi_arm64,
		          &c->http_uefi_x64,
		          &c->http_uefi_arm64,
		          &c->tftp_root,
		          &c->http_boot_root,
		          &c->repo_root,
		          &c->templates_dir,
		          &c->repo_url,
		          &c->default_profile,
		          &c->db_path,
		          &c->api_tokens_file,
		          &c->discovery_kernel,
		          &c->discovery_initrd,
		          &c->discovery_cmdline };

	for (size_t i = 0; i < RB_ARRAY_SIZE(strs); i++)
		free(*strs[i]);
	free(c->hosts);
	free(c->repo_hosts);
	for (size_t i = 0; i < c->n_profiles; i++) {
		free(c->profiles[i].package_sets);
		free(c->profiles[i].ssh_keys);
	}
	free(c->profiles);
	for (size_t i = 0; i < c->n_package_sets; i++)
		free(c->package_sets[i].pkgs);
	free(c->package_sets);
	free(c->rules);
	free(c);
}

static int dup_str(char **dst, const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

static int join_path(char **dst, const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *d = malloc(n);

	if (!d)
		return -ENOMEM;
	snprintf(d, n, "%s/%s", a, b);
	free(*dst);
	*dst = d;
	return 0;
}

static void parse_ip(const char *s, struct in_addr *ret)
{
	ret->s_addr = 0;
	if (s && *s)
		inet_pton(AF_INET, s, ret); /* validated during parsing */
}

static int level_of(const char *s)
{
	if (!strcmp(s, "error"))
		return LOG_ERR;
	if (!strcmp(s, "warning"))
		return LOG_WARNING;
	if (!strcmp(s, "debug"))
		return LOG_DEBUG;
	return LOG_INFO;
}

static int choice_index(const char *const *choices, const char *s)
{
	for (int i = 0; choices[i]; i++)
		if (!strcmp(choices[i], s))
			return i;
	return 0; /* validated during parsing */
}

const char *rb_wipe_name(enum rb_wipe w)
{
	return (size_t)w < RB_ARRAY_SIZE(wipe_modes) - 1 ? wipe_modes[w] : "none";
}

const char *rb_after_name(enum rb_after a)
{
	return (size_t)a < RB_ARRAY_SIZE(after_actions) - 1 ? after_actions[a] : "none";
}

/* A string list as one allocation: the pointers, then the strings. */
static int dup_list(cfg_t *s, const char *key, char ***ret, size_t *ret_n)
{
	size_t n = cfg_size(s, key), bytes = 0;
	char **v, *at;

	*ret = NULL;
	*ret_n = 0;
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(cfg_getnstr(s, key, (unsigned)i)) + 1;
	v = malloc(n * sizeof(*v) + bytes);
	if (!v)
		return -ENOMEM;
	at = (char *)(v + n);
	for (size_t i = 0; i < n; i++) {
		const char *str = cfg_getnstr(s, key, (unsigned)i);
		size_t k = strlen(str) + 1;

		memcpy(at, str, k);
		v[i] = at;
		at += k;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int extract_package_sets(cfg_t *cfg, struct rb_config *c)
{
	size_t n = cfg_size(cfg, "package_set");

	if (!n)
		return 0;
	c->package_sets = calloc(n, sizeof(*c->package_sets));
	if (!c->package_sets)
		return -ENOMEM;
	c->n_package_sets = n;
	for (size_t i = 0; i < n; i++) {
		cfg_t *s = cfg_getnsec(cfg, "package_set", (unsigned)i);
		struct rb_package_set *ps = &c->package_sets[i];
		size_t k = cfg_size(s, "packages");

		snprintf(ps->name, sizeof(ps->name), "%s", cfg_title(s));
		ps->line = s->line;
		if (!k)
			continue;
		ps->pkgs = calloc(k, sizeof(*ps->pkgs));
		if (!ps->pkgs)
			return -ENOMEM;
		ps->n_pkgs = k;
		for (size_t j = 0; j < k; j++) /* checked by the validators */
			rb_pkg_want_parse(cfg_getnstr(s, "packages", (unsigned)j), ps->pkgs[j].name,
			                  ps->pkgs[j].version);
	}
	return 0;
}

static int extract_profiles(cfg_t *cfg, struct rb_config *c)
{
	c->n_profiles = cfg_size(cfg, "profile");
	if (!c->n_profiles)
		return 0;
	c->profiles = calloc(c->n_profiles, sizeof(*c->profiles));
	if (!c->profiles)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_profiles; i++) {
		cfg_t *s = cfg_getnsec(cfg, "profile", (unsigned)i);
		struct rb_profile *p = &c->profiles[i];

		/* Lengths were checked by the validators. */
		snprintf(p->name, sizeof(p->name), "%s", cfg_title(s));
		snprintf(p->image, sizeof(p->image), "%s", cfg_getstr(s, "image"));
		snprintf(p->version, sizeof(p->version), "%s", cfg_getstr(s, "version"));
		p->wipe = (enum rb_wipe)choice_index(wipe_modes, cfg_getstr(s, "wipe"));
		p->after = (enum rb_after)choice_index(after_actions, cfg_getstr(s, "after"));
		p->grow_last_partition = cfg_getbool(s, "grow_last_partition");
		snprintf(p->disk, sizeof(p->disk), "%s", cfg_getstr(s, "disk"));
		snprintf(p->kernel_args, sizeof(p->kernel_args), "%s",
		         cfg_getstr(s, "kernel_args"));
		snprintf(p->hostname, sizeof(p->hostname), "%s", cfg_getstr(s, "hostname"));
		p->root_partition = (unsigned)cfg_getint(s, "root_partition");
		p->update_interval_s = (unsigned)cfg_getint(s, "update_interval_s");
		p->update_jitter_s = (unsigned)cfg_getint(s, "update_jitter_s");
		p->network_dhcp = !strcmp(cfg_getstr(s, "network"), "dhcp");
		p->line = s->line;
		if (dup_list(s, "package_sets", &p->package_sets, &p->n_package_sets) < 0 ||
		    dup_list(s, "ssh_keys", &p->ssh_keys, &p->n_ssh_keys) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int extract_rules(cfg_t *cfg, struct rb_config *c)
{
	c->n_rules = cfg_size(cfg, "rule");
	if (!c->n_rules)
		return 0;
	c->rules = calloc(c->n_rules, sizeof(*c->rules));
	if (!c->rules)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_rules; i++) {
		cfg_t *s = cfg_getnsec(cfg, "rule", (unsigned)i);
		struct rb_rule *u = &c->rules[i];

		/* Lengths and ranges were checked by the validators. */
		snprintf(u->name, sizeof(u->name), "%s", cfg_title(s));
		snprintf(u->profile, sizeof(u->profile), "%s", cfg_getstr(s, "profile"));
		snprintf(u->gpu_vendor, sizeof(u->gpu_vendor), "%s", cfg_getstr(s, "gpu_vendor"));
		u->min_gpus = (unsigned)cfg_getint(s, "min_gpus");
		u->min_memory_gib = (unsigned)cfg_getint(s, "min_memory_gib");
		snprintf(u->cpu_model, sizeof(u->cpu_model), "%s", cfg_getstr(s, "cpu_model"));
		u->min_disks = (unsigned)cfg_getint(s, "min_disks");
		u->min_nic_speed_mbps = (unsigned)cfg_getint(s, "min_nic_speed_mbps");
		snprintf(u->mac, sizeof(u->mac), "%s", cfg_getstr(s, "mac"));
		snprintf(u->hostname, sizeof(u->hostname), "%s", cfg_getstr(s, "hostname"));
		u->line = s->line;
	}
	return 0;
}

static const char *level_name(int l)
{
	return l <= LOG_ERR       ? "error"
	       : l == LOG_WARNING ? "warning"
	       : l == LOG_DEBUG   ? "debug"
	                          : "info";
}

/* Copies the parsed tree into struct rb_config. */
static int extract(cfg_t *cfg, struct rb_config *c)
{
	cfg_t *dh = cfg_getsec(cfg, "dhcp"), *bo = cfg_getsec(cfg, "boot"),
	      *tf = cfg_getsec(cfg, "tftp"), *ht = cfg_getsec(cfg, "http"),
	      *rg = cfg_getsec(cfg, "registry"), *di = cfg_getsec(cfg, "discovery");
	const char *mode = cfg_getstr(dh, "mode");
	int r = 0;

	r |= dup_str(&c->user, cfg_getstr(cfg, "user"));
	r |= dup_str(&c->state_dir, cfg_getstr(cfg, "state_dir"));
	r |= dup_str(&c->interface, cfg_getstr(cfg, "interface"));
	parse_ip(cfg_getstr(cfg, "server_address"), &c->server_addr);
	c->log_level = level_of(cfg_getstr(cfg, "log_level"));

	c->dhcp_mode = !strcmp(mode, "full")  ? RB_DHCP_FULL
	               : !strcmp(mode, "off") ? RB_DHCP_OFF
	                                      : RB_DHCP_PROXY;
	c->dhcp_port = (uint16_t)cfg_getint(dh, "port");
	c->proxy_port = (uint16_t)cfg_getint(dh, "proxy_port");
	parse_ip(cfg_getstr(dh, "pool_start"), &c->pool_start);
	parse_ip(cfg_getstr(dh, "pool_end"), &c->pool_end);
	parse_ip(cfg_getstr(dh, "netmask"), &c->netmask);
	parse_ip(cfg_getstr(dh, "router"), &c->router);
	c->n_dns = RB_MIN(cfg_size(dh, "dns"), RB_ARRAY_SIZE(c->dns));
	for (size_t i = 0; i < c->n_dns; i++)
		parse_ip(cfg_getnstr(dh, "dns", (unsigned)i), &c->dns[i]);
	r |= dup_str(&c->domain, cfg_getstr(dh, "domain"));
	c->lease_time = (uint32_t)cfg_getint(dh, "lease_time");
	c->n_hosts = cfg_size(dh, "host");
	if (c->n_hosts) {
		c->hosts = calloc(c->n_hosts, sizeof(*c->hosts));
		if (!c->hosts)
			return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_hosts; i++) {
		cfg_t *h = cfg_getnsec(dh, "host", (unsigned)i);

		rb_mac_parse(cfg_title(h), c->hosts[i].mac);
		parse_ip(cfg_getstr(h, "address"), &c->hosts[i].addr);
		snprintf(c->hosts[i].hostname, sizeof(c->hosts[i].hostname), "%s",
		         cfg_getstr(h, "hostname"));
	}

	r |= dup_str(&c->boot_bios, cfg_getstr(bo, "bios"));
	r |= dup_str(&c->boot_uefi_ia32, cfg_getstr(bo, "uefi_ia32"));
	r |= dup_str(&c->boot_uefi_x64, cfg_getstr(bo, "uefi_x64"));
	r |= dup_str(&c->boot_uefi_arm64, cfg_getstr(bo, "uefi_arm64"));
	r |= dup_str(&c->http_uefi_x64, cfg_getstr(bo, "http_uefi_x64"));
	r |= dup_str(&c->http_uefi_arm64, cfg_getstr(bo, "http_uefi_arm64"));

	c->tftp_enable = cfg_getbool(tf, "enable");
	c->tftp_port = (uint16_t)cfg_getint(tf, "port");
	r |= dup_str(&c->tftp_root, cfg_getstr(tf, "root"));
	c->tftp_max_blksize = (unsigned)cfg_getint(tf, "max_blksize");
	c->tftp_max_window = (unsigned)cfg_getint(tf, "max_windowsize");
	c->tftp_timeout_ms = (unsigned)cfg_getint(tf, "timeout_ms");
	c->tftp_retries = (unsigned)cfg_getint(tf, "retries");
	c->tftp_max_transfers = (unsigned)cfg_getint(tf, "max_transfers");

	c->http_port = (uint16_t)cfg_getint(ht, "port");
	r |= dup_str(&c->http_boot_root, cfg_getstr(ht, "boot_root"));
	r |= dup_str(&c->repo_root, cfg_getstr(ht, "repo_root"));
	r |= dup_str(&c->templates_dir, cfg_getstr(ht, "templates_dir"));
	r |= dup_str(&c->repo_url, cfg_getstr(ht, "repo_url"));
	/* One spelling: agents append "/images/..." to it. */
	if (c->repo_url) {
		size_t n = strlen(c->repo_url);

		while (n > 0 && c->repo_url[n - 1] == '/')
			c->repo_url[--n] = '\0';
	}
	if (dup_list(ht, "repo_hosts", &c->repo_hosts, &c->n_repo_hosts) < 0)
		r |= -ENOMEM;
	c->http_threads = (unsigned)cfg_getint(ht, "threads");
	c->http_max_conns = (unsigned)cfg_getint(ht, "max_conns");
	c->http_idle_timeout_s = (unsigned)cfg_getint(ht, "idle_timeout_s");
	c->http_header_timeout_s = (unsigned)cfg_getint(ht, "header_timeout_s");

	r |= dup_str(&c->db_path, cfg_getstr(rg, "path"));
	r |= dup_str(&c->api_tokens_file, cfg_getstr(cfg_getsec(cfg, "api"), "tokens_file"));
	c->metrics_auth = cfg_getbool(cfg_getsec(cfg, "api"), "metrics_auth");
	c->api_heartbeat_s = (unsigned)cfg_getint(cfg_getsec(cfg, "api"), "heartbeat_s");
	r |= dup_str(&c->discovery_kernel, cfg_getstr(di, "kernel"));
	r |= dup_str(&c->discovery_initrd, cfg_getstr(di, "initrd"));
	r |= dup_str(&c->discovery_cmdline, cfg_getstr(di, "cmdline"));
	r |= dup_str(&c->default_profile, cfg_getstr(cfg, "default_profile"));
	if (r)
		return -ENOMEM;
	r = extract_profiles(cfg, c);
	if (r < 0)
		return r;
	r = extract_package_sets(cfg, c);
	if (r < 0)
		return r;
	return extract_rules(cfg, c);
}

static int apply_overrides(struct rb_config *c, const struct rb_config_overrides *o)
{
	int r = 0;

	if (!o)
		return 0;
	if (o->interface)
		r |= dup_str(&c->interface, o->interface);
	if (o->state_dir)
		r |= dup_str(&c->state_dir, o->state_dir);
	if (o->user)
		r |= dup_str(&c->user, o->user);
	if (o->root) {
		r |= join_path(&c->tftp_root, o->root, "tftp");
		r |= join_path(&c->http_boot_root, o->root, "boot");
		r |= join_path(&c->repo_root, o->root, "repo");
	}
	if (r)
		return -ENOMEM;
	if (o->server_addr && inet_pton(AF_INET, o->server_addr, &c->server_addr) != 1) {
		fprintf(err_out, "rackbootd: --server-address \"%s\": expected an IPv4 address\n",
		        o->server_addr);
		return -EINVAL;
	}
	if (o->dhcp_mode) {
		if (!strcmp(o->dhcp_mode, "proxy"))
			c->dhcp_mode = RB_DHCP_PROXY;
		else if (!strcmp(o->dhcp_mode, "full"))
			c->dhcp_mode = RB_DHCP_FULL;
		else if (!strcmp(o->dhcp_mode, "off"))
			c->dhcp_mode = RB_DHCP_OFF;
		else {
			fprintf(err_out,
			        "rackbootd: --dhcp \"%s\": expected \"proxy\", \"full\" or "
			        "\"off\"\n",
			        o->dhcp_mode);
			return -EINVAL;
		}
	}
	if (o->http_port) {
		long long v;

		if (rb_strtonum(o->http_port, 1, 65535, &v) < 0) {
			fprintf(err_out, "rackbootd: --http-port \"%s\": expected 1..65535\n",
			        o->http_port);
			return -EINVAL;
		}
		c->http_port = (uint16_t)v;
	}
	return 0;
}

static bool in_subnet(struct in_addr a, struct in_addr net, struct in_addr mask)
{
	return (a.s_addr & mask.s_addr) == (net.s_addr & mask.s_addr);
}

/* The first package two sets pin to different versions, or NULL. */
static const char *set_clash(const struct rb_package_set *a, const struct rb_package_set *b,
                             const char **ret_va, const char **ret_vb)
{
	for (size_t x = 0; x < a->n_pkgs; x++)
		for (size_t y = 0; y < b->n_pkgs; y++)
			if (!strcmp(a->pkgs[x].name, b->pkgs[y].name) &&
			    strcmp(a->pkgs[x].version, b->pkgs[y].version)) {
				*ret_va = a->pkgs[x].version;
				*ret_vb = b->pkgs[y].version;
				return a->pkgs[x].name;
			}
	return NULL;
}

/* Each profile's package sets exist, and no two of them pin one package to
 * different versions (the plan could satisfy only one). */
static int check_profile_sets(const struct rb_config *c, const char *where)
{
	for (size_t i = 0; i < c->n_profiles; i++) {
		const struct rb_profile *p = &c->profiles[i];

		for (size_t j = 0; j < p->n_package_sets; j++) {
			const struct rb_package_set *a =
			        rb_config_package_set(c, p->package_sets[j]);
			const char *clash = NULL, *va = NULL, *vb = NULL;

			if (!a) {
				fprintf(err_out,
				        "%s:%d: profile \"%s\": package set \"%s\" is not defined "
				        "(add package_set \"%s\" { packages = {...} } or name a "
				        "defined one)\n",
				        where, p->line, p->name, p->package_sets[j],
				        p->package_sets[j]);
				return -EINVAL;
			}
			for (size_t k = 0; k < j && !clash; k++)
				clash = set_clash(rb_config_package_set(c, p->package_sets[k]), a,
				                  &vb, &va);
			if (clash) {
				fprintf(err_out,
				        "%s:%d: profile \"%s\": its package sets want different "
				        "versions of %s (\"%s\" in an earlier set, \"%s\" in "
				        "\"%s\"; \"\" = the "
				        "newest)\n",
				        where, p->line, p->name, clash, vb, va, a->name);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Rules that involve several values, checked once everything is known. */
static int check_whole(const struct rb_config *c, const char *where)
{
	uint32_t m = ntohl(c->netmask.s_addr);

	if (m != 0 && (~m & (~m + 1)) != 0) {
		fprintf(err_out, "%s: dhcp netmask: not a contiguous netmask\n", where);
		return -EINVAL;
	}
	if (c->dhcp_mode == RB_DHCP_FULL) {
		if (!c->pool_start.s_addr || !c->pool_end.s_addr) {
			fprintf(err_out,
			        "%s: dhcp mode \"full\" needs pool_start and pool_end "
			        "(e.g. pool_start = \"10.77.0.100\" pool_end = \"10.77.0.200\")\n",
			        where);
			return -EINVAL;
		}
		if (ntohl(c->pool_start.s_addr) > ntohl(c->pool_end.s_addr) ||
		    !in_subnet(c->pool_start, c->pool_end, c->netmask)) {
			fprintf(err_out,
			        "%s: dhcp pool %s..: pool_start must not be above pool_end and "
			        "both "
			        "must be in one subnet of netmask\n",
			        where, inet_ntoa(c->pool_start));
			return -EINVAL;
		}
		if (ntohl(c->pool_end.s_addr) - ntohl(c->pool_start.s_addr) > 1u << 20) {
			fprintf(err_out, "%s: dhcp pool: at most 1048576 addresses\n", where);
			return -EINVAL;
		}
	}
	/* These end up in iPXE scripts: refuse here what the renderer would
	 * refuse for every node at boot time. */
	const char *ipxe_vals[][2] = { { "discovery kernel", c->discovery_kernel },
		                       { "discovery initrd", c->discovery_initrd },
		                       { "discovery cmdline", c->discovery_cmdline } };
	for (size_t i = 0; i < RB_ARRAY_SIZE(ipxe_vals); i++)
		if (!ipxe_value_is_safe(ipxe_vals[i][1])) {
			fprintf(err_out,
			        "%s: %s \"%s\": only letters, digits, spaces and -._~:/=,+@%%? "
			        "are allowed in values that go into iPXE scripts\n",
			        where, ipxe_vals[i][0], ipxe_vals[i][1]);
			return -EINVAL;
		}
	if (*c->default_profile && !rb_config_profile(c, c->default_profile)) {
		fprintf(err_out,
		        "%s: default_profile \"%s\": no such profile (define profile \"%s\" "
		        "{ image = ... } or set default_profile = \"\")\n",
		        where, c->default_profile, c->default_profile);
		return -EINVAL;
	}
	for (size_t i = 0; i < c->n_rules; i++)
		if (!rb_config_profile(c, c->rules[i].profile)) {
			fprintf(err_out,
			        "%s:%d: rule \"%s\": profile \"%s\" is not defined (add profile "
			        "\"%s\" { image = ... } or name a defined one)\n",
			        where, c->rules[i].line, c->rules[i].name, c->rules[i].profile,
			        c->rules[i].profile);
			return -EINVAL;
		}
	if (check_profile_sets(c, where) < 0)
		return -EINVAL;
	if (c->tftp_enable && c->dhcp_port == c->tftp_port) {
		fprintf(err_out, "%s: dhcp port and tftp port are both %u\n", where, c->dhcp_port);
		return -EINVAL;
	}
	return 0;
}

int rb_config_load(const char *path, const struct rb_config_overrides *ovr, FILE *err,
                   struct rb_config **ret)
{
	struct rb_config *c;
	cfg_t *cfg;
	int r;

	err_out = err ? err : stderr;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	cfg = cfg_init(root_opts, CFGF_NONE);
	if (!cfg) {
		r = -ENOMEM;
		goto err_cfg;
	}
	cfg_set_error_function(cfg, error_func);
	install_validators(cfg);
	parsing = cfg;
	if (path) {
		r = cfg_parse(cfg, path);
		if (r == CFG_FILE_ERROR) {
			fprintf(err_out, "%s: cannot read: %s\n", path, strerror(errno));
			r = -ENOENT;
			goto err_parse;
		}
		if (r != CFG_SUCCESS || check_braces(path) < 0) {
			r = -EINVAL;
			goto err_parse;
		}
		if (dup_str(&c->path, path) < 0) {
			r = -ENOMEM;
			goto err_parse;
		}
	} else {
		/* Defaults still go through the validators. */
		if (cfg_parse_buf(cfg, "") != CFG_SUCCESS) {
			r = -EINVAL;
			goto err_parse;
		}
	}
	parsing = NULL;
	r = extract(cfg, c);
	if (r < 0)
		goto err_parse;
	r = apply_overrides(c, ovr);
	if (r < 0)
		goto err_parse;
	/* After the overrides: --state-dir moves the default tokens file. */
	if (!*c->api_tokens_file && join_path(&c->api_tokens_file, c->state_dir, "tokens") < 0) {
		r = -ENOMEM;
		goto err_parse;
	}
	r = check_whole(c, path ? path : "rackbootd");
	if (r < 0)
		goto err_parse;
	cfg_free(cfg);
	*ret = c;
	return 0;

err_parse:
	parsing = NULL;
	cfg_free(cfg);
err_cfg:
	rb_config_free(c);
	return r;
}

static const char *ip_str(struct in_addr a, char buf[static INET_ADDRSTRLEN])
{
	if (!a.s_addr)
		return "";
	return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

void rb_config_print(const struct rb_config *c, FILE *o)
{
	static const char *const modes[] = { "off", "proxy", "full" };
	char b[INET_ADDRSTRLEN], m[18];

	fprintf(o, "# effective configuration (%s)\n", c->path ? c->path : "embedded defaults");
	fprintf(o, "user = \"%s\"\nstate_dir = \"%s\"\ninterface = \"%s\"\n", c->user, c->state_dir,
	        c->interface);
	fprintf(o, "server_address = \"%s\"\nlog_level = \"%s\"\n", ip_str(c->server_addr, b),
	        level_name(c->log_level));
	fprintf(o, "default_profile = \"%s\"\n", c->default_profile);
	fprintf(o, "dhcp {\n\tmode = \"%s\"\n\tport = %u\n\tproxy_port = %u\n", modes[c->dhcp_mode],
	        c->dhcp_port, c->proxy_port);
	fprintf(o, "\tpool_start = \"%s\"\n", ip_str(c->pool_start, b));
	fprintf(o, "\tpool_end = \"%s\"\n", ip_str(c->pool_end, b));
	fprintf(o, "\tnetmask = \"%s\"\n", ip_str(c->netmask, b));
	fprintf(o, "\trouter = \"%s\"\n\tdns = {", ip_str(c->router, b));
	for (size_t i = 0; i < c->n_dns; i++)
		fprintf(o, "%s\"%s\"", i ? ", " : "", ip_str(c->dns[i], b));
	fprintf(o, "}\n\tdomain = \"%s\"\n\tlease_time = %u\n", c->domain, c->lease_time);
	for (size_t i = 0; i < c->n_hosts; i++)
		fprintf(o, "\thost \"%s\" {\n\t\taddress = \"%s\"\n\t\thostname = \"%s\"\n\t}\n",
		        rb_mac_format(c->hosts[i].mac, m), ip_str(c->hosts[i].addr, b),
		        c->hosts[i].hostname);
	fprintf(o, "}\nboot {\n\tbios = \"%s\"\n\tuefi_ia32 = \"%s\"\n\tuefi_x64 = \"%s\"\n",
	        c->boot_bios, c->boot_uefi_ia32, c->boot_uefi_x64);
	fprintf(o,
	        "\tuefi_arm64 = \"%s\"\n\thttp_uefi_x64 = \"%s\"\n\thttp_uefi_arm64 = \"%s\"\n}\n",
	        c->boot_uefi_arm64, c->http_uefi_x64, c->http_uefi_arm64);
	fprintf(o, "tftp {\n\tenable = %s\n\tport = %u\n\troot = \"%s\"\n",
	        c->tftp_enable ? "true" : "false", c->tftp_port, c->tftp_root);
	fprintf(o, "\tmax_blksize = %u\n\tmax_windowsize = %u\n\ttimeout_ms = %u\n",
	        c->tftp_max_blksize, c->tftp_max_window, c->tftp_timeout_ms);
	fprintf(o, "\tretries = %u\n\tmax_transfers = %u\n}\n", c->tftp_retries,
	        c->tftp_max_transfers);
	fprintf(o, "http {\n\tport = %u\n\tboot_root = \"%s\"\n\trepo_root = \"%s\"\n",
	        c->http_port, c->http_boot_root, c->repo_root);
	fprintf(o, "\ttemplates_dir = \"%s\"\n\trepo_url = \"%s\"\n\trepo_hosts = {",
	        c->templates_dir, c->repo_url);
	for (size_t j = 0; j < c->n_repo_hosts; j++)
		fprintf(o, "%s\"%s\"", j ? ", " : "", c->repo_hosts[j]);
	fputs("}\n", o);
	fprintf(o,
	        "\tthreads = %u\n\tmax_conns = %u\n\tidle_timeout_s = %u\n\theader_timeout_s = "
	        "%u\n}\n",
	        c->http_threads, c->http_max_conns, c->http_idle_timeout_s,
	        c->http_header_timeout_s);
	fprintf(o, "registry {\n\tpath = \"%s\"\n}\n", c->db_path);
	fprintf(o, "api {\n\ttokens_file = \"%s\"\n\tmetrics_auth = %s\n\theartbeat_s = %u\n}\n",
	        c->api_tokens_file, c->metrics_auth ? "true" : "false", c->api_heartbeat_s);
	fprintf(o, "discovery {\n\tkernel = \"%s\"\n\tinitrd = \"%s\"\n\tcmdline = \"%s\"\n}\n",
	        c->discovery_kernel, c->discovery_initrd, c->discovery_cmdline);
	for (size_t i = 0; i < c->n_profiles; i++) {
		const struct rb_profile *p = &c->profiles[i];

		fprintf(o, "profile \"%s\" {\n\timage = \"%s\"\n\tversion = \"%s\"\n", p->name,
		        p->image, p->version);
		fprintf(o, "\twipe = \"%s\"\n\tgrow_last_partition = %s\n", rb_wipe_name(p->wipe),
		        p->grow_last_partition ? "true" : "false");
		fprintf(o, "\tafter = \"%s\"\n\tdisk = \"%s\"\n", rb_after_name(p->after), p->disk);
		fprintf(o, "\tpackage_sets = {");
		for (size_t j = 0; j < p->n_package_sets; j++)
			fprintf(o, "%s\"%s\"", j ? ", " : "", p->package_sets[j]);
		fprintf(o, "}\n\tkernel_args = \"%s\"\n\thostname = \"%s\"\n\tssh_keys = {",
		        p->kernel_args, p->hostname);
		for (size_t j = 0; j < p->n_ssh_keys; j++)
			fprintf(o, "%s\"%s\"", j ? ", " : "", p->ssh_keys[j]);
		fprintf(o,
		        "}\n\troot_partition = %u\n\tupdate_interval_s = %u\n\tupdate_jitter_s = "
		        "%u\n\tnetwork = \"%s\"\n}\n",
		        p->root_partition, p->update_interval_s, p->update_jitter_s,
		        p->network_dhcp ? "dhcp" : "image");
	}
	for (size_t i = 0; i < c->n_package_sets; i++) {
		const struct rb_package_set *ps = &c->package_sets[i];

		fprintf(o, "package_set \"%s\" {\n\tpackages = {", ps->name);
		for (size_t j = 0; j < ps->n_pkgs; j++)
			fprintf(o, "%s\"%s%s%s\"", j ? ", " : "", ps->pkgs[j].name,
			        *ps->pkgs[j].version ? "=" : "", ps->pkgs[j].version);
		fprintf(o, "}\n}\n");
	}
	/* Values were checked to hold no quotes or backslashes. */
	for (size_t i = 0; i < c->n_rules; i++) {
		const struct rb_rule *u = &c->rules[i];

		fprintf(o, "rule \"%s\" {\n\tprofile = \"%s\"\n\tgpu_vendor = \"%s\"\n", u->name,
		        u->profile, u->gpu_vendor);
		fprintf(o, "\tmin_gpus = %u\n\tmin_memory_gib = %u\n\tcpu_model = \"%s\"\n",
		        u->min_gpus, u->min_memory_gib, u->cpu_model);
		fprintf(o, "\tmin_disks = %u\n\tmin_nic_speed_mbps = %u\n", u->min_disks,
		        u->min_nic_speed_mbps);
		fprintf(o, "\tmac = \"%s\"\n\thostname = \"%s\"\n}\n", u->mac, u->hostname);
	}
}

const struct rb_profile *rb_config_profile(const struct rb_config *c, const char *name)
{
	if (!name || !*name)
		return NULL;
	for (size_t i = 0; i < c->n_profiles; i++)
		if (!strcmp(c->profiles[i].name, name))
			return &c->profiles[i];
	return NULL;
}

const struct rb_package_set *rb_config_package_set(const struct rb_config *c, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < c->n_package_sets; i++)
		if (!strcmp(c->package_sets[i].name, name))
			return &c->package_sets[i];
	return NULL;
}

const char *rb_config_boot_file(const struct rb_config *c, uint16_t arch, bool *ret_http)
{
	const char *f = NULL;
	bool http = false;

	/* RFC 4578 and the IANA "Processor Architecture Types" registry. */
	switch (arch) {
	case 0:
		f = c->boot_bios;
		break;
	case 6:
		f = c->boot_uefi_ia32;
		break;
	case 7: /* EFI BC: what EDK2 sends for x86-64 in the field */
	case 9: /* EFI x86-64 */
		f = c->boot_uefi_x64;
		break;
	case 11:
		f = c->boot_uefi_arm64;
		break;
	case 16:
		f = c->http_uefi_x64;
		http = true;
		break;
	case 19:
		f = c->http_uefi_arm64;
		http = true;
		break;
	default:
		return NULL;
	}
	if (!f || !*f)
		return NULL;
	if (ret_http)
		*ret_http = http;
	return f;
}
