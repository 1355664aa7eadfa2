/* The table of rackboot-agent subcommands. Each module adds its entry. */
#include "agent/commands.h"

#include <stddef.h>

/* entry prototypes (each helper adds its own under this line) */

const struct agent_command agent_commands[] = {
	/* entries (each helper adds its own under this line) */
	{ NULL, NULL, NULL },
};
