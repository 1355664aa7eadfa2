/* Operator actions on the node lifecycle. The table below is the whole
 * policy; ../shared/DESIGN.md: new -> discovered -> provisioning (wiping,
 * imaging, installing) -> ready -> (updating) -> ready, reimage from any
 * state back to provisioning, failed; plus "retired" (no boots, no agent
 * calls) and the "held" flag (no provisioning, no updates).
 *
 * Choices the design left open, and why:
 * - provision starts a node that has no installation (new, discovered,
 *   failed) or brings a retired one back; on an installed node it is
 *   refused and names reimage, so an install is never overwritten by the
 *   "gentle" verb.
 * - reimage is allowed from every state but retired (also while the agent
 *   works: a stuck node can always be restarted); a retired node must be
 *   provisioned back on purpose first.
 * - a held node refuses provision and reimage (release it first); hold
 *   and release are refused when they would change nothing, so a script
 *   learns that its view was stale.
 * - retire clears the hold: a retired node that stayed held could never
 *   be provisioned back.
 * Owns nothing, does no I/O. */
#include "pxe/lifecycle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *const action_names[] = {
	[LC_PROVISION] = "provision", [LC_REIMAGE] = "reimage", [LC_HOLD] = "hold",
	[LC_RELEASE] = "release",     [LC_RETIRE] = "retire",
};

static const char *const busy_states[] = { "provisioning", "wiping",  "imaging",
	                                   "installing",   "reimage", "updating" };
static const char *const installed_states[] = { "ready", "imaged", "localboot", "updating" };
static const char *const fresh_states[] = { "new", "discovered", "failed", "retired" };

static bool in(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

bool lifecycle_state_busy(const char *state)
{
	return in(state, busy_states, RB_ARRAY_SIZE(busy_states));
}

bool lifecycle_state_installed(const char *state)
{
	return in(state, installed_states, RB_ARRAY_SIZE(installed_states));
}

int lifecycle_action_parse(const char *name, enum lifecycle_action *ret)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(action_names); i++)
		if (name && !strcmp(name, action_names[i])) {
			*ret = (enum lifecycle_action)i;
			return 0;
		}
	return -EINVAL;
}

const char *lifecycle_action_name(enum lifecycle_action a)
{
	return (size_t)a < RB_ARRAY_SIZE(action_names) ? action_names[a] : "?";
}

static int refuse(char *why, size_t whylen, enum lifecycle_action a, const char *reason,
                  const char *state)
{
	snprintf(why, whylen, "cannot %s: %s", lifecycle_action_name(a), reason);
	if (state) {
		size_t n = strlen(why);

		snprintf(why + n, whylen > n ? whylen - n : 0, " (state %s)", state);
	}
	return -EPERM;
}

int lifecycle_apply(enum lifecycle_action a, const char *state, bool held, char ret_state[24],
                    bool *ret_held, char *why, size_t whylen)
{
	bool retired = !strcmp(state, "retired");
	const char *next = state;
	bool next_held = held;

	switch (a) {
	case LC_PROVISION:
		if (held)
			return refuse(why, whylen, a, "node is held; release it first", NULL);
		if (lifecycle_state_busy(state))
			return refuse(why, whylen, a, "node is already being provisioned", state);
		if (lifecycle_state_installed(state))
			return refuse(why, whylen, a,
			              "node is installed; use reimage to install it again", state);
		if (!in(state, fresh_states, RB_ARRAY_SIZE(fresh_states)))
			return refuse(why, whylen, a, "not allowed in this state", state);
		next = "provisioning";
		break;
	case LC_REIMAGE:
		if (retired)
			return refuse(why, whylen, a,
			              "node is retired; provision it to bring it back first", NULL);
		if (held)
			return refuse(why, whylen, a, "node is held; release it first", NULL);
		next = "provisioning";
		break;
	case LC_HOLD:
		if (retired)
			return refuse(why, whylen, a, "node is retired", NULL);
		if (held)
			return refuse(why, whylen, a, "node is already held", NULL);
		next_held = true;
		break;
	case LC_RELEASE:
		if (!held)
			return refuse(why, whylen, a, "node is not held", NULL);
		next_held = false;
		break;
	case LC_RETIRE:
		if (retired)
			return refuse(why, whylen, a, "node is already retired", NULL);
		next = "retired";
		next_held = false;
		break;
	default:
		return refuse(why, whylen, a, "unknown action", NULL);
	}
	snprintf(ret_state, 24, "%s", next);
	*ret_held = next_held;
	return 0;
}
