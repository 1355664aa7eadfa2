/* The table of rackboot-agent subcommands. Each module adds its entry. */
#include "agent/commands.h"

#include <stddef.h>

/* entry prototypes (each helper adds its own under this line) */
int agent_cmd_image(int argc, char **argv);
int agent_inventory_main(int argc, char **argv);

const struct agent_command agent_commands[] = {
	/* entries (each helper adds its own under this line) */
	{ "image", "write a signed image from the repository onto a disk", agent_cmd_image },
	{ "inventory", "print this node's hardware inventory as JSON", agent_inventory_main },
	{ NULL, NULL, NULL },
};
