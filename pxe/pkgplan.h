/* What a node's profile means for agent stages 2 and 3: its package sets
 * resolved to exact versions from the repository catalogue, its
 * post-install settings, and the desired-state document the installed
 * agent polls. Pure (no I/O, no registry): pxe/api.c loads the catalogue
 * and the node and calls these. See pxe/pkgplan.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
struct img_catalog;
struct rb_config;
struct rb_profile;

#define PKGPLAN_GENERATION_LEN 32 /* hex characters of a desired-state generation */

/* The package sets a node gets: desired_json (the operator's JSON array of
 * set names, "" or NULL = none set) or else the profile's. *ret is a JSON
 * array of set names. -ENOENT with why naming the set if one is not
 * defined, -EINVAL if desired_json is not an array of strings. */
int pkgplan_sets(const struct rb_config *cfg, const struct rb_profile *p, const char *desired_json,
                 struct json_t **ret, char *why, size_t whylen);

/* Resolves the sets (a JSON array of defined set names) against cat: each
 * package pinned to its exact version (which the catalogue must hold, for
 * some architecture) or to the catalogue's newest (dpkg order). *ret is a
 * JSON array of {"name","version"} in set order, each name once.
 * pins (may be NULL) is {"<set>": {"package": "version"}}: a pinned set's
 * packages get the pinned version instead (which the catalogue must still
 * hold). -ENOENT with why naming set, package and version when the catalogue
 * lacks it; -EEXIST when two sets want different versions of one name. */
int pkgplan_resolve(const struct rb_config *cfg, const struct img_catalog *cat,
                    const struct json_t *sets, const struct json_t *pins, struct json_t **ret,
                    char *why, size_t whylen);

/* One set alone as the config and cat resolve it, pins aside: *ret is a
 * JSON object {"package": "version", ...} in the set's order (what the
 * registry records per set). -ENOENT when the set is not defined or the
 * catalogue lacks one of its packages (pkgplan_resolve() says which). */
int pkgplan_resolve_set(const struct rb_config *cfg, const struct img_catalog *cat, const char *set,
                        struct json_t **ret);

/* The plan's "post_install" object for a node: hostname (the registry's
 * own when set, else the profile's pattern expanded for mac and ip, else
 * ""), ssh_keys, kernel_args, root_partition, update_interval_s and
 * update_jitter_s (the installed agent's poll), network ("image" or
 * "dhcp"). -ENOENT with why when the
 * pattern needs {ip} and the node's address is not known. */
int pkgplan_post_install(const struct rb_profile *p, const uint8_t mac[6], const char *ip,
                         const char *node_hostname, struct json_t **ret, char *why, size_t whylen);

/* The desired-state document {"generation","hold","image":{name,version},
 * "packages","reimage"}. packages is borrowed (a JSON array). The
 * generation is the first 16 bytes, in hex, of the SHA-256 of the other
 * members serialised compactly with sorted keys: it changes exactly when
 * what the node should do changes. */
int pkgplan_desired(bool hold, const char *image, const char *version,
                    const struct json_t *packages, bool reimage, struct json_t **ret_doc,
                    char ret_generation[PKGPLAN_GENERATION_LEN + 1]);
