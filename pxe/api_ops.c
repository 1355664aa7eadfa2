/* Operator API handlers (docs/operator.md has the reference):
 *   GET   /api/v1/nodes[?state=&profile=&rack=&label=k=v&held=]   list
 *   POST  /api/v1/nodes                      register a MAC before it boots
 *   GET   /api/v1/nodes/<mac>                the node, events, inventory, progress
 *   PATCH /api/v1/nodes/<mac>                profile, hostname, labels, rack,
 *                                            desired image/version/package sets
 *   POST  /api/v1/nodes/<mac>/actions/<provision|reimage|hold|release|retire>
 *   GET   /api/v1/images[/<name>]            from the repository catalogue
 *   GET   /api/v1/profiles[/<name>]          from the config
 *   GET   /api/v1/package-sets[/<name>]      from the config, with the versions
 *                                            handed out and a rollback pin
 *   POST  /api/v1/package-sets/<name>/actions/<rollback|unpin>
 *
 * Every request is authorized first (401 before 404 or 405, so an
 * anonymous client learns nothing about the paths). Bodies are parsed
 * strictly: one JSON object, no duplicate keys, known keys only, each of
 * the right type and within its bounds, else 400 and nothing is written.
 * Lifecycle actions are decided by pxe/lifecycle.c inside the registry's
 * transaction (registry_operator_change()), so a concurrent agent report
 * or a second operator cannot slip between the check and the write; a
 * refused action is 409 with the reason. Each change is a registry event
 * "op.<what>" whose detail names the token that made it.
 *
 * Owns the loaded operator tokens (re-read when the file changes). Borrows
 * the api (live progress, the catalogue loader), config, registry and
 * repository fd. Never touches a socket; logs at debug level, except a
 * tokens file that cannot be re-read (a warning: operators must know) and
 * a package set's rollback or unpin (info: the registry's events are per
 * node, so this log is their record). */
#include "pxe/api_ops.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/catalog.h"
#include "common/log.h"
#include "common/nodecfg.h"
#include "common/util.h"
#include "pxe/api.h"
#include "pxe/config.h"
#include "pxe/lifecycle.h"
#include "pxe/nodefilter.h"
#include "pxe/registry.h"

#define OPS_NODES         "/api/v1/nodes"
#define OPS_MAX_EVENTS    50
#define OPS_MAX_LABELS    64
#define OPS_LABEL_KEY_MAX 63
#define OPS_LABEL_VAL_MAX 255
#define OPS_RACK_MAX      64
#define OPS_HOSTNAME_MAX  63
#define OPS_MAX_PKGSETS   32
#define OPS_RELOAD_USEC   1000000

struct api_ops {
	struct api *api;
	const struct rb_config *cfg;
	struct registry *reg;
	int repo_fd;
	pthread_mutex_t lock; /* the tokens and their file's identity */
	struct rb_optokens *tokens;
	struct stat tok_st; /* of the file last read (or tried); st_ino 0 = none */
	uint64_t tok_checked_usec;
	bool tok_warned;
};

static const char *const collections[] = { "/api/v1/images", "/api/v1/profiles",
	                                   "/api/v1/package-sets" };

/* ---- replies -------------------------------------------------------------- */

/* Replies are built with api.c's api_reply_doc(), api_reply_error() and
 * api_reply_errorf() (api.h). */

static int reply_method(struct api_reply *ret, const char *allow)
{
	ret->allow = allow;
	return api_reply_error(ret, 405, "method not allowed");
}

static int reply_registry_error(struct api_reply *ret, int r)
{
	if (r == -ENOMEM)
		return -ENOMEM;
	if (r == -ENOENT)
		return api_reply_error(
		        ret, 404,
		        "unknown node (register it with POST /api/v1/nodes, or let it "
		        "netboot once)");
	log_debug("api_ops: registry: %s", strerror(-r));
	return api_reply_error(ret, 500, "registry error");
}

/* ---- lifecycle ------------------------------------------------------------ */

static int load_tokens(struct api_ops *ops, char *err, size_t errlen)
{
	struct rb_optokens *set = NULL;
	struct stat st;
	int r;

	if (stat(ops->cfg->api_tokens_file, &st) < 0) {
		r = -errno;
		rb_errf(err, errlen, "%s: %s", ops->cfg->api_tokens_file, strerror(errno));
		if (r == -ENOENT) {
			/* No file (any more): no token is valid. */
			rb_optokens_free(ops->tokens);
			ops->tokens = NULL;
			memset(&ops->tok_st, 0, sizeof(ops->tok_st));
		}
		return r;
	}
	/* Remembered also when the file is broken: it is not parsed again
	 * until it changes (a stream of wrong tokens must not make the
	 * server parse it for each). */
	ops->tok_st = st;
	r = rb_optokens_load(ops->cfg->api_tokens_file, &set, err, errlen);
	if (r < 0)
		return r;
	rb_optokens_free(ops->tokens);
	ops->tokens = set;
	return 0;
}

int api_ops_new(struct api *api, const struct rb_config *cfg, struct registry *reg, int repo_fd,
                struct api_ops **ret, char *err, size_t errlen)
{
	struct api_ops *ops = calloc(1, sizeof(*ops));
	int r;

	if (!ops)
		return -ENOMEM;
	ops->api = api;
	ops->cfg = cfg;
	ops->reg = reg;
	ops->repo_fd = repo_fd;
	pthread_mutex_init(&ops->lock, NULL);
	r = load_tokens(ops, err, errlen);
	if (r < 0 && r != -ENOENT) {
		api_ops_free(ops);
		return r;
	}
	ops->tok_checked_usec = rb_now_usec();
	*ret = ops;
	return 0;
}

void api_ops_free(struct api_ops *ops)
{
	if (!ops)
		return;
	rb_optokens_free(ops->tokens);
	pthread_mutex_destroy(&ops->lock);
	free(ops);
}

size_t api_ops_token_count(struct api_ops *ops)
{
	size_t n;

	pthread_mutex_lock(&ops->lock);
	n = rb_optokens_count(ops->tokens);
	pthread_mutex_unlock(&ops->lock);
	return n;
}

/* ---- authorization -------------------------------------------------------- */

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Re-reads the tokens file when it changed: checked at most once a second,
 * or at once (force) when a token was not found, so that a token made a
 * moment ago works on its first use. Caller holds ops->lock. */
static void maybe_reload(struct api_ops *ops, bool force)
{
	uint64_t now = rb_now_usec();
	char err[400];
	struct stat st;
	int r;

	if (!force && now - ops->tok_checked_usec < OPS_RELOAD_USEC)
		return;
	ops->tok_checked_usec = now;
	if (stat(ops->cfg->api_tokens_file, &st) == 0) {
		if (ops->tok_st.st_ino && same_file(&st, &ops->tok_st))
			return;
	} else if (errno == ENOENT && !ops->tok_st.st_ino) {
		return; /* still no file */
	}
	r = load_tokens(ops, err, sizeof(err));
	if (r == 0) {
		log_info("operator tokens: %zu loaded from %s", rb_optokens_count(ops->tokens),
		         ops->cfg->api_tokens_file);
		ops->tok_warned = false;
	} else if (!ops->tok_warned) {
		/* Keep the tokens we had: a half-written or broken file must
		 * not lock every operator out (or let anyone in). */
		log_warn("operator tokens: cannot re-read: %s%s", err,
		         r == -ENOENT ? " (no operator token is valid now)"
		                      : " (keeping the tokens loaded before)");
		ops->tok_warned = true;
	}
}

int api_ops_authorize(struct api_ops *ops, const char *authorization,
                      char ret_name[RB_OPTOKEN_NAME_MAX + 1], const char **ret_msg)
{
	const char *token, *name;
	size_t len = 0;
	int r = 0;

	token = rb_bearer_token(authorization, &len);
	if (!token) {
		*ret_msg = "operator token required: send \"Authorization: Bearer <token>\" "
		           "(make one on the server with: rackbootd token create NAME)";
		return -EACCES;
	}
	pthread_mutex_lock(&ops->lock);
	maybe_reload(ops, false);
	name = rb_optokens_check(ops->tokens, token, len);
	if (!name) {
		maybe_reload(ops, true);
		name = rb_optokens_check(ops->tokens, token, len);
	}
	if (name)
		snprintf(ret_name, RB_OPTOKEN_NAME_MAX + 1, "%s", name);
	else
		r = -EPERM;
	pthread_mutex_unlock(&ops->lock);
	if (r < 0)
		*ret_msg =
		        "not a valid operator token (it may have been revoked, or it is a node's "
		        "boot token: check RACKBOOT_TOKEN or make a new one with rackbootd token "
		        "create NAME)";
	return r;
}

/* ---- request bodies ------------------------------------------------------- */

static int load_body(const struct api_request *rq, json_t **ret, struct api_reply *rep,
                     bool *replied)
{
	json_error_t jerr;
	json_t *doc;

	*replied = true;
	if (!rq->body || rq->body_len == 0)
		return api_reply_error(rep, 400, "a JSON object body is required");
	if (rq->body_len > API_BODY_MAX)
		return api_reply_error(rep, 413, "body larger than 1 MiB");
	doc = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc)
		return api_reply_errorf(rep, 400, "body is not JSON: %s at line %d column %d",
		                        jerr.text, jerr.line, jerr.column);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return api_reply_error(rep, 400, "body must be a JSON object");
	}
	*replied = false;
	*ret = doc;
	return 0;
}

/* The first key of doc not in allowed (NULL-terminated), or NULL. */
static const char *unknown_key(json_t *doc, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(doc, key, v)
	{
		bool ok = false;

		for (size_t i = 0; allowed[i]; i++)
			ok = ok || !strcmp(key, allowed[i]);
		if (!ok)
			return key;
	}
	return NULL;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* String member key into dst (cap bytes): 1 if present, 0 if absent, or
 * -EINVAL with why. check (may be NULL) validates a non-empty value. */
static int get_str(json_t *doc, const char *key, char *dst, size_t cap, bool (*check)(const char *),
                   const char *expect, char *why, size_t whylen)
{
	json_t *v = json_object_get(doc, key);
	const char *s;

	if (!v)
		return 0;
	if (!json_is_string(v))
		return rb_errf(why, whylen, "\"%s\" must be a string (%s)", key, expect);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || json_string_length(v) >= cap || !printable(s) ||
	    (*s && check && !check(s)))
		return rb_errf(why, whylen, "\"%s\": %s", key, expect);
	memcpy(dst, s, json_string_length(v) + 1);
	return 1;
}

static bool label_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > OPS_LABEL_KEY_MAX)
		return false;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
		      (*k >= '0' && *k <= '9') || *k == '.' || *k == '_' || *k == '-' || *k == '/'))
			return false;
	return true;
}

/* Applies a "labels" member to the stored labels: replace (register) or
 * merge (PATCH: a null value removes the key). 1 if present, 0 if absent,
 * -EINVAL with why. */
static int get_labels(json_t *doc, bool merge, char stored[REGISTRY_LABELS_MAX + 1], char *why,
                      size_t whylen)
{
	json_t *v = json_object_get(doc, "labels"), *cur = NULL, *val;
	const char *key;
	char *text;
	int r = -EINVAL;

	if (!v)
		return 0;
	if (!json_is_object(v))
		return rb_errf(why, whylen, "\"labels\" must be an object of strings");
	cur = merge ? json_loads(stored, 0, NULL) : NULL;
	if (!json_is_object(cur)) {
		json_decref(cur);
		cur = json_object();
		if (!cur)
			return -ENOMEM;
	}
	json_object_foreach(v, key, val)
	{
		if (!label_key_ok(key)) {
			rb_errf(why, whylen,
			        "label key \"%.80s\": 1 to %d letters, digits or ._-/ characters",
			        key, OPS_LABEL_KEY_MAX);
			goto out;
		}
		if (json_is_null(val) && merge) {
			json_object_del(cur, key);
			continue;
		}
		if (!json_is_string(val) || json_string_length(val) > OPS_LABEL_VAL_MAX ||
		    strlen(json_string_value(val)) != json_string_length(val) ||
		    !printable(json_string_value(val))) {
			rb_errf(why, whylen,
			        "label \"%s\": the value must be a string of at most %d printable "
			        "ASCII characters%s",
			        key, OPS_LABEL_VAL_MAX, merge ? " (or null to remove it)" : "");
			goto out;
		}
		if (json_object_set(cur, key, val) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (json_object_size(cur) > OPS_MAX_LABELS) {
		rb_errf(why, whylen, "at most %d labels per node", OPS_MAX_LABELS);
		goto out;
	}
	text = json_dumps(cur, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	if (strlen(text) > REGISTRY_LABELS_MAX) {
		free(text);
		rb_errf(why, whylen, "the labels take more than %d bytes as JSON",
		        REGISTRY_LABELS_MAX);
		goto out;
	}
	snprintf(stored, REGISTRY_LABELS_MAX + 1, "%s", text);
	free(text);
	r = 1;
out:
	json_decref(cur);
	return r;
}

/* "package_sets": null (the profile's) or an array of defined set names. */
static int get_package_sets(const struct rb_config *cfg, json_t *doc,
                            char stored[REGISTRY_PKGSETS_MAX + 1], char *why, size_t whylen)
{
	json_t *v = json_object_get(doc, "package_sets"), *e;
	size_t i;
	char *text;

	if (!v)
		return 0;
	if (json_is_null(v)) {
		stored[0] = '\0';
		return 1;
	}
	if (!json_is_array(v) || json_array_size(v) > OPS_MAX_PKGSETS)
		return rb_errf(why, whylen,
		               "\"package_sets\" must be null (the profile's) or an array of at "
		               "most %d package set names",
		               OPS_MAX_PKGSETS);
	json_array_foreach(v, i, e)
	{
		const char *name = json_string_value(e);

		if (!name || !rb_config_package_set(cfg, name))
			return rb_errf(why, whylen,
			               "package set \"%.80s\" is not defined in rackbootd.conf "
			               "(GET /api/v1/package-sets lists them)",
			               name ? name : "(not a string)");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(name, json_string_value(json_array_get(v, j))))
				return rb_errf(why, whylen, "package set \"%s\" is named twice",
				               name);
	}
	text = json_dumps(v, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	if (strlen(text) > REGISTRY_PKGSETS_MAX) {
		free(text);
		return rb_errf(why, whylen, "\"package_sets\" is longer than %d bytes",
		               REGISTRY_PKGSETS_MAX);
	}
	snprintf(stored, REGISTRY_PKGSETS_MAX + 1, "%s", text);
	free(text);
	return 1;
}

static bool hostname_ok(const char *s)
{
	return rb_hostname_ok(s);
}

static bool name_ok(const char *s)
{
	return img_name_is_valid(s);
}

static bool version_ok(const char *s)
{
	return !strcmp(s, "latest") || img_pkg_version_is_valid(s);
}

/* The fields PATCH and POST share, applied to node and op. *changed lists
 * the keys set, for the event. 0, or -EINVAL with why (a 400). */
static int apply_fields(const struct rb_config *cfg, json_t *doc, bool merge_labels,
                        struct registry_node *node, struct registry_operator *op, char *changed,
                        size_t changed_len, char *why, size_t whylen)
{
	char profile[sizeof(node->profile)];
	size_t o = 0;
	int r;

#define NOTE_CHANGED(name)                                                                         \
	do {                                                                                       \
		if (r > 0 && o < changed_len)                                                      \
			o += (size_t)snprintf(changed + o, changed_len - o, "%s%s", o ? ", " : "", \
			                      name);                                               \
	} while (0)

	changed[0] = '\0';
	r = get_str(doc, "profile", profile, sizeof(profile), NULL,
	            "the name of a profile defined in rackbootd.conf, or \"\" for the rules and "
	            "default_profile",
	            why, whylen);
	if (r > 0 && *profile && !rb_config_profile(cfg, profile))
		return rb_errf(why, whylen,
		               "profile \"%s\" is not defined in rackbootd.conf (GET "
		               "/api/v1/profiles lists them)",
		               profile);
	if (r > 0)
		snprintf(node->profile, sizeof(node->profile), "%s", profile);
	NOTE_CHANGED("profile");
	if (r >= 0)
		r = get_str(doc, "hostname", node->hostname, OPS_HOSTNAME_MAX + 1, hostname_ok,
		            "a host name of at most 63 letters, digits, '-' and '.'", why, whylen);
	NOTE_CHANGED("hostname");
	if (r >= 0)
		r = get_labels(doc, merge_labels, op->labels, why, whylen);
	NOTE_CHANGED("labels");
	if (r >= 0)
		r = get_str(doc, "rack", op->rack, OPS_RACK_MAX + 1, NULL,
		            "at most 64 printable ASCII characters", why, whylen);
	NOTE_CHANGED("rack");
	if (r >= 0)
		r = get_str(doc, "desired_image", op->desired_image, sizeof(op->desired_image),
		            name_ok, "an image name of the repository, or \"\" for the profile's",
		            why, whylen);
	NOTE_CHANGED("desired_image");
	if (r >= 0)
		r = get_str(doc, "desired_version", op->desired_version,
		            sizeof(op->desired_version), version_ok,
		            "a version, \"latest\", or \"\" for the profile's", why, whylen);
	NOTE_CHANGED("desired_version");
	if (r >= 0)
		r = get_package_sets(cfg, doc, op->desired_package_sets, why, whylen);
	NOTE_CHANGED("package_sets");
#undef NOTE_CHANGED
	return r < 0 ? r : 0;
}

/* ---- node documents ------------------------------------------------------- */

/* The node document: the registry's (events, inventory, operator fields),
 * the live progress, and what its installed agent last reported
 * ("installed", "reboot_required": the stage 3 accessor's). */
static int node_reply(struct api_ops *ops, const uint8_t mac[6], unsigned status,
                      struct api_reply *ret)
{
	struct registry_installed inst = { 0 };
	json_t *doc = NULL, *prog;
	int r = registry_node_doc(ops->reg, mac, OPS_MAX_EVENTS, &doc);

	if (r < 0)
		return reply_registry_error(ret, r);
	r = registry_installed_get(ops->reg, mac, &inst);
	if (r < 0) {
		json_decref(doc);
		return reply_registry_error(ret, r);
	}
	prog = api_progress_json(ops->api, mac);
	if (!prog || json_object_set_new(doc, "progress", prog) < 0 ||
	    json_object_set_new(doc, "installed",
	                        inst.installed ? json_incref(inst.installed) : json_null()) < 0 ||
	    json_object_set_new(doc, "reboot_required", json_boolean(inst.reboot_required)) < 0) {
		registry_installed_fini(&inst);
		json_decref(doc);
		return -ENOMEM;
	}
	registry_installed_fini(&inst);
	return api_reply_doc(ret, status, doc);
}

static int handle_list(struct api_ops *ops, const struct api_request *rq, struct api_reply *ret)
{
	struct node_filter *f = malloc(sizeof(*f));
	json_t *all = NULL, *out = NULL, *n;
	char why[200];
	size_t i;
	int r;

	if (!f)
		return -ENOMEM;
	r = node_filter_parse(rq->query, f, why, sizeof(why));
	if (r < 0) {
		free(f);
		return api_reply_error(ret, 400, why);
	}
	r = registry_nodes_doc(ops->reg, &all);
	if (r < 0) {
		free(f);
		return reply_registry_error(ret, r);
	}
	out = json_array();
	if (!out)
		goto oom;
	json_array_foreach(all, i, n)
	{
		uint8_t mac[6];
		json_t *prog;

		if (!node_filter_match(f, n))
			continue;
		if (rb_mac_parse(json_string_value(json_object_get(n, "mac")), mac) < 0)
			continue;
		prog = api_progress_json(ops->api, mac);
		if (!prog || json_object_set_new(n, "progress", prog) < 0 ||
		    json_array_append(out, n) < 0)
			goto oom;
	}
	free(f);
	json_decref(all);
	return api_reply_doc(ret, 200, json_pack("{s:o}", "nodes", out));
oom:
	free(f);
	json_decref(all);
	json_decref(out);
	return -ENOMEM;
}

static int handle_register(struct api_ops *ops, const struct api_request *rq, const char *who,
                           struct api_reply *ret)
{
	static const char *const allowed[] = {
		"mac", "hostname", "profile", "labels", "rack", NULL
	};
	struct registry_operator *op = NULL;
	struct registry_node node = { 0 };
	json_t *doc = NULL;
	const char *bad, *macstr;
	char why[400], changed[200], detail[512];
	bool replied;
	int r;

	r = load_body(rq, &doc, ret, &replied);
	if (replied)
		return r;
	bad = unknown_key(doc, allowed);
	if (bad) {
		r = api_reply_errorf(ret, 400,
		                     "unknown field \"%.80s\" (allowed: mac, hostname, "
		                     "profile, labels, rack)",
		                     bad);
		goto out;
	}
	macstr = json_string_value(json_object_get(doc, "mac"));
	if (!macstr || rb_mac_parse(macstr, node.mac) < 0) {
		r = api_reply_error(ret, 400, "\"mac\" is required: aa:bb:cc:dd:ee:ff");
		goto out;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(op->labels, sizeof(op->labels), "{}");
	snprintf(node.state, sizeof(node.state), "new");
	r = apply_fields(ops->cfg, doc, false, &node, op, changed, sizeof(changed), why,
	                 sizeof(why));
	if (r == -ENOMEM)
		goto out;
	if (r < 0) {
		r = api_reply_error(ret, 400, why);
		goto out;
	}
	snprintf(detail, sizeof(detail), "by %s", who);
	r = registry_node_register(ops->reg, &node, op, "op.register", detail);
	if (r == -EEXIST) {
		char m[18];

		r = api_reply_errorf(ret, 409,
		                     "node %s is registered already (change it with PATCH "
		                     "/api/v1/nodes/%s)",
		                     rb_mac_format(node.mac, m), m);
		goto out;
	}
	if (r < 0) {
		r = reply_registry_error(ret, r);
		goto out;
	}
	r = node_reply(ops, node.mac, 201, ret);
out:
	free(op);
	json_decref(doc);
	return r;
}

struct patch_ctx {
	const struct rb_config *cfg;
	json_t *doc;
	const char *who;
	char why[400];
	bool bad; /* a 400, with why */
};

static int decide_patch(struct registry_node *node, struct registry_operator *op, char event[24],
                        char detail[512], void *ud)
{
	struct patch_ctx *c = ud;
	char changed[200];
	int r;

	r = apply_fields(c->cfg, c->doc, true, node, op, changed, sizeof(changed), c->why,
	                 sizeof(c->why));
	if (r < 0) {
		c->bad = r == -EINVAL;
		return r;
	}
	snprintf(event, 24, "op.set");
	snprintf(detail, 512, "by %s: %s", c->who, *changed ? changed : "nothing");
	return 0;
}

static int handle_patch(struct api_ops *ops, const struct api_request *rq, const uint8_t mac[6],
                        const char *who, struct api_reply *ret)
{
	static const char *const allowed[] = { "profile",       "hostname",
		                               "labels",        "rack",
		                               "desired_image", "desired_version",
		                               "package_sets",  NULL };
	struct patch_ctx c = { .cfg = ops->cfg, .who = who };
	const char *bad;
	bool replied;
	int r;

	r = load_body(rq, &c.doc, ret, &replied);
	if (replied)
		return r;
	bad = unknown_key(c.doc, allowed);
	if (bad || json_object_size(c.doc) == 0) {
		r = api_reply_errorf(ret, 400,
		                     "%s%.80s%s (allowed: profile, hostname, labels, rack, "
		                     "desired_image, desired_version, package_sets)",
		                     bad ? "unknown field \"" : "nothing to change", bad ? bad : "",
		                     bad ? "\"" : "");
		json_decref(c.doc);
		return r;
	}
	r = registry_operator_change(ops->reg, mac, decide_patch, &c);
	json_decref(c.doc);
	if (c.bad)
		return api_reply_error(ret, 400, c.why);
	if (r < 0)
		return reply_registry_error(ret, r);
	return node_reply(ops, mac, 200, ret);
}

struct action_ctx {
	enum lifecycle_action action;
	const char *who;
	const struct rb_config *cfg;
	char wipe[16]; /* reimage: "" = the profile's */
	char why[300];
	bool refused; /* a 409, with why */
};

static int decide_action(struct registry_node *node, struct registry_operator *op, char event[24],
                         char detail[512], void *ud)
{
	struct action_ctx *c = ud;
	char next[24];
	bool held;
	int r;

	r = lifecycle_apply(c->action, node->state, op->held != 0, next, &held, c->why,
	                    sizeof(c->why));
	if (r < 0) {
		c->refused = true;
		return r;
	}
	snprintf(event, 24, "op.%s", lifecycle_action_name(c->action));
	op->held = held;
	if (c->action == LC_REIMAGE) {
		/* Without a level: the node's own profile's, else the default
		 * profile's, else "metadata" (rules are not evaluated here:
		 * they need the inventory). Never "": that means no reimage. */
		const struct rb_profile *p = rb_config_profile(c->cfg, node->profile);

		if (!p)
			p = rb_config_profile(c->cfg, c->cfg->default_profile);
		snprintf(op->reimage_wipe, sizeof(op->reimage_wipe), "%s",
		         *c->wipe ? c->wipe
		         : p      ? rb_wipe_name(p->wipe)
		                  : "metadata");
	}
	if (strcmp(next, node->state) != 0 || c->action == LC_REIMAGE)
		snprintf(detail, 512, "by %s: %s -> %s%s%s", c->who, node->state, next,
		         c->action == LC_REIMAGE ? ", wipe " : "",
		         c->action == LC_REIMAGE ? op->reimage_wipe : "");
	else
		snprintf(detail, 512, "by %s", c->who);
	snprintf(node->state, sizeof(node->state), "%s", next);
	if (c->action == LC_RETIRE || c->action == LC_PROVISION)
		op->reimage_wipe[0] = '\0';
	return 0;
}

static int handle_action(struct api_ops *ops, const struct api_request *rq, const uint8_t mac[6],
                         const char *name, const char *who, struct api_reply *ret)
{
	struct action_ctx c = { .who = who, .cfg = ops->cfg };
	json_t *doc = NULL;
	bool replied;
	int r;

	if (lifecycle_action_parse(name, &c.action) < 0)
		return api_reply_errorf(
		        ret, 404, "no action \"%.40s\" (provision, reimage, hold, release, retire)",
		        name);
	/* A body is optional: reimage takes {"wipe": "..."}, the others {}. */
	if (rq->body && rq->body_len) {
		static const char *const reimage_keys[] = { "wipe", NULL };
		static const char *const no_keys[] = { NULL };
		const char *bad;

		r = load_body(rq, &doc, ret, &replied);
		if (replied)
			return r;
		bad = unknown_key(doc, c.action == LC_REIMAGE ? reimage_keys : no_keys);
		if (bad) {
			/* bad points into doc: the reply first. */
			r = api_reply_errorf(ret, 400, "unknown field \"%.80s\"%s", bad,
			                     c.action == LC_REIMAGE ? " (reimage takes \"wipe\")"
			                                            : " (this action takes none)");
			json_decref(doc);
			return r;
		}
		r = get_str(doc, "wipe", c.wipe, sizeof(c.wipe), NULL, "", c.why, sizeof(c.why));
		json_decref(doc);
		if (r < 0 || (r > 0 && strcmp(c.wipe, "none") && strcmp(c.wipe, "metadata") &&
		              strcmp(c.wipe, "full")))
			return api_reply_error(
			        ret, 400,
			        "\"wipe\" must be \"none\", \"metadata\" or \"full\" (or "
			        "absent for the profile's)");
	}
	r = registry_operator_change(ops->reg, mac, decide_action, &c);
	if (c.refused)
		return api_reply_error(ret, 409, c.why);
	if (r < 0)
		return reply_registry_error(ret, r);
	return node_reply(ops, mac, 200, ret);
}

/* ---- images, profiles, package sets --------------------------------------- */

static json_t *image_versions(const struct img_catalog *cat, const char *name, const char **latest)
{
	json_t *arr = json_array();

	*latest = NULL;
	if (!arr)
		return NULL;
	for (size_t i = 0; i < cat->n_images; i++) {
		const struct img_cat_image *e = &cat->images[i];

		if (strcmp(e->name, name))
			continue;
		if (json_array_append_new(
		            arr, json_pack("{s:s, s:s, s:I, s:I}", "version", e->version, "type",
		                           "rackboot", "disk_size", (json_int_t)e->disk_size,
		                           "stored_bytes", (json_int_t)e->stored_bytes)) < 0)
			goto oom;
		if (!*latest || strverscmp(e->version, *latest) > 0)
			*latest = e->version;
	}
	for (size_t i = 0; i < cat->n_plain; i++) {
		const struct img_cat_plain *e = &cat->plain[i];

		if (strcmp(e->name, name))
			continue;
		if (json_array_append_new(
		            arr, json_pack("{s:s, s:s, s:s, s:I}", "version", e->version, "type",
		                           strncmp(e->kind, "tar", 3) == 0 ? "rootfs" : "plain",
		                           "kind", e->kind, "size", (json_int_t)e->size)) < 0)
			goto oom;
		if (!*latest || strverscmp(e->version, *latest) > 0)
			*latest = e->version;
	}
	return arr;
oom:
	json_decref(arr);
	return NULL;
}

static int handle_images(struct api_ops *ops, const char *name, struct api_reply *ret)
{
	struct img_catalog *cat = NULL;
	json_t *list = NULL, *seen = NULL;
	char why[400];
	int r;

	r = api_catalog_load(ops->api, &cat, why, sizeof(why));
	if (r == -ENOMEM)
		return r;
	if (r < 0 && name)
		return api_reply_errorf(ret, 404, "no image \"%.65s\": %s", name, why);
	list = json_array();
	seen = json_object();
	if (!list || !seen)
		goto oom;
	for (size_t k = 0; cat && k < cat->n_images + cat->n_plain; k++) {
		const char *n = k < cat->n_images ? cat->images[k].name
		                                  : cat->plain[k - cat->n_images].name;
		const char *latest;
		json_t *vers;

		if ((name && strcmp(n, name)) || json_object_get(seen, n))
			continue;
		vers = image_versions(cat, n, &latest);
		if (!vers || json_object_set_new(seen, n, json_true()) < 0 ||
		    json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "name", n, "latest",
		                                          latest ? latest : "", "versions", vers)) <
		            0)
			goto oom;
	}
	json_decref(seen);
	img_catalog_free(cat);
	if (name) {
		json_t *one = json_incref(json_array_get(list, 0));

		json_decref(list);
		if (!one)
			return api_reply_errorf(
			        ret, 404, "no image \"%.65s\" in the repository catalogue", name);
		return api_reply_doc(ret, 200, one);
	}
	/* Without a catalogue the list is empty, and says why. */
	return api_reply_doc(
	        ret, 200, json_pack("{s:o, s:s*}", "images", list, "warning", r < 0 ? why : NULL));
oom:
	json_decref(list);
	json_decref(seen);
	img_catalog_free(cat);
	return -ENOMEM;
}

static json_t *strings_json(char *const *v, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_string(v[i])) < 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static json_t *profile_json(const struct rb_profile *p)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:o, s:s, s:s, s:o, s:i, s:i, s:i, "
	                 "s:s}",
	                 "name", p->name, "image", p->image, "version", p->version, "wipe",
	                 rb_wipe_name(p->wipe), "grow_last_partition", (int)p->grow_last_partition,
	                 "after", rb_after_name(p->after), "disk", p->disk, "package_sets",
	                 strings_json(p->package_sets, p->n_package_sets), "kernel_args",
	                 p->kernel_args, "hostname", p->hostname, "ssh_keys",
	                 strings_json(p->ssh_keys, p->n_ssh_keys), "root_partition",
	                 (int)p->root_partition, "update_interval_s", (int)p->update_interval_s,
	                 "update_jitter_s", (int)p->update_jitter_s, "network",
	                 p->network_dhcp ? "dhcp" : "image");
}

static json_t *package_set_json(const struct rb_package_set *s)
{
	json_t *pkgs = json_array();

	for (size_t i = 0; pkgs && i < s->n_pkgs; i++)
		if (json_array_append_new(pkgs, json_pack("{s:s, s:s}", "name", s->pkgs[i].name,
		                                          "version", s->pkgs[i].version)) < 0) {
			json_decref(pkgs);
			return NULL;
		}
	return json_pack("{s:s, s:o}", "name", s->name, "packages", pkgs);
}

static int handle_profiles(struct api_ops *ops, const char *name, struct api_reply *ret)
{
	const struct rb_config *cfg = ops->cfg;
	json_t *list;

	if (name) {
		const struct rb_profile *p = rb_config_profile(cfg, name);

		if (!p)
			return api_reply_errorf(ret, 404, "no profile \"%.65s\" in rackbootd.conf",
			                        name);
		return api_reply_doc(ret, 200, profile_json(p));
	}
	list = json_array();
	for (size_t i = 0; list && i < cfg->n_profiles; i++)
		if (json_array_append_new(list, profile_json(&cfg->profiles[i])) < 0) {
			json_decref(list);
			return -ENOMEM;
		}
	return api_reply_doc(
	        ret, 200,
	        json_pack("{s:o, s:s}", "profiles", list, "default_profile", cfg->default_profile));
}

/* The set from the config with the registry's "current", "previous" and
 * "pinned" resolutions (null when none). */
static int package_set_doc(struct api_ops *ops, const struct rb_package_set *s, json_t **ret)
{
	json_t *doc = package_set_json(s), *state = NULL;
	int r;

	if (!doc)
		return -ENOMEM;
	r = registry_pkgset_get(ops->reg, s->name, &state);
	if (r == 0 && json_object_update(doc, state) < 0)
		r = -ENOMEM;
	json_decref(state);
	if (r < 0) {
		json_decref(doc);
		return r;
	}
	*ret = doc;
	return 0;
}

static int handle_package_sets(struct api_ops *ops, const char *name, struct api_reply *ret)
{
	const struct rb_config *cfg = ops->cfg;
	json_t *list, *doc;
	int r;

	if (name) {
		const struct rb_package_set *s = rb_config_package_set(cfg, name);

		if (!s)
			return api_reply_errorf(ret, 404,
			                        "no package set \"%.65s\" in rackbootd.conf", name);
		r = package_set_doc(ops, s, &doc);
		if (r < 0)
			return reply_registry_error(ret, r);
		return api_reply_doc(ret, 200, doc);
	}
	list = json_array();
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_package_sets; i++) {
		r = package_set_doc(ops, &cfg->package_sets[i], &doc);
		if (r == 0 && json_array_append_new(list, doc) < 0)
			r = -ENOMEM;
		if (r < 0) {
			json_decref(list);
			return reply_registry_error(ret, r);
		}
	}
	return api_reply_doc(ret, 200, json_pack("{s:o}", "package_sets", list));
}

/* POST /api/v1/package-sets/<name>/actions/<rollback|unpin>. Package sets
 * have no node to hang a registry event on: the change is logged (info)
 * with the token's name, and the reply is the set's new state. */
static int handle_package_set_action(struct api_ops *ops, const char *name, const char *action,
                                     const char *who, struct api_reply *ret)
{
	const struct rb_package_set *s;
	bool rollback = !strcmp(action, "rollback");
	json_t *doc;
	int r;

	if (!rollback && strcmp(action, "unpin") != 0)
		return api_reply_error(ret, 404, "no such action (rollback or unpin)");
	s = rb_config_package_set(ops->cfg, name);
	if (!s)
		return api_reply_errorf(ret, 404, "no package set \"%.65s\" in rackbootd.conf",
		                        name);
	r = registry_pkgset_pin(ops->reg, s->name, rollback);
	if (r == -ENOENT)
		return api_reply_errorf(
		        ret, 409,
		        "package set \"%s\" has no previous resolution to roll back "
		        "to: the server has handed out only one set of versions "
		        "for it (or none yet)",
		        s->name);
	if (r == 0)
		r = package_set_doc(ops, s, &doc);
	if (r < 0)
		return reply_registry_error(ret, r);
	log_info("op.pkgset_%s: package set \"%s\" by token \"%s\"", action, s->name, who);
	return api_reply_doc(ret, 200, doc);
}

/* ---- routing -------------------------------------------------------------- */

/* path below prefix: "" for the collection, "<name>" for one entry, NULL
 * when the path is not under prefix. */
static const char *below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n) != 0)
		return NULL;
	if (path[n] == '\0')
		return "";
	if (path[n] != '/')
		return NULL;
	return path + n + 1;
}

bool api_ops_path(const char *path)
{
	const char *rest = below(path, OPS_NODES), *slash;

	if (rest) {
		slash = strchr(rest, '/');
		return !slash || strncmp(slash, "/actions/", 9) == 0;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(collections); i++)
		if (below(path, collections[i]))
			return true;
	return false;
}

static bool is_read(const char *m)
{
	return !strcmp(m, "GET") || !strcmp(m, "HEAD");
}

static int route_catalog(struct api_ops *ops, const struct api_request *rq, const char *who,
                         struct api_reply *ret)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(collections); i++) {
		const char *rest = below(rq->path, collections[i]);
		const char *name, *slash;

		if (!rest)
			continue;
		slash = strchr(rest, '/');
		if (slash && i == 2 && slash > rest && !strncmp(slash, "/actions/", 9) &&
		    !strchr(slash + 9, '/')) {
			char set[sizeof(((struct rb_package_set *)0)->name)];

			if (strcmp(rq->method, "POST") != 0)
				return reply_method(ret, "POST");
			if ((size_t)(slash - rest) >= sizeof(set))
				return api_reply_error(ret, 404, "no such package set");
			snprintf(set, sizeof(set), "%.*s", (int)(slash - rest), rest);
			return handle_package_set_action(ops, set, slash + 9, who, ret);
		}
		if (slash)
			return api_reply_error(ret, 404, "no such API endpoint");
		if (!is_read(rq->method))
			return reply_method(ret, "GET, HEAD");
		name = *rest ? rest : NULL;
		if (i == 0)
			return handle_images(ops, name, ret);
		if (i == 1)
			return handle_profiles(ops, name, ret);
		return handle_package_sets(ops, name, ret);
	}
	return api_reply_error(ret, 404, "no such API endpoint");
}

int api_ops_handle(struct api_ops *ops, const struct api_request *rq, struct api_reply *ret)
{
	char who[RB_OPTOKEN_NAME_MAX + 1], macstr[24];
	const char *rest, *slash, *msg;
	uint8_t mac[6];

	memset(ret, 0, sizeof(*ret));
	if (api_ops_authorize(ops, rq->authorization, who, &msg) < 0)
		return api_reply_error(ret, 401, msg);
	rest = below(rq->path, OPS_NODES);
	if (!rest)
		return route_catalog(ops, rq, who, ret);
	if (!*rest) {
		if (is_read(rq->method))
			return handle_list(ops, rq, ret);
		if (!strcmp(rq->method, "POST"))
			return handle_register(ops, rq, who, ret);
		return reply_method(ret, "GET, HEAD, POST");
	}
	slash = strchr(rest, '/');
	if ((slash ? (size_t)(slash - rest) : strlen(rest)) >= sizeof(macstr))
		return api_reply_error(ret, 400, "bad MAC address (expected aa:bb:cc:dd:ee:ff)");
	snprintf(macstr, sizeof(macstr), "%.*s", slash ? (int)(slash - rest) : (int)strlen(rest),
	         rest);
	if (rb_mac_parse(macstr, mac) < 0)
		return api_reply_error(ret, 400, "bad MAC address (expected aa:bb:cc:dd:ee:ff)");
	if (!slash) {
		if (is_read(rq->method))
			return node_reply(ops, mac, 200, ret);
		if (!strcmp(rq->method, "PATCH"))
			return handle_patch(ops, rq, mac, who, ret);
		return reply_method(ret, "GET, HEAD, PATCH");
	}
	/* slash is "/actions/<name>" (api_ops_path()) */
	if (strcmp(rq->method, "POST") != 0)
		return reply_method(ret, "POST");
	return handle_action(ops, rq, mac, slash + 9, who, ret);
}
