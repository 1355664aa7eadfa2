/* The node lifecycle as operators drive it (../shared/DESIGN.md "Node
 * states"): which action is allowed in which state, and what it leads to.
 * Pure functions, no I/O: pxe/api_ops.c applies the result inside a
 * registry transaction. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

enum lifecycle_action {
	LC_PROVISION, /* new, discovered, failed, retired -> provisioning */
	LC_REIMAGE,   /* any state but retired -> provisioning, with a wipe level */
	LC_HOLD,      /* set the held flag: no provisioning, no updates */
	LC_RELEASE,   /* clear it */
	LC_RETIRE,    /* -> retired: no boots served, no agent calls accepted */
};

/* "provision", "reimage", ... -> the action. -EINVAL for anything else. */
int lifecycle_action_parse(const char *name, enum lifecycle_action *ret);
const char *lifecycle_action_name(enum lifecycle_action a);

/* Decides action a on a node in state with the held flag. Returns 0 with
 * the new state (at most 23 characters) and flag, or -EPERM with a reason
 * for a 409, starting "cannot <action>: ". The state string may be any
 * registry state, known or not. */
int lifecycle_apply(enum lifecycle_action a, const char *state, bool held, char ret_state[24],
                    bool *ret_held, char *why, size_t whylen);

/* The states in which the agent is working on the node's disk. */
bool lifecycle_state_busy(const char *state);
/* Installed: the node boots its own disk ("ready", "imaged", "localboot",
 * "updating"). */
bool lifecycle_state_installed(const char *state);
