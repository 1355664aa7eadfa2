/* Profile rules: which `rule "NAME" { ... }` section of rackbootd.conf a
 * node matches, from its stored inventory document, its MAC and its
 * hostname. Pure: no I/O, no allocation, no logging. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pxe/config.h"

struct json_t;

/* Longest list of the inventory that is looked at: a document with more
 * disks, NICs or PCI devices than this matches no rule that asks about
 * that list (the agent never sends that many; a forged one does). */
#define RULES_LIST_MAX 4096

/* The first of rules[0..n) that the node matches, NULL if none. inv is the
 * inventory document (NULL if the node sent none: then only rules without
 * inventory conditions can match); mac is the node's address; hostname may
 * be NULL or "". A value of the wrong type or a missing one fails the
 * condition that needs it, never the program. */
const struct rb_rule *rules_match(const struct rb_rule *rules, size_t n, const struct json_t *inv,
                                  const uint8_t mac[6], const char *hostname);
/* Whether the one rule r holds; mac in "52:54:00:12:34:56" form. */
bool rules_rule_matches(const struct rb_rule *r, const struct json_t *inv, const char *mac,
                        const char *hostname);
/* Case-insensitive glob: '*' any run of characters, '?' one character,
 * everything else itself. O(strlen(pat) * strlen(s)) at worst. */
bool rules_glob_match(const char *pat, const char *s);
