/* plan: parsing what `rackboot-agent run` is told, from two untrusted
 * places: the kernel command line (written by an iPXE script that came over
 * plain HTTP) and the plan document rackbootd serves.
 *
 * Both parsers are strict where a mistake would send the node somewhere
 * else: every value is checked for its shape (a URL is http(s) with nothing
 * that could smuggle another path in, a MAC is six octets, a token is
 * lowercase hex, names are path-safe), every string has a length cap, a
 * repeated key is an error. A plan's unknown keys are ignored so that a
 * newer server can add fields; a known key of the wrong type is an error
 * naming the key. The plan is only instructions: the image it names is
 * verified against the trusted keys later (writer.c), never trusted here.
 *
 * Owns nothing; no I/O. Must never accept a non-http(s) URL or a disk path
 * outside /dev. */
#include "agent/plan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/catalog.h"
#include "common/hostport.h"
#include "common/manifest.h"
#include "common/nodecfg.h"
#include "common/util.h"

#define URL_PATH_ROOM 160 /* longest path the agent appends to the server URL */

static bool url_char_ok(char c)
{
	/* RFC 3986 unreserved, sub-delims, ':', '/', '@', '%', '[', ']'; no '?' or
	 * '#': paths are appended to this URL. */
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("-._~!$&'()*+,;=:/@%[]", c) != NULL;
}

/* The shared shape check of the server and repository URLs. */
static int url_parse(const char *what, const char *s, char ret[AGENT_URL_MAX], char *err,
                     size_t errlen)
{
	size_t n = strlen(s), skip;

	if (strncasecmp(s, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		skip = 8;
	else
		return rb_errf(err, errlen, "%s: expected an http:// or https:// URL", what);
	if (n >= AGENT_URL_MAX - URL_PATH_ROOM)
		return rb_errf(err, errlen, "%s: URL longer than %d characters", what,
		               AGENT_URL_MAX - URL_PATH_ROOM - 1);
	for (size_t i = 0; i < n; i++)
		if (!url_char_ok(s[i]))
			return rb_errf(err, errlen, "%s: character 0x%02x not allowed in the URL",
			               what, (unsigned)(unsigned char)s[i]);
	if (s[skip] == '\0' || s[skip] == '/')
		return rb_errf(err, errlen, "%s: URL has no host", what);
	while (n > skip && s[n - 1] == '/')
		n--;
	memcpy(ret, s, n);
	ret[n] = '\0';
	return 0;
}

int agent_server_parse(const char *s, char ret[AGENT_URL_MAX], char *err, size_t errlen)
{
	return url_parse("rackboot.server", s, ret, err, errlen);
}

int agent_token_check(const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);

	if (n < AGENT_TOKEN_MIN || n > AGENT_TOKEN_MAX)
		return rb_errf(err, errlen,
		               "rackboot.token: expected %d to %d hex characters, got %zu",
		               AGENT_TOKEN_MIN, AGENT_TOKEN_MAX, n);
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return rb_errf(err, errlen,
			               "rackboot.token: not lowercase hex at character %zu", i + 1);
	return 0;
}

int agent_mode_parse(const char *s, enum agent_mode *ret)
{
	if (!strcmp(s, "provision"))
		*ret = AGENT_MODE_PROVISION;
	else if (!strcmp(s, "discovery"))
		*ret = AGENT_MODE_DISCOVERY;
	else
		return -EINVAL;
	return 0;
}

const char *agent_mode_name(enum agent_mode m)
{
	switch (m) {
	case AGENT_MODE_PROVISION:
		return "provision";
	case AGENT_MODE_DISCOVERY:
		return "discovery";
	default:
		return "unset";
	}
}

const char *agent_after_name(enum agent_after a)
{
	switch (a) {
	case AGENT_AFTER_REBOOT:
		return "reboot";
	case AGENT_AFTER_POWEROFF:
		return "poweroff";
	case AGENT_AFTER_KEXEC:
		return "kexec";
	default:
		return "none";
	}
}

static int mac_normalise(const char *what, const char *s, char ret[18], char *err, size_t errlen)
{
	uint8_t mac[6];

	if (strlen(s) != 17 || rb_mac_parse(s, mac) < 0)
		return rb_errf(err, errlen, "%s: expected a MAC address like 52:54:00:12:34:56",
		               what);
	rb_mac_format(mac, ret);
	return 0;
}

/* ---- kernel command line ---------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One rackboot.<key>=<value> word (value NUL-terminated, already checked to
 * be printable without quotes). */
static int cmdline_word(const char *key, size_t klen, const char *val, struct agent_cmdline *c,
                        unsigned *seen, char *err, size_t errlen)
{
	static const char *const keys[] = { "server", "mac", "token", "mode" };
	/* The initramfs /init's own settings (templates/initramfs/init): known,
	 * not the agent's business, so skipped rather than refused. */
	static const char *const init_keys[] = { "debug", "shell_timeout" };
	size_t k;

	for (k = 0; k < RB_ARRAY_SIZE(init_keys); k++)
		if (strlen(init_keys[k]) == klen && !memcmp(init_keys[k], key, klen))
			return 0;
	for (k = 0; k < RB_ARRAY_SIZE(keys); k++)
		if (strlen(keys[k]) == klen && !memcmp(keys[k], key, klen))
			break;
	if (k == RB_ARRAY_SIZE(keys))
		return rb_errf(err, errlen,
		               "kernel command line: unknown parameter rackboot.%.*s (known: "
		               "rackboot.server, .mac, .token, .mode; /init's .debug, "
		               ".shell_timeout)",
		               (int)RB_MIN(klen, 32), key);
	if (*seen & (1u << k))
		return rb_errf(err, errlen, "kernel command line: rackboot.%s given twice",
		               keys[k]);
	*seen |= 1u << k;
	if (!*val)
		return rb_errf(err, errlen, "kernel command line: rackboot.%s is empty", keys[k]);
	switch (k) {
	case 0:
		return agent_server_parse(val, c->server, err, errlen);
	case 1:
		return mac_normalise("rackboot.mac", val, c->mac, err, errlen);
	case 2:
		if (agent_token_check(val, err, errlen) < 0)
			return -EINVAL;
		memcpy(c->token, val, strlen(val) + 1); /* checked: at most AGENT_TOKEN_MAX */
		return 0;
	default:
		if (agent_mode_parse(val, &c->mode) < 0)
			return rb_errf(err, errlen,
			               "kernel command line: rackboot.mode: expected provision or "
			               "discovery");
		return 0;
	}
}

int agent_cmdline_parse(const char *text, size_t len, struct agent_cmdline *ret, char *err,
                        size_t errlen)
{
	struct agent_cmdline c = { .mode = AGENT_MODE_UNSET };
	char val[AGENT_URL_MAX];
	unsigned seen = 0;
	size_t i = 0;

	if (len > AGENT_CMDLINE_MAX)
		return rb_errf(err, errlen, "kernel command line: longer than %d bytes",
		               AGENT_CMDLINE_MAX);
	if (memchr(text, '\0', len))
		return rb_errf(err, errlen, "kernel command line: contains a NUL byte");
	while (i < len) {
		size_t start, end, eq;
		bool quote = false, quoted = false;

		while (i < len && is_blank(text[i]))
			i++;
		if (i == len)
			break;
		/* A word ends at a blank outside double quotes, as the kernel splits. */
		start = i;
		for (; i < len && (quote || !is_blank(text[i])); i++)
			if (text[i] == '"') {
				quote = !quote;
				quoted = true;
			}
		end = i;
		if (end - start == 2 && !memcmp(text + start, "--", 2))
			break; /* the rest is for init, not kernel parameters */
		if (text[start] == '"')
			start++, quoted = true;
		if (end - start < 9 || memcmp(text + start, "rackboot.", 9) != 0)
			continue;
		if (quoted)
			return rb_errf(
			        err, errlen,
			        "kernel command line: rackboot.* parameters are never quoted");
		for (eq = start; eq < end && text[eq] != '='; eq++)
			;
		if (eq == end)
			return rb_errf(err, errlen, "kernel command line: %.*s has no value",
			               (int)RB_MIN(end - start, 40), text + start);
		if (end - eq - 1 >= sizeof(val))
			return rb_errf(err, errlen,
			               "kernel command line: %.*s: value longer than %zu bytes",
			               (int)RB_MIN(eq - start, 40), text + start, sizeof(val) - 1);
		for (size_t k = eq + 1; k < end; k++)
			if ((unsigned char)text[k] < 0x21 || (unsigned char)text[k] > 0x7e)
				return rb_errf(err, errlen,
				               "kernel command line: %.*s: byte 0x%02x not allowed",
				               (int)RB_MIN(eq - start, 40), text + start,
				               (unsigned)(unsigned char)text[k]);
		memcpy(val, text + eq + 1, end - eq - 1);
		val[end - eq - 1] = '\0';
		if (cmdline_word(text + start + 9, eq - start - 9, val, &c, &seen, err, errlen) < 0)
			return -EINVAL;
	}
	*ret = c;
	return 0;
}

int agent_cmdline_check(const struct agent_cmdline *c, char *err, size_t errlen)
{
	const char *missing = !c->server[0]  ? "rackboot.server (or --server)"
	                      : !c->mac[0]   ? "rackboot.mac (or --mac)"
	                      : !c->token[0] ? "rackboot.token (or --token)"
	                                     : NULL;

	if (missing)
		return rb_errf(err, errlen, "%s is missing from the kernel command line", missing);
	return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

struct pctx {
	char *err;
	size_t errlen;
};

/* The string at key (which must be present, unless optional), copied into
 * buf; -EINVAL naming the key when absent, not a string, too long or not
 * printable ASCII. *ret_present tells whether it was there. */
static int get_str(struct pctx *p, const json_t *obj, const char *path, const char *key,
                   bool optional, char *buf, size_t cap, bool *ret_present)
{
	const json_t *v = json_object_get(obj, key);
	const char *s;
	size_t n;

	if (ret_present)
		*ret_present = v && !json_is_null(v);
	if (!v || (optional && json_is_null(v))) {
		if (optional) {
			buf[0] = '\0';
			return 0;
		}
		return rb_errf(p->err, p->errlen, "plan: %s%s is missing", path, key);
	}
	if (!json_is_string(v))
		return rb_errf(p->err, p->errlen, "plan: %s%s: expected a string", path, key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= cap)
		return rb_errf(p->err, p->errlen, "plan: %s%s: longer than %zu characters", path,
		               key, cap - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return rb_errf(p->err, p->errlen,
			               "plan: %s%s: character %zu is not printable ASCII", path,
			               key, i + 1);
	memcpy(buf, s, n + 1);
	return 0;
}

/* image.repo_hosts: optional, an array of "host" or "host:port". */
static int parse_repo_hosts(struct pctx *p, const json_t *img, struct agent_plan *pl)
{
	const json_t *arr = json_object_get(img, "repo_hosts"), *v;
	size_t i;

	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return rb_errf(p->err, p->errlen, "plan: image.repo_hosts: expected an array");
	if (json_array_size(arr) > AGENT_PLAN_HOSTS_MAX)
		return rb_errf(p->err, p->errlen, "plan: image.repo_hosts: more than %d entries",
		               AGENT_PLAN_HOSTS_MAX);
	json_array_foreach(arr, i, v)
	{
		const char *s = json_string_value(v);
		char host[RB_HOST_MAX];
		unsigned port;

		if (!s || json_string_length(v) >= AGENT_PLAN_HOST_LEN ||
		    strlen(s) != json_string_length(v) || rb_hostport_parse(s, host, &port) < 0)
			return rb_errf(p->err, p->errlen,
			               "plan: image.repo_hosts[%zu]: expected \"host\" or "
			               "\"host:port\", like \"cache1.rack3.example\" or "
			               "\"10.0.0.5:8080\"",
			               i);
		memcpy(pl->image.repo_hosts[i], s, strlen(s) + 1);
	}
	pl->image.n_repo_hosts = json_array_size(arr);
	return 0;
}

static int parse_image(struct pctx *p, const json_t *img, struct agent_plan *pl)
{
	char repo[AGENT_URL_MAX];
	int r;

	if (!json_is_object(img))
		return rb_errf(p->err, p->errlen, "plan: image: expected an object");
	if ((r = get_str(p, img, "image.", "repo", false, repo, sizeof(repo), NULL)) < 0 ||
	    (r = get_str(p, img, "image.", "name", false, pl->image.name, sizeof(pl->image.name),
	                 NULL)) < 0 ||
	    (r = get_str(p, img, "image.", "version", false, pl->image.version,
	                 sizeof(pl->image.version), NULL)) < 0 ||
	    (r = get_str(p, img, "image.", "type", false, pl->image.type, sizeof(pl->image.type),
	                 NULL)) < 0)
		return r;
	if (url_parse("plan: image.repo", repo, pl->image.repo, p->err, p->errlen) < 0)
		return -EINVAL;
	if ((r = parse_repo_hosts(p, img, pl)) < 0)
		return r;
	if (!img_name_is_valid(pl->image.name))
		return rb_errf(p->err, p->errlen,
		               "plan: image.name: expected [A-Za-z0-9._+-]{1,64}");
	if (!img_name_is_valid(pl->image.version))
		return rb_errf(p->err, p->errlen,
		               "plan: image.version: expected [A-Za-z0-9._+-]{1,64}");
	if (strcmp(pl->image.type, "rackboot") != 0 && strcmp(pl->image.type, "plain") != 0 &&
	    strcmp(pl->image.type, "rootfs") != 0)
		return rb_errf(p->err, p->errlen,
		               "plan: image.type: expected rackboot, plain or rootfs");
	pl->has_image = true;
	return 0;
}

/* Fields that only matter when the plan writes a disk. */
static int parse_disk_fields(struct pctx *p, const json_t *root, struct agent_plan *pl)
{
	char buf[16];
	const json_t *g;
	int r;

	if ((r = get_str(p, root, "", "disk", false, pl->disk, sizeof(pl->disk), NULL)) < 0)
		return r;
	if (pl->disk[0] && (strncmp(pl->disk, "/dev/", 5) != 0 || !rb_path_is_safe(pl->disk + 5)))
		return rb_errf(p->err, p->errlen,
		               "plan: disk: expected \"\" or a device path below /dev/");
	if ((r = get_str(p, root, "", "wipe", false, buf, sizeof(buf), NULL)) < 0)
		return r;
	if (agent_wipe_mode_parse(buf, &pl->wipe) < 0)
		return rb_errf(p->err, p->errlen, "plan: wipe: expected none, metadata or full");
	g = json_object_get(root, "grow_last_partition");
	if (!g)
		return rb_errf(p->err, p->errlen, "plan: grow_last_partition is missing");
	if (!json_is_boolean(g))
		return rb_errf(p->err, p->errlen,
		               "plan: grow_last_partition: expected true or false");
	pl->grow_last_partition = json_is_true(g);
	return 0;
}

static int parse_packages(struct pctx *p, const json_t *arr, struct agent_plan *pl)
{
	size_t i, n = json_array_size(arr);
	const json_t *v;

	if (!json_is_array(arr))
		return rb_errf(p->err, p->errlen, "plan: packages: expected an array");
	if (n > AGENT_PLAN_PKGS_MAX)
		return rb_errf(p->err, p->errlen, "plan: packages: more than %u",
		               AGENT_PLAN_PKGS_MAX);
	if (n && !(pl->packages = calloc(n, sizeof(*pl->packages))))
		return -ENOMEM;
	json_array_foreach(arr, i, v)
	{
		struct agent_plan_pkg *k = &pl->packages[i];
		char path[40];
		int r;

		snprintf(path, sizeof(path), "packages[%zu].", i);
		if (!json_is_object(v))
			return rb_errf(p->err, p->errlen, "plan: packages[%zu]: expected an object",
			               i);
		if ((r = get_str(p, v, path, "name", false, k->name, sizeof(k->name), NULL)) < 0 ||
		    (r = get_str(p, v, path, "version", false, k->version, sizeof(k->version),
		                 NULL)) < 0)
			return r;
		if (!img_name_is_valid(k->name) || !img_pkg_version_is_valid(k->version))
			return rb_errf(p->err, p->errlen,
			               "plan: packages[%zu]: expected a package name and exact "
			               "version ([A-Za-z0-9._+~-]{1,64})",
			               i);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(pl->packages[j].name, k->name))
				return rb_errf(p->err, p->errlen,
				               "plan: packages: %s is listed twice", k->name);
		pl->n_packages = i + 1;
	}
	return 0;
}

static int parse_post_install(struct pctx *p, const json_t *post, struct agent_plan *pl)
{
	const json_t *keys = json_object_get(post, "ssh_keys"), *rp, *v;
	size_t i, n, bytes = 0;
	char *at;
	int r;

	if (!json_is_object(post))
		return rb_errf(p->err, p->errlen, "plan: post_install: expected an object");
	if ((r = get_str(p, post, "post_install.", "hostname", false, pl->post.hostname,
	                 sizeof(pl->post.hostname), NULL)) < 0 ||
	    (r = get_str(p, post, "post_install.", "kernel_args", false, pl->post.kernel_args,
	                 sizeof(pl->post.kernel_args), NULL)) < 0)
		return r;
	if (pl->post.hostname[0] && !rb_hostname_ok(pl->post.hostname))
		return rb_errf(p->err, p->errlen,
		               "plan: post_install.hostname: expected a host name (letters, "
		               "digits, '-' and '.')");
	if (!rb_kernel_args_ok(pl->post.kernel_args))
		return rb_errf(p->err, p->errlen,
		               "plan: post_install.kernel_args: expected words of letters, digits "
		               "and ._,:/+=@%%- separated by single spaces");
	rp = json_object_get(post, "root_partition");
	if (!json_is_integer(rp) || json_integer_value(rp) < 0 || json_integer_value(rp) > 128)
		return rb_errf(p->err, p->errlen,
		               "plan: post_install.root_partition: expected 0 (auto) to 128");
	pl->post.root_partition = (unsigned)json_integer_value(rp);
	/* optional: servers before these keys leave the agent's defaults */
	pl->post.update_interval_s = 300;
	pl->post.update_jitter_s = 60;
	if ((v = json_object_get(post, "update_interval_s"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 5 ||
		    json_integer_value(v) > 86400)
			return rb_errf(p->err, p->errlen,
			               "plan: post_install.update_interval_s: expected 5 to 86400 "
			               "seconds");
		pl->post.update_interval_s = (unsigned)json_integer_value(v);
	}
	if ((v = json_object_get(post, "update_jitter_s"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 86400)
			return rb_errf(p->err, p->errlen,
			               "plan: post_install.update_jitter_s: expected 0 to 86400 "
			               "seconds");
		pl->post.update_jitter_s = (unsigned)json_integer_value(v);
	}
	pl->post.network_dhcp = false;
	if ((v = json_object_get(post, "network"))) {
		if (!json_is_string(v) ||
		    (strcmp(json_string_value(v), "image") && strcmp(json_string_value(v), "dhcp")))
			return rb_errf(
			        p->err, p->errlen,
			        "plan: post_install.network: expected \"image\" or \"dhcp\"");
		pl->post.network_dhcp = !strcmp(json_string_value(v), "dhcp");
	}
	n = json_array_size(keys);
	if (!json_is_array(keys) || n > AGENT_PLAN_KEYS_MAX)
		return rb_errf(p->err, p->errlen,
		               "plan: post_install.ssh_keys: expected an array of at most %u keys",
		               AGENT_PLAN_KEYS_MAX);
	json_array_foreach(keys, i, v)
	{
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
		    !rb_ssh_key_ok(json_string_value(v)))
			return rb_errf(
			        p->err, p->errlen,
			        "plan: post_install.ssh_keys[%zu]: expected an OpenSSH public "
			        "key line",
			        i);
		bytes += json_string_length(v) + 1;
	}
	if (!n)
		return 0;
	pl->post.ssh_keys = malloc(n * sizeof(char *) + bytes);
	if (!pl->post.ssh_keys)
		return -ENOMEM;
	at = (char *)(pl->post.ssh_keys + n);
	json_array_foreach(keys, i, v)
	{
		size_t k = json_string_length(v) + 1;

		memcpy(at, json_string_value(v), k);
		pl->post.ssh_keys[i] = at;
		at += k;
	}
	pl->post.n_ssh_keys = n;
	return 0;
}

/* Stage 2: post_install, packages and the node token come together. */
static int parse_stage2(struct pctx *p, const json_t *root, struct agent_plan *pl)
{
	const json_t *post = json_object_get(root, "post_install");
	int r;

	if (!post || json_is_null(post))
		return 0;
	if ((r = parse_post_install(p, post, pl)) < 0 ||
	    (r = parse_packages(p, json_object_get(root, "packages"), pl)) < 0 ||
	    (r = get_str(p, root, "", "node_token", false, pl->node_token, sizeof(pl->node_token),
	                 NULL)) < 0)
		return r;
	if (agent_token_check(pl->node_token, NULL, 0) < 0)
		return rb_errf(p->err, p->errlen,
		               "plan: node_token: expected 32 to 64 lowercase hex digits");
	pl->has_stage2 = true;
	return 0;
}

static int parse_root(struct pctx *p, const json_t *root, const char *mac, struct agent_plan *pl)
{
	char buf[AGENT_URL_MAX], norm[18];
	const json_t *img;
	bool present;
	int r;

	if (!json_is_object(root))
		return rb_errf(p->err, p->errlen, "plan: expected a JSON object");
	if ((r = get_str(p, root, "", "mac", false, buf, 18, NULL)) < 0)
		return r;
	if (mac_normalise("plan: mac", buf, pl->mac, p->err, p->errlen) < 0)
		return -EINVAL;
	if (mac && (mac_normalise("expected mac", mac, norm, p->err, p->errlen) < 0 ||
	            strcmp(norm, pl->mac) != 0))
		return rb_errf(p->err, p->errlen, "plan: mac: the plan is for %s, this node is %s",
		               pl->mac, mac);
	if ((r = get_str(p, root, "", "mode", false, buf, 16, NULL)) < 0)
		return r;
	if (agent_mode_parse(buf, &pl->mode) < 0)
		return rb_errf(p->err, p->errlen, "plan: mode: expected provision or discovery");
	if ((r = get_str(p, root, "", "state", true, pl->state, sizeof(pl->state), NULL)) < 0 ||
	    (r = get_str(p, root, "", "profile", true, pl->profile, sizeof(pl->profile), NULL)) < 0)
		return r;
	if ((r = get_str(p, root, "", "action", false, buf, 16, NULL)) < 0)
		return r;
	if (!strcmp(buf, "image"))
		pl->action = AGENT_ACTION_IMAGE;
	else if (!strcmp(buf, "inventory"))
		pl->action = AGENT_ACTION_INVENTORY;
	else
		return rb_errf(p->err, p->errlen, "plan: action: expected image or inventory");
	if (pl->action == AGENT_ACTION_IMAGE && pl->mode == AGENT_MODE_DISCOVERY)
		return rb_errf(p->err, p->errlen,
		               "plan: action: a discovery plan may only take the inventory");
	if ((r = get_str(p, root, "", "after", pl->action == AGENT_ACTION_INVENTORY, buf, 16,
	                 &present)) < 0)
		return r;
	if (!present)
		pl->after = AGENT_AFTER_POWEROFF; /* discovery's documented default */
	else if (!strcmp(buf, "reboot"))
		pl->after = AGENT_AFTER_REBOOT;
	else if (!strcmp(buf, "poweroff"))
		pl->after = AGENT_AFTER_POWEROFF;
	else if (!strcmp(buf, "none"))
		pl->after = AGENT_AFTER_NONE;
	else if (!strcmp(buf, "kexec"))
		pl->after = AGENT_AFTER_KEXEC;
	else
		return rb_errf(p->err, p->errlen,
		               "plan: after: expected reboot, poweroff, none or kexec");
	img = json_object_get(root, "image");
	if (pl->action == AGENT_ACTION_INVENTORY) {
		/* Nothing else is read: an inventory plan never touches a disk. */
		return 0;
	}
	if (!img || json_is_null(img))
		return rb_errf(p->err, p->errlen, "plan: image is missing (action is image)");
	if ((r = parse_image(p, img, pl)) < 0 || (r = parse_disk_fields(p, root, pl)) < 0)
		return r;
	return parse_stage2(p, root, pl);
}

void agent_plan_fini(struct agent_plan *pl)
{
	free(pl->packages);
	free(pl->post.ssh_keys);
	pl->packages = NULL;
	pl->post.ssh_keys = NULL;
	pl->n_packages = pl->post.n_ssh_keys = 0;
}

int agent_plan_parse(const char *data, size_t len, const char *mac, struct agent_plan *ret,
                     char *err, size_t errlen)
{
	struct pctx p = { .err = err, .errlen = errlen };
	struct agent_plan *pl;
	json_t *root = NULL;
	int r;

	r = img_json_load(data, len, AGENT_PLAN_MAX, "plan", &root, err, errlen);
	if (r < 0)
		return r;
	/* Built aside and copied whole: ret is written only on success. */
	pl = calloc(1, sizeof(*pl));
	if (!pl) {
		json_decref(root);
		return -ENOMEM;
	}
	r = parse_root(&p, root, mac, pl);
	if (r == 0)
		*ret = *pl;
	else
		agent_plan_fini(pl);
	free(pl);
	json_decref(root);
	return r;
}
