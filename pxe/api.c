/* JSON API handlers under /api/v1/ for agents (the operator endpoints,
 * /api/v1/nodes[/<mac>[/actions/...]], images, profiles and package sets,
 * are pxe/api_ops.c's: api_handle() hands them over):
 *   GET  /api/v1/nodes/<mac>/plan        what the agent does on this boot;
 *                                        the profile is the registry's, else
 *                                        the first rule (pxe/rules.c) its
 *                                        stored inventory matches, else
 *                                        default_profile ("profile_source")
 *   POST /api/v1/nodes/<mac>/inventory   the agent's inventory document
 *   POST /api/v1/nodes/<mac>/status      the agent's state and progress, and
 *                                        from stages 2 and 3 what is installed
 *   GET  /api/v1/nodes/<mac>/desired     what the installed node's agent
 *                                        converges to (ETag, If-None-Match)
 * HEAD is answered like GET (http.c drops the body). A method a path does
 * not take is 405, a malformed MAC 400, an unknown node or path 404; every
 * error is a JSON object {"error": "...", "status": N} built with jansson.
 *
 * The agent endpoints need "Authorization: Bearer <token>": the plan the
 * token of the node's latest boot script (api_token_issue()), /desired the
 * long-lived node token a provisioning plan hands out for the installed
 * agent, inventory and status either. The registry holds only their
 * SHA-256, compared in constant time. Bodies are parsed
 * strictly (duplicate keys, wrong types, negative numbers, unknown states,
 * over-long strings: 400); keys the server does not know are ignored so
 * that a newer agent may add some.
 *
 * Progress reports that do not change the node's state stay in a bounded
 * in-memory table (no disk write per second per node); a state change is a
 * synchronous registry write with an "agent.<state>" event.
 *
 * Owns the progress table. Borrows the config, the registry and the
 * repository directory fd. Never touches a socket: the reply goes back to
 * http.c. Never logs above debug level. */
#include "pxe/api.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/catalog.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"
#include "pxe/api_ops.h"
#include "pxe/httpcond.h"
#include "pxe/config.h"
#include "pxe/events.h"
#include "pxe/pkgplan.h"
#include "pxe/registry.h"
#include "pxe/rules.h"

#define API_PREFIX      "/api/"
#define API_NODES       "/api/v1/nodes"
#define API_MAX_EVENTS  50
#define API_STEP_MAX    256
#define API_MESSAGE_MAX 1024
#define API_AUTH_MAX    256

struct progress {
	uint8_t mac[6];
	char state[16];
	char step[API_STEP_MAX + 1];
	char message[API_MESSAGE_MAX + 1];
	uint64_t bytes_done, bytes_total, rate;
	int64_t updated_ms;
	struct progress *hnext;         /* bucket chain */
	struct progress *older, *newer; /* recency list */
};

struct api {
	const struct rb_config *cfg;
	struct registry *reg;
	int repo_fd;
	pthread_mutex_t lock; /* the progress table */
	struct progress **buckets;
	size_t n_buckets; /* power of two */
	struct progress *newest, *oldest;
	size_t n, cap;
	struct api_ops *ops;      /* the operator endpoints */
	struct rb_events *events; /* live progress events, borrowed */
};

/* States an agent may report; "discovered" ends a discovery boot,
 * "installing" is stage 2, "ready" and "updating" come from the installed
 * node's agent, "reimage" from that agent going back to stage 1. */
static const char *const agent_states[] = { "wiping", "imaging",    "imaged",
	                                    "failed", "discovered", "installing",
	                                    "ready",  "updating",   "reimage" };
#define AGENT_STATES_TEXT                                                                          \
	"wiping, imaging, imaged, failed, discovered, installing, ready, updating, reimage"

/* Which tokens an agent endpoint takes. */
#define AUTH_BOOT 1u /* the latest boot script's */
#define AUTH_NODE 2u /* the installed agent's, handed out by a provisioning plan */
static const char *const provision_states[] = { "provisioning", "wiping", "imaging", "installing",
	                                        "reimage" };

bool api_path_matches(const char *path)
{
	return path && strncmp(path, API_PREFIX, strlen(API_PREFIX)) == 0;
}

bool api_state_provisions(const char *state)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(provision_states); i++)
		if (strcmp(state, provision_states[i]) == 0)
			return true;
	return false;
}

/* ---- lifecycle ------------------------------------------------------------ */

int api_new(const struct rb_config *cfg, struct registry *reg, int repo_fd, size_t progress_cap,
            struct api **ret)
{
	struct api *api = calloc(1, sizeof(*api));

	if (!api)
		return -ENOMEM;
	api->cfg = cfg;
	api->reg = reg;
	api->repo_fd = repo_fd;
	api->cap = RB_MAX(progress_cap, (size_t)1);
	api->n_buckets = 16;
	while (api->n_buckets < api->cap && api->n_buckets < (size_t)1 << 20)
		api->n_buckets <<= 1;
	api->buckets = calloc(api->n_buckets, sizeof(*api->buckets));
	if (!api->buckets) {
		free(api);
		return -ENOMEM;
	}
	pthread_mutex_init(&api->lock, NULL);
	{
		char err[400];
		int r = api_ops_new(api, cfg, reg, repo_fd, &api->ops, err, sizeof(err));

		if (r < 0) {
			if (r != -ENOMEM)
				log_error("operator tokens: %s (fix the line or remove the file)",
				          err);
			api_free(api);
			return r;
		}
	}
	*ret = api;
	return 0;
}

void api_free(struct api *api)
{
	if (!api)
		return;
	for (struct progress *p = api->oldest, *next; p; p = next) {
		next = p->newer;
		free(p);
	}
	api_ops_free(api->ops);
	free(api->buckets);
	pthread_mutex_destroy(&api->lock);
	free(api);
}

struct api_ops *api_ops_of(struct api *api)
{
	return api->ops;
}

void api_set_events(struct api *api, struct rb_events *events)
{
	api->events = events;
}

/* ---- live progress table -------------------------------------------------- */

static size_t mac_bucket(const struct api *api, const uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < 6; i++)
		h = (h ^ mac[i]) * 0x100000001b3ull;
	return (size_t)(h ^ (h >> 32)) & (api->n_buckets - 1);
}

static struct progress *progress_find(struct api *api, const uint8_t mac[6])
{
	for (struct progress *p = api->buckets[mac_bucket(api, mac)]; p; p = p->hnext)
		if (memcmp(p->mac, mac, 6) == 0)
			return p;
	return NULL;
}

static void list_unlink(struct api *api, struct progress *p)
{
	if (p->older)
		p->older->newer = p->newer;
	else
		api->oldest = p->newer;
	if (p->newer)
		p->newer->older = p->older;
	else
		api->newest = p->older;
	p->older = p->newer = NULL;
}

static void list_push_newest(struct api *api, struct progress *p)
{
	p->older = api->newest;
	p->newer = NULL;
	if (api->newest)
		api->newest->newer = p;
	else
		api->oldest = p;
	api->newest = p;
}

static void evict_oldest(struct api *api)
{
	struct progress *victim = api->oldest, **pp;

	if (!victim)
		return;
	for (pp = &api->buckets[mac_bucket(api, victim->mac)]; *pp; pp = &(*pp)->hnext)
		if (*pp == victim) {
			*pp = victim->hnext;
			break;
		}
	list_unlink(api, victim);
	api->n--;
	free(victim);
}

/* Stores rec (mac and fields) as the node's latest progress. */
static int progress_put(struct api *api, const struct progress *rec)
{
	struct progress *p;
	size_t b = mac_bucket(api, rec->mac);

	pthread_mutex_lock(&api->lock);
	p = progress_find(api, rec->mac);
	if (p) {
		struct progress *hnext = p->hnext;

		list_unlink(api, p);
		*p = *rec;
		p->hnext = hnext;
	} else {
		if (api->n >= api->cap)
			evict_oldest(api);
		p = malloc(sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&api->lock);
			return -ENOMEM;
		}
		*p = *rec;
		p->hnext = api->buckets[b];
		api->buckets[b] = p;
		api->n++;
	}
	list_push_newest(api, p);
	pthread_mutex_unlock(&api->lock);
	return 0;
}

/* The node's progress as JSON, or JSON null; NULL only without memory. */
static json_t *progress_json(struct api *api, const uint8_t mac[6])
{
	struct progress *p;
	json_t *doc;

	pthread_mutex_lock(&api->lock);
	p = progress_find(api, mac);
	if (!p)
		doc = json_null();
	else
		doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:I}", "state", p->state, "step",
		                p->step, "bytes_done", (json_int_t)p->bytes_done, "bytes_total",
		                (json_int_t)p->bytes_total, "rate", (json_int_t)p->rate, "message",
		                p->message, "updated_ms", (json_int_t)p->updated_ms);
	pthread_mutex_unlock(&api->lock);
	return doc;
}

json_t *api_progress_json(struct api *api, const uint8_t mac[6])
{
	return progress_json(api, mac);
}

/* ---- replies -------------------------------------------------------------- */

int api_reply_doc(struct api_reply *ret, unsigned status, json_t *doc)
{
	char *body;

	if (!doc)
		return -ENOMEM;
	body = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!body)
		return -ENOMEM;
	ret->status = status;
	ret->body = body;
	ret->len = strlen(body);
	return 0;
}

int api_reply_error(struct api_reply *ret, unsigned status, const char *msg)
{
	return api_reply_doc(ret, status,
	                     json_pack("{s:s, s:i}", "error", msg, "status", (json_int_t)status));
}

int api_reply_errorf(struct api_reply *ret, unsigned status, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return api_reply_error(ret, status, msg);
}

static int reply_registry_error(struct api_reply *ret, int r)
{
	if (r == -ENOMEM)
		return -ENOMEM;
	if (r == -ENOENT)
		return api_reply_error(ret, 404, "unknown node");
	return api_reply_error(ret, 500, "registry error");
}

static int reply_method(struct api_reply *ret, const char *allow)
{
	ret->allow = allow;
	return api_reply_error(ret, 405, "method not allowed");
}

/* ---- tokens --------------------------------------------------------------- */

static void token_hash(const char *token, size_t len, char ret_hex[RB_SHA256_HEX_LEN + 1])
{
	uint8_t h[RB_SHA256_LEN];

	rb_sha256(token, len, h);
	rb_hex(h, sizeof(h), ret_hex);
}

/* API_TOKEN_LEN lowercase hex from getrandom, and its hash. */
static int token_new(char token[API_TOKEN_LEN + 1], char hex[RB_SHA256_HEX_LEN + 1])
{
	uint8_t raw[API_TOKEN_LEN / 2];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	rb_hex(raw, sizeof(raw), token);
	explicit_bzero(raw, sizeof(raw));
	token_hash(token, API_TOKEN_LEN, hex);
	return 0;
}

int api_token_issue(struct registry *reg, const uint8_t mac[6], char ret_token[API_TOKEN_LEN + 1])
{
	char token[API_TOKEN_LEN + 1], hex[RB_SHA256_HEX_LEN + 1];
	int r;

	r = token_new(token, hex);
	if (r < 0)
		return r;
	r = registry_token_set(reg, mac, hex);
	if (r < 0) {
		explicit_bzero(token, sizeof(token));
		return r;
	}
	memcpy(ret_token, token, sizeof(token));
	explicit_bzero(token, sizeof(token));
	return 0;
}

/* "Bearer <token>" matching a stored hash (64 hex; "" matches nothing). */
static bool token_ok(const char *stored, const char *auth)
{
	char hex[RB_SHA256_HEX_LEN + 1];
	const char *t;
	size_t len;

	if (!auth || strlen(stored) != RB_SHA256_HEX_LEN)
		return false;
	len = strnlen(auth, API_AUTH_MAX + 1);
	if (len > API_AUTH_MAX || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	t = auth + 7;
	while (*t == ' ')
		t++;
	len = strlen(t);
	while (len > 0 && t[len - 1] == ' ')
		len--;
	if (len == 0)
		return false;
	token_hash(t, len, hex);
	return CRYPTO_memcmp(hex, stored, RB_SHA256_HEX_LEN) == 0;
}

/* The installed agent's token (AUTH_NODE). */
static bool node_token_ok(struct api *api, const uint8_t mac[6], const char *auth)
{
	struct registry_installed inst;
	bool ok;

	if (registry_installed_get(api->reg, mac, &inst) < 0)
		return false;
	ok = token_ok(inst.node_token_sha256, auth);
	registry_installed_fini(&inst);
	return ok;
}

/* Looks the node up and checks its token (one of the kinds in auth): 0
 * with *ret_node, or a reply. */
static int agent_node(struct api *api, const char *macstr, const struct api_request *rq,
                      unsigned auth, uint8_t mac[6], struct registry_node *ret_node,
                      struct api_reply *ret, bool *replied)
{
	int r;

	*replied = true;
	if (rb_mac_parse(macstr, mac) < 0)
		return api_reply_error(ret, 400, "bad MAC address (expected aa:bb:cc:dd:ee:ff)");
	r = registry_node_get(api->reg, mac, ret_node);
	if (r < 0) {
		if (r != -ENOENT)
			log_debug("api: registry_node_get: %s", strerror(-r));
		return reply_registry_error(ret, r);
	}
	if (!((auth & AUTH_BOOT) && token_ok(ret_node->token_sha256, rq->authorization)) &&
	    !((auth & AUTH_NODE) && node_token_ok(api, mac, rq->authorization)))
		return api_reply_error(
		        ret, 403,
		        auth == AUTH_NODE ? "missing or wrong node token (send \"Authorization: "
		                            "Bearer <token>\" of /etc/rackboot/agent.conf, which "
		                            "the node's last provisioning wrote)"
		                          : "missing or wrong boot token (send \"Authorization: "
		                            "Bearer <rackboot.token>\" of the node's latest boot)");
	/* A retired node is out of service: its agent gets nothing. */
	if (strcmp(ret_node->state, "retired") == 0)
		return api_reply_error(
		        ret, 403, "node is retired (an operator provisions it to bring it back)");
	*replied = false;
	return 0;
}

/* ---- plan ----------------------------------------------------------------- */

/* Reads and parses the repository's catalog.json. 0, or -errno with why. */
static int load_catalog(struct api *api, struct img_catalog **ret, char *why, size_t whylen)
{
	char err[256];
	struct stat st;
	char *buf;
	int fd, r;

	if (api->repo_fd < 0)
		return rb_errf(why, whylen, "no repository (http.repo_root cannot be opened)");
	fd = rb_open_beneath(api->repo_fd, "catalog.json", O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rb_errf(why, whylen,
		        "no catalogue: catalog.json in the repository: %s "
		        "(publish an image with rackboot-image)",
		        strerror(-fd));
		return fd;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return rb_errf(why, whylen, "catalog.json in the repository is not a file");
	}
	if ((unsigned long long)st.st_size > IMG_CATALOG_MAX_SIZE) {
		close(fd);
		rb_errf(why, whylen, "catalog.json is %lld bytes, more than the %llu byte limit",
		        (long long)st.st_size, (unsigned long long)IMG_CATALOG_MAX_SIZE);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	r = st.st_size ? rb_pread_all(fd, buf, (size_t)st.st_size, 0) : 0;
	close(fd);
	if (r < 0) {
		free(buf);
		rb_errf(why, whylen, "cannot read catalog.json: %s", strerror(-r));
		return r;
	}
	r = img_catalog_parse(buf, (size_t)st.st_size, ret, err, sizeof(err));
	free(buf);
	if (r < 0)
		rb_errf(why, whylen, "catalog.json is not valid: %s", err);
	return r;
}

static const char *plain_type(const char *kind)
{
	return strncmp(kind, "tar", 3) == 0 ? "rootfs" : "plain";
}

/* The catalogue entry for the profile: its version ("latest" resolved to
 * the greatest by strverscmp; an image entry wins a tie with a plain one)
 * and type. 0, or -ENOENT with why. */
static int resolve_image(const struct img_catalog *cat, const char *name, const char *version,
                         char ret_version[65], const char **ret_type, char *why, size_t whylen)
{
	const struct img_cat_image *img = NULL;
	const struct img_cat_plain *pl = NULL;
	const char *best = NULL;

	if (strcmp(version, "latest") == 0) {
		for (size_t i = 0; i < cat->n_images; i++)
			if (!strcmp(cat->images[i].name, name) &&
			    (!best || strverscmp(cat->images[i].version, best) > 0)) {
				img = &cat->images[i];
				best = img->version;
			}
		for (size_t i = 0; i < cat->n_plain; i++)
			if (!strcmp(cat->plain[i].name, name) &&
			    (!best || strverscmp(cat->plain[i].version, best) > 0)) {
				pl = &cat->plain[i];
				img = NULL;
				best = pl->version;
			}
		if (!best) {
			rb_errf(why, whylen, "no image \"%s\" in the repository catalogue", name);
			return -ENOENT;
		}
	} else {
		img = img_catalog_find_image(cat, name, version);
		if (!img)
			pl = img_catalog_find_plain(cat, name, version);
		if (!img && !pl) {
			rb_errf(why, whylen,
			        "no version \"%s\" of image \"%s\" in the repository "
			        "catalogue",
			        version, name);
			return -ENOENT;
		}
	}
	if (img) {
		snprintf(ret_version, 65, "%s", img->version);
		*ret_type = "rackboot";
	} else {
		snprintf(ret_version, 65, "%s", pl->version);
		*ret_type = plain_type(pl->kind);
	}
	return 0;
}

/* Which profile the node gets and why: the registry's (explicit, wins),
 * else the first rule its stored inventory matches, else default_profile.
 * ret_source is "node", "rule:<name>" or "default". 0 or -ENOMEM/-EIO. */
static int pick_profile(struct api *api, const struct registry_node *node, const char **ret_name,
                        char ret_source[80])
{
	const struct rb_config *cfg = api->cfg;
	const struct rb_rule *rule;
	json_t *inv = NULL;
	int r;

	if (*node->profile) {
		*ret_name = node->profile;
		snprintf(ret_source, 80, "node");
		return 0;
	}
	if (cfg->n_rules) {
		r = registry_inventory_get(api->reg, node->mac, &inv);
		if (r < 0 && r != -ENOENT)
			return r;
		/* Without an inventory only MAC and hostname rules can match. */
		rule = rules_match(cfg->rules, cfg->n_rules, inv, node->mac, node->hostname);
		json_decref(inv);
		if (rule) {
			*ret_name = rule->profile;
			snprintf(ret_source, 80, "rule:%s", rule->name);
			return 0;
		}
	}
	*ret_name = cfg->default_profile;
	snprintf(ret_source, 80, "default");
	return 0;
}

/* What the node is to run: the operator's desired image and version
 * (h2's operator fields) or the profile's, and the package sets. */
struct node_want {
	struct registry_operator op;
	const struct rb_profile *p;
	const char *image, *version; /* before "latest" is resolved */
	char source[80];
};

/* The node's profile and operator fields: 0, a reply (*replied), or
 * -ENOMEM. */
static int node_want(struct api *api, const struct registry_node *node, struct node_want *w,
                     struct api_reply *ret, bool *replied)
{
	const char *pname = NULL;
	int r;

	*replied = true;
	r = registry_operator_get(api->reg, node->mac, NULL, &w->op);
	if (r == 0)
		r = pick_profile(api, node, &pname, w->source);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		log_debug("api: plan: node: %s", strerror(-r));
		return reply_registry_error(ret, r);
	}
	if (!pname || !*pname)
		return api_reply_error(ret, 409,
		                       "node has no profile: none is set in the registry, no rule "
		                       "in rackbootd.conf matches it and there is no "
		                       "default_profile");
	w->p = rb_config_profile(api->cfg, pname);
	if (!w->p)
		return api_reply_errorf(ret, 409,
		                        "node has no profile: profile \"%s\" is not defined in "
		                        "rackbootd.conf",
		                        pname);
	w->image = *w->op.desired_image ? w->op.desired_image : w->p->image;
	w->version = *w->op.desired_image || *w->op.desired_version
	                     ? (*w->op.desired_version ? w->op.desired_version : "latest")
	                     : w->p->version;
	*replied = false;
	return 0;
}

/* Records, per set, the resolution handed out now (registry_pkgset_observe:
 * a new one pushes the old to "previous", so that an operator can roll
 * back to it) and collects the operator's pins into *ret_pins
 * ({"<set>": {"package": "version"}}). A set the catalogue cannot resolve
 * is left for pkgplan_resolve() to explain. 0, -ENOMEM or -EIO. */
static int package_pins(struct api *api, const struct img_catalog *cat, const json_t *sets,
                        json_t **ret_pins)
{
	json_t *pins = json_object(), *v, *map = NULL;
	char *text = NULL, *pinned = NULL;
	size_t i;
	int r = -ENOMEM;

	if (!pins)
		return -ENOMEM;
	json_array_foreach(sets, i, v)
	{
		r = pkgplan_resolve_set(api->cfg, cat, json_string_value(v), &map);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			goto out;
		r = -ENOMEM;
		text = json_dumps(map, JSON_COMPACT);
		if (!text)
			goto out;
		r = registry_pkgset_observe(api->reg, json_string_value(v), text, &pinned);
		if (r < 0)
			goto out;
		if (pinned) {
			json_t *pin = json_loads(pinned, JSON_REJECT_DUPLICATES, NULL);

			if (json_is_object(pin))
				r = json_object_set_new(pins, json_string_value(v), pin) < 0
				            ? -ENOMEM
				            : 0;
			else
				json_decref(pin);
			if (r < 0)
				goto out;
		}
		json_decref(map);
		free(text);
		free(pinned);
		map = NULL;
		text = pinned = NULL;
	}
	r = 0;
out:
	json_decref(map);
	free(text);
	free(pinned);
	if (r < 0) {
		json_decref(pins);
		return r;
	}
	*ret_pins = pins;
	return 0;
}

/* The node's package sets resolved against cat (and the operator's pins):
 * 0 with *ret_sets and *ret_pkgs, a 409 or 503 reply (*replied), or
 * -ENOMEM. */
static int node_packages(struct api *api, const struct node_want *w, const struct img_catalog *cat,
                         json_t **ret_sets, json_t **ret_pkgs, struct api_reply *ret, bool *replied)
{
	json_t *pins = NULL;
	char why[400];
	int r;

	*replied = true;
	*ret_sets = *ret_pkgs = NULL;
	r = pkgplan_sets(api->cfg, w->p, w->op.desired_package_sets, ret_sets, why, sizeof(why));
	if (r == 0) {
		r = package_pins(api, cat, *ret_sets, &pins);
		if (r == -EIO) {
			json_decref(*ret_sets);
			*ret_sets = NULL;
			return api_reply_error(ret, 503,
			                       "cannot record the package sets' versions");
		}
	}
	if (r == 0)
		r = pkgplan_resolve(api->cfg, cat, *ret_sets, pins, ret_pkgs, why, sizeof(why));
	json_decref(pins);
	if (r == -ENOMEM) {
		json_decref(*ret_sets);
		*ret_sets = NULL;
		return r;
	}
	if (r < 0) {
		json_decref(*ret_sets);
		*ret_sets = NULL;
		return api_reply_errorf(ret, 409, "profile \"%s\": %s", w->p->name, why);
	}
	*replied = false;
	return 0;
}

static int plan_provision(struct api *api, const struct api_request *rq,
                          const struct registry_node *node, const char *macstr,
                          struct api_reply *ret)
{
	const struct rb_config *cfg = api->cfg;
	struct node_want *w = calloc(1, sizeof(*w));
	struct img_catalog *cat = NULL;
	json_t *sets = NULL, *pkgs = NULL, *post = NULL, *hosts = NULL, *doc;
	char why[400], version[65], repo[1100];
	char token[API_TOKEN_LEN + 1] = "", hash[RB_SHA256_HEX_LEN + 1];
	const char *type = NULL;
	bool replied;
	int r;

	if (!w)
		return -ENOMEM;
	r = node_want(api, node, w, ret, &replied);
	if (replied)
		goto out;
	if (w->op.held) {
		r = api_reply_error(
		        ret, 409,
		        "node is held: an operator stopped its provisioning and updates "
		        "(release it to go on)");
		goto out;
	}
	r = load_catalog(api, &cat, why, sizeof(why));
	if (r == 0)
		r = resolve_image(cat, w->image, w->version, version, &type, why, sizeof(why));
	if (r == -ENOMEM)
		goto out;
	if (r < 0) {
		r = api_reply_errorf(ret, 409, "profile \"%s\": %s", w->p->name, why);
		goto out;
	}
	r = node_packages(api, w, cat, &sets, &pkgs, ret, &replied);
	if (replied)
		goto out;
	r = pkgplan_post_install(w->p, node->mac, node->ip, node->hostname, &post, why,
	                         sizeof(why));
	if (r == -ENOMEM)
		goto out;
	if (r < 0) {
		r = api_reply_errorf(ret, 409, "profile \"%s\": %s", w->p->name, why);
		goto out;
	}
	/* A fresh node token for the installed agent: only its hash is kept,
	 * and only a GET hands one out (HEAD shows the shape). */
	if (strcmp(rq->method, "GET") == 0) {
		r = token_new(token, hash);
		if (r == 0)
			r = registry_node_token_set(api->reg, node->mac, hash);
		if (r < 0) {
			log_debug("api: plan: node token: %s", strerror(-r));
			r = r == -ENOMEM ? r
			                 : api_reply_error(ret, 503, "cannot store the node token");
			goto out;
		}
	} else {
		memset(token, '0', API_TOKEN_LEN);
	}
	if (*cfg->repo_url)
		snprintf(repo, sizeof(repo), "%s", cfg->repo_url);
	else
		snprintf(repo, sizeof(repo), "%s/repo", rq->base ? rq->base : "");
	/* The other hosts the agent may follow the repository's redirects to
	 * (agent/hosts.c): validated at load (http.repo_hosts). */
	hosts = json_array();
	for (size_t i = 0; hosts && i < cfg->n_repo_hosts; i++)
		if (json_array_append_new(hosts, json_string(cfg->repo_hosts[i])) < 0) {
			r = -ENOMEM;
			goto out;
		}
	if (!hosts) {
		r = -ENOMEM;
		goto out;
	}
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:O, s:s, s:s, s:s}, s:s, s:s, "
	                "s:b, s:s, s:O, s:O, s:O, s:s}",
	                "mac", macstr, "mode", "provision", "state", node->state, "action", "image",
	                "profile", w->p->name, "profile_source", w->source, "image", "repo", repo,
	                "repo_hosts", hosts, "name", w->image, "version", version, "type", type,
	                "disk", w->p->disk, "wipe",
	                *w->op.reimage_wipe ? w->op.reimage_wipe : rb_wipe_name(w->p->wipe),
	                "grow_last_partition", (int)w->p->grow_last_partition, "after",
	                rb_after_name(w->p->after), "package_sets", sets, "packages", pkgs,
	                "post_install", post, "node_token", token);
	if (doc)
		log_info("plan %s: image %s %s, profile %s (%s), wipe %s, %zu package(s)", macstr,
		         w->image, version, w->p->name, w->source,
		         *w->op.reimage_wipe ? w->op.reimage_wipe : rb_wipe_name(w->p->wipe),
		         json_array_size(pkgs));
	r = api_reply_doc(ret, 200, doc);
out:
	explicit_bzero(token, sizeof(token));
	json_decref(hosts);
	json_decref(sets);
	json_decref(pkgs);
	json_decref(post);
	img_catalog_free(cat);
	free(w);
	return r;
}

static int handle_plan(struct api *api, const struct api_request *rq, const char *macstr,
                       struct api_reply *ret)
{
	struct registry_node node;
	uint8_t mac[6];
	char m[18];
	bool replied;
	int r;

	r = agent_node(api, macstr, rq, AUTH_BOOT, mac, &node, ret, &replied);
	if (replied)
		return r;
	rb_mac_format(mac, m);
	if (api_state_provisions(node.state))
		return plan_provision(api, rq, &node, m, ret);
	/* Everything else only reports what the node has and powers it off:
	 * a discovery boot never writes a disk. */
	return api_reply_doc(ret, 200,
	                     json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s}", "mac", m,
	                               "mode", "discovery", "state", node.state, "action",
	                               "inventory", "profile", node.profile, "disk", "", "wipe",
	                               "none", "grow_last_partition", 0, "after", "poweroff"));
}

/* ---- agent reports -------------------------------------------------------- */

/* Loads a request body that must be one JSON object. */
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

static int handle_inventory(struct api *api, const struct api_request *rq, const char *macstr,
                            struct api_reply *ret)
{
	struct registry_node node;
	json_t *doc = NULL;
	char *text;
	uint8_t mac[6];
	bool replied;
	int r;

	r = agent_node(api, macstr, rq, AUTH_BOOT | AUTH_NODE, mac, &node, ret, &replied);
	if (replied)
		return r;
	r = load_body(rq, &doc, ret, &replied);
	if (replied)
		return r;
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text)
		return -ENOMEM;
	r = registry_inventory_set(api->reg, mac, text, strlen(text));
	free(text);
	if (r == 0 && strcmp(node.state, "new") == 0) {
		r = registry_node_transition(api->reg, mac, "discovered", "agent.discovered",
		                             "inventory received");
		if (r == 0)
			snprintf(node.state, sizeof(node.state), "discovered");
	}
	if (r < 0) {
		log_debug("api: inventory: %s", strerror(-r));
		return reply_registry_error(ret, r);
	}
	return api_reply_doc(ret, 200, json_pack("{s:b, s:s}", "ok", 1, "state", node.state));
}

/* Optional string member of at most max bytes: 0 (copied, "" if absent or
 * null) or a 400 reply. */
static int get_string(json_t *doc, const char *key, char *dst, size_t max, struct api_reply *ret,
                      bool *bad)
{
	json_t *v = json_object_get(doc, key);

	*dst = '\0';
	if (!v || json_is_null(v))
		return 0;
	*bad = true;
	if (!json_is_string(v))
		return api_reply_errorf(ret, 400, "\"%s\" must be a string", key);
	if (json_string_length(v) > max)
		return api_reply_errorf(ret, 400, "\"%s\" is longer than %zu bytes", key, max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return api_reply_errorf(ret, 400, "\"%s\" must not contain NUL", key);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	*bad = false;
	return 0;
}

/* Optional non-negative integer member: 0 (0 if absent or null) or a 400. */
static int get_count(json_t *doc, const char *key, uint64_t *dst, struct api_reply *ret, bool *bad)
{
	json_t *v = json_object_get(doc, key);

	*dst = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		*bad = true;
		return api_reply_errorf(ret, 400, "\"%s\" must be a non-negative integer", key);
	}
	*dst = (uint64_t)json_integer_value(v);
	return 0;
}

/* Fills rec from a status body, or answers 400 (*bad). */
static int parse_status(json_t *doc, struct progress *rec, struct api_reply *ret, bool *bad)
{
	json_t *st = json_object_get(doc, "state");
	const char *s;
	bool known = false;
	int r;

	*bad = true;
	if (!json_is_string(st))
		return api_reply_error(ret, 400,
		                       "\"state\" is required: one of " AGENT_STATES_TEXT);
	s = json_string_value(st);
	for (size_t i = 0; i < RB_ARRAY_SIZE(agent_states); i++)
		known = known || strcmp(s, agent_states[i]) == 0;
	if (!known || strlen(s) != json_string_length(st))
		return api_reply_error(ret, 400, "\"state\" must be one of " AGENT_STATES_TEXT);
	snprintf(rec->state, sizeof(rec->state), "%s", s);
	*bad = false;
	r = get_string(doc, "step", rec->step, API_STEP_MAX, ret, bad);
	if (!*bad)
		r = get_string(doc, "message", rec->message, API_MESSAGE_MAX, ret, bad);
	if (!*bad)
		r = get_count(doc, "bytes_done", &rec->bytes_done, ret, bad);
	if (!*bad)
		r = get_count(doc, "bytes_total", &rec->bytes_total, ret, bad);
	if (!*bad)
		r = get_count(doc, "rate", &rec->rate, ret, bad);
	if (*bad)
		return r;
	if (!strcmp(rec->state, "failed") && !*rec->message) {
		*bad = true;
		return api_reply_error(ret, 400, "state \"failed\" needs a \"message\" saying why");
	}
	return 0;
}

/* A package (or image) {"name", "version"} an agent reports. */
static bool name_version_ok(json_t *v, bool image)
{
	const char *n = json_string_value(json_object_get(v, "name"));
	const char *ver = json_string_value(json_object_get(v, "version"));

	return json_is_object(v) && n && ver && img_name_is_valid(n) &&
	       (image ? img_name_is_valid(ver) : img_pkg_version_is_valid(ver));
}

/* The optional "installed" and "reboot_required" of a status body: 0 with
 * *ret_text (compact JSON of what the server keeps, NULL when absent) and
 * *ret_reboot (-1 when absent), or a 400 reply (*bad). */
static int parse_installed(json_t *doc, char **ret_text, int *ret_reboot, struct api_reply *ret,
                           bool *bad)
{
	json_t *inst = json_object_get(doc, "installed"),
	       *rb = json_object_get(doc, "reboot_required");
	json_t *img, *pkgs, *keep, *clean, *v;
	size_t i;

	*ret_text = NULL;
	*ret_reboot = -1;
	*bad = true;
	if (rb && !json_is_null(rb)) {
		if (!json_is_boolean(rb))
			return api_reply_error(ret, 400,
			                       "\"reboot_required\" must be true or false");
		*ret_reboot = json_is_true(rb);
	}
	if (!inst || json_is_null(inst)) {
		*bad = false;
		return 0;
	}
	img = json_object_get(inst, "image");
	pkgs = json_object_get(inst, "packages");
	if (!json_is_object(inst) || (img && !json_is_null(img) && !name_version_ok(img, true)) ||
	    (pkgs && !json_is_array(pkgs)) || json_array_size(pkgs) > 10000)
		return api_reply_error(
		        ret, 400,
		        "\"installed\" must be {\"image\": {\"name\", \"version\"}, "
		        "\"packages\": [{\"name\", \"version\"}, ...]} (at most 10000)");
	json_array_foreach(pkgs, i, v)
	{
		if (!name_version_ok(v, false))
			return api_reply_errorf(ret, 400,
			                        "\"installed\": packages[%zu] must be {\"name\", "
			                        "\"version\"} of a catalogue package",
			                        i);
	}
	/* only what the server keeps: the image and each package's name and version */
	keep = json_object();
	clean = json_array();
	if (keep && clean &&
	    (!img || json_is_null(img) || json_object_set(keep, "image", img) == 0)) {
		json_array_foreach(pkgs, i, v) json_array_append_new(
		        clean, json_pack("{s:O, s:O}", "name", json_object_get(v, "name"),
		                         "version", json_object_get(v, "version")));
		if (json_array_size(clean) == json_array_size(pkgs) &&
		    json_object_set(keep, "packages", clean) == 0)
			*ret_text = json_dumps(keep, JSON_COMPACT);
	}
	json_decref(clean);
	json_decref(keep);
	if (!*ret_text)
		return -ENOMEM;
	if (strlen(*ret_text) > REGISTRY_INSTALLED_MAX) {
		free(*ret_text);
		*ret_text = NULL;
		return api_reply_error(ret, 413, "\"installed\" is too large");
	}
	*bad = false;
	return 0;
}

/* registry_decide_fn: clears a pending reimage's wipe level once the node
 * reported imaged; -EALREADY (nothing written) when none was pending. */
static int reimage_done(struct registry_node *node, struct registry_operator *op, char event[24],
                        char detail[512], void *ud)
{
	(void)node;
	(void)ud;
	if (!op->reimage_wipe[0])
		return -EALREADY;
	snprintf(event, 24, "reimage.done");
	snprintf(detail, 512, "the reimage asked for (wipe %s) is done", op->reimage_wipe);
	op->reimage_wipe[0] = '\0';
	return 0;
}

static int handle_status(struct api *api, const struct api_request *rq, const char *macstr,
                         struct api_reply *ret)
{
	struct registry_node node;
	struct progress *rec;
	json_t *doc = NULL;
	char event[24], *installed = NULL;
	uint8_t mac[6];
	bool replied, bad = false;
	int r, reboot = -1;

	r = agent_node(api, macstr, rq, AUTH_BOOT | AUTH_NODE, mac, &node, ret, &replied);
	if (replied)
		return r;
	r = load_body(rq, &doc, ret, &replied);
	if (replied)
		return r;
	/* Large (the strings): on the heap, not on a worker thread's stack. */
	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		json_decref(doc);
		return -ENOMEM;
	}
	r = parse_status(doc, rec, ret, &bad);
	if (!bad)
		r = parse_installed(doc, &installed, &reboot, ret, &bad);
	json_decref(doc);
	if (bad || r < 0)
		goto out;
	memcpy(rec->mac, mac, 6);
	rec->updated_ms = (int64_t)(rb_wall_usec() / 1000);
	r = progress_put(api, rec);
	if (r < 0)
		goto out;
	events_publish_progress(api->events, mac, rec->state, rec->step, rec->message,
	                        rec->bytes_done, rec->bytes_total, rec->rate, rec->updated_ms);
	if (strcmp(rec->state, node.state) != 0) {
		snprintf(event, sizeof(event), "agent.%s", rec->state);
		r = registry_node_transition(api->reg, mac, rec->state, event,
		                             *rec->message ? rec->message : rec->step);
		if (r < 0) {
			log_debug("api: status: %s", strerror(-r));
			r = reply_registry_error(ret, r);
			goto out;
		}
	}
	if (!strcmp(rec->state, "imaged") && strcmp(node.state, "imaged") != 0) {
		/* the operator's reimage is done: its wipe level must not apply
		 * to a later plan (nor show as pending) */
		r = registry_operator_change(api->reg, mac, reimage_done, NULL);
		if (r < 0 && r != -EALREADY) {
			log_debug("api: status: reimage done: %s", strerror(-r));
			r = reply_registry_error(ret, r);
			goto out;
		}
	}
	if (installed || reboot >= 0) {
		r = registry_installed_set(api->reg, mac, installed, reboot);
		if (r < 0) {
			log_debug("api: status: installed: %s", strerror(-r));
			r = reply_registry_error(ret, r);
			goto out;
		}
	}
	r = api_reply_doc(ret, 200, json_pack("{s:b, s:s}", "ok", 1, "state", rec->state));
out:
	free(installed);
	free(rec);
	return r;
}

/* ---- desired state (the installed node's agent) --------------------------- */

static int handle_desired(struct api *api, const struct api_request *rq, const char *macstr,
                          struct api_reply *ret)
{
	struct registry_node node;
	struct registry_installed inst = { 0 };
	struct node_want *w = NULL;
	struct img_catalog *cat = NULL;
	json_t *sets = NULL, *pkgs = NULL, *doc = NULL;
	const char *type, *iname = NULL, *iver = NULL;
	char why[400], version[65], gen[PKGPLAN_GENERATION_LEN + 1];
	uint8_t mac[6];
	bool replied, reimage;
	int r;

	r = agent_node(api, macstr, rq, AUTH_NODE, mac, &node, ret, &replied);
	if (replied)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	r = node_want(api, &node, w, ret, &replied);
	if (replied)
		goto out;
	r = load_catalog(api, &cat, why, sizeof(why));
	if (r == 0)
		r = resolve_image(cat, w->image, w->version, version, &type, why, sizeof(why));
	if (r == -ENOMEM)
		goto out;
	if (r < 0) {
		r = api_reply_errorf(ret, 409, "profile \"%s\": %s", w->p->name, why);
		goto out;
	}
	r = node_packages(api, w, cat, &sets, &pkgs, ret, &replied);
	if (replied)
		goto out;
	r = registry_installed_get(api->reg, mac, &inst);
	if (r < 0) {
		r = r == -ENOMEM ? r : reply_registry_error(ret, r);
		goto out;
	}
	iname = json_string_value(
	        json_object_get(json_object_get(inst.installed, "image"), "name"));
	iver = json_string_value(
	        json_object_get(json_object_get(inst.installed, "image"), "version"));
	/* An operator's reimage (the node is back in a provisioning state) or
	 * a desired image other than the one the agent says it runs. */
	reimage = api_state_provisions(node.state) ||
	          (iname && iver && (strcmp(iname, w->image) || strcmp(iver, version)));
	r = pkgplan_desired(w->op.held != 0, w->image, version, pkgs, reimage, &doc, gen);
	if (r < 0)
		goto out;
	snprintf(ret->etag, sizeof(ret->etag), "\"%s\"", gen);
	if (http_etag_matches(rq->if_none_match, ret->etag)) {
		json_decref(doc);
		ret->status = 304;
		ret->body = strdup("");
		ret->len = 0;
		r = ret->body ? 0 : -ENOMEM;
		goto out;
	}
	r = api_reply_doc(ret, 200, doc);
out:
	registry_installed_fini(&inst);
	json_decref(sets);
	json_decref(pkgs);
	img_catalog_free(cat);
	free(w);
	return r;
}

/* ---- routing -------------------------------------------------------------- */

int api_handle(struct api *api, const struct api_request *rq, struct api_reply *ret)
{
	bool read_only = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
	bool post = strcmp(rq->method, "POST") == 0;
	size_t n = strlen(API_NODES);
	const char *path = rq->path, *rest, *slash;
	char macstr[24];

	memset(ret, 0, sizeof(*ret));
	if (api_ops_path(path))
		return api_ops_handle(api->ops, rq, ret);
	if (strncmp(path, API_NODES, n) != 0 || (path[n] != '\0' && path[n] != '/'))
		return api_reply_error(ret, 404, "no such API endpoint");
	rest = path[n] == '/' ? path + n + 1 : "";
	/* The path is matched first so that an unknown endpoint is 404
	 * whatever the method. */
	slash = strchr(rest, '/');
	if (!slash) /* the node itself: api_ops.c */
		return api_reply_error(ret, 404, "no such API endpoint");
	if ((size_t)(slash - rest) >= sizeof(macstr))
		return api_reply_error(ret, 400, "bad MAC address (expected aa:bb:cc:dd:ee:ff)");
	memcpy(macstr, rest, (size_t)(slash - rest));
	macstr[slash - rest] = '\0';
	if (strcmp(slash, "/plan") == 0) {
		if (!read_only)
			return reply_method(ret, "GET, HEAD");
		return handle_plan(api, rq, macstr, ret);
	}
	if (strcmp(slash, "/inventory") == 0) {
		if (!post)
			return reply_method(ret, "POST");
		return handle_inventory(api, rq, macstr, ret);
	}
	if (strcmp(slash, "/status") == 0) {
		if (!post)
			return reply_method(ret, "POST");
		return handle_status(api, rq, macstr, ret);
	}
	if (strcmp(slash, "/desired") == 0) {
		if (!read_only)
			return reply_method(ret, "GET, HEAD");
		return handle_desired(api, rq, macstr, ret);
	}
	return api_reply_error(ret, 404, "no such API endpoint");
}

int api_catalog_load(struct api *api, struct img_catalog **ret, char *why, size_t whylen)
{
	return load_catalog(api, ret, why, whylen);
}
