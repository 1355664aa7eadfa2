/* rackboot: the operator's command line for rackbootd's operator API.
 *
 *   rackboot [--server URL] [--token TOKEN] [--json] COMMAND ...
 *   node ls [--state S] [--profile P] [--rack R] [--label K[=V]] [--held|--not-held] [--watch]
 *   node show MAC | node add MAC [...] | node set MAC [...]
 *   node provision|reimage|hold|release|retire MAC...
 *   events [-f] [--since ID] | image ls|show | profile ls|show
 *   pkgset ls|show NAME|rollback NAME|unpin NAME (pkgset = package-set)
 *   token create NAME [--tokens-file FILE]
 *
 * The server is --server, else RACKBOOT_SERVER, else http://127.0.0.1:8080;
 * the token --token, else RACKBOOT_TOKEN, else the first line of
 * $XDG_CONFIG_HOME/rackboot/token (~/.config/rackboot/token). Exit codes:
 * 0 done, 1 the server refused (400, 404, 409, 5xx), 2 usage, 3 no
 * connection, 4 no or a refused token. Human tables by default, the
 * server's JSON with --json.
 *
 * Owns nothing past a command. Never prints the token. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/optoken.h"
#include "common/util.h"

#define DEFAULT_SERVER      "http://127.0.0.1:8080"
#define DEFAULT_TOKENS_FILE "/var/lib/rackboot/tokens"

static const char usage_text[] =
        "Usage: rackboot [--server URL] [--token TOKEN] [--cacert FILE] [--json] COMMAND ...\n"
        "\n"
        "Nodes:\n"
        "  node ls [--state S[,S]] [--profile P] [--rack R] [--label K[=V]]... "
        "[--held|--not-held]\n"
        "          [--watch]                 list (--watch: redraw as nodes change)\n"
        "  node show MAC                     state, progress, inventory summary, events\n"
        "  node add MAC [--hostname H] [--profile P] [--rack R] [--label K=V]...\n"
        "  node set MAC [--hostname H] [--profile P|\"\"] [--rack R] [--label K=V]...\n"
        "          [--unlabel K]... [--image NAME|\"\"] [--version V|\"\"]\n"
        "          [--package-sets A,B | --package-sets-default]\n"
        "  node provision MAC...             start provisioning (new, discovered, failed, "
        "retired)\n"
        "  node reimage MAC... [--wipe none|metadata|full] [--yes]\n"
        "  node hold|release MAC...          no provisioning or updates while held\n"
        "  node retire MAC... [--yes]        out of service: local boot only, agent refused\n"
        "Events:\n"
        "  events [--since ID]               the stored events (all, or after ID), then exit\n"
        "  events -f [--since ID]            follow live, with progress bars on a terminal\n"
        "Catalogue and config:\n"
        "  image ls | image show NAME        images in the repository\n"
        "  profile ls | profile show NAME    profiles in rackbootd.conf\n"
        "  pkgset ls | pkgset show NAME      package sets (also: package-set), with the\n"
        "                                    versions handed out now and before\n"
        "  pkgset rollback NAME              pin the set to its previous versions\n"
        "  pkgset unpin NAME                 follow rackbootd.conf and the catalogue again\n"
        "Tokens (on the server's host):\n"
        "  token create NAME [--tokens-file FILE]   default " DEFAULT_TOKENS_FILE "\n"
        "\n"
        "Options:\n"
        "  --server URL    rackbootd's HTTP address (RACKBOOT_SERVER, default " DEFAULT_SERVER ")\n"
        "  --token TOKEN   operator token (RACKBOOT_TOKEN, or ~/.config/rackboot/token)\n"
        "  --cacert FILE   CA certificate(s) for an https server (RACKBOOT_CACERT)\n"
        "  --json          print the server's JSON (events: one object per line)\n"
        "  -h, --help      this text\n"
        "\n"
        "Exit codes: 0 done, 1 refused by the server (e.g. 409 not allowed in this state),\n"
        "2 usage, 3 cannot connect, 4 no token or token refused.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("rackboot: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (rackboot --help lists the commands)\n", stderr);
	return CLI_USAGE;
}

/* ---- shared formats ---------------------------------------------------------- */

static const char *js(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static void print_json(json_t *doc)
{
	json_dumpf(doc, stdout, JSON_INDENT(2));
	putchar('\n');
}

/* ---- setup -------------------------------------------------------------------- */

/* The token from the environment or the per-user file. */
static int find_token(const char *given, char *buf, size_t len)
{
	const char *env = getenv("RACKBOOT_TOKEN"), *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char path[1024], line[256];
	struct stat st;
	FILE *f;

	if (given && *given) {
		snprintf(buf, len, "%s", given);
		return 0;
	}
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/rackboot/token", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.config/rackboot/token", home);
	else
		return -ENOENT;
	f = fopen(path, "re");
	if (!f)
		return -ENOENT;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "rackboot: warning: %s can be read by others (chmod 600 %s)\n",
		        path, path);
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return -ENOENT;
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	snprintf(buf, len, "%s", line);
	explicit_bzero(line, sizeof(line));
	return *buf ? 0 : -ENOENT;
}

/* Appends "&key=value" (value URL-escaped) to a query. */
static int query_add(char *q, size_t len, const char *key, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, 0);
	size_t o = strlen(q);
	int n;

	if (!esc)
		return -ENOMEM;
	n = snprintf(q + o, len - o, "%s%s=%s", o ? "&" : "", key, esc);
	curl_free(esc);
	return n < 0 || (size_t)n >= len - o ? -E2BIG : 0;
}

static bool mac_ok(const char *s)
{
	uint8_t m[6];

	return rb_mac_parse(s, m) == 0;
}

/* ---- node commands -------------------------------------------------------------- */

static int node_ls(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "profile", required_argument, NULL, 'p' },
		{ "rack", required_argument, NULL, 'r' },
		{ "label", required_argument, NULL, 'l' },
		{ "held", no_argument, NULL, 'H' },
		{ "not-held", no_argument, NULL, 'N' },
		{ "watch", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	char q[4096] = "", path[4200];
	struct response r;
	bool watch = false;
	int c, rc = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			rc = query_add(q, sizeof(q), "state", optarg);
			break;
		case 'p':
			rc = query_add(q, sizeof(q), "profile", optarg);
			break;
		case 'r':
			rc = query_add(q, sizeof(q), "rack", optarg);
			break;
		case 'l':
			rc = query_add(q, sizeof(q), "label", optarg);
			break;
		case 'H':
			rc = query_add(q, sizeof(q), "held", "true");
			break;
		case 'N':
			rc = query_add(q, sizeof(q), "held", "false");
			break;
		case 'w':
			watch = true;
			break;
		default:
			return usage_error("node ls: unknown option");
		}
		if (rc < 0)
			return usage_error("node ls: filters too long");
	}
	if (optind < argc)
		return usage_error("node ls takes no argument \"%s\"", argv[optind]);
	if (watch)
		return cli_watch_nodes(cli, q);
	snprintf(path, sizeof(path), "/api/v1/nodes%s%s", *q ? "?" : "", q);
	rc = client_request(&cli->c, "GET", path, NULL, &r);
	if (rc != CLI_OK)
		return cli_fail(rc, "%s", r.err);
	if (cli->json)
		print_json(r.doc);
	else
		cli_print_nodes(stdout, json_object_get(r.doc, "nodes"), (int64_t)time(NULL));
	json_decref(r.doc);
	return CLI_OK;
}

static void print_node(json_t *n, int64_t now)
{
	json_t *labels = json_object_get(n, "labels"), *d = json_object_get(n, "desired");
	json_t *hw = json_object_get(n, "hardware"), *sets = json_object_get(d, "package_sets");
	json_t *evs = json_object_get(n, "events"), *v, *e;
	char a[32], b[32], prog[200];
	const char *k;
	size_t i;

	printf("mac:          %s\n", js(n, "mac"));
	printf("state:        %s%s\n", js(n, "state"),
	       json_is_true(json_object_get(n, "held")) ? " (held: no provisioning, no updates)"
	                                                : "");
	printf("profile:      %s\n", *js(n, "profile") ? js(n, "profile") : "- (rules, default)");
	printf("hostname:     %s\n", *js(n, "hostname") ? js(n, "hostname") : "-");
	printf("rack:         %s\n", *js(n, "rack") ? js(n, "rack") : "-");
	printf("labels:      ");
	if (!json_object_size(labels))
		printf(" -");
	json_object_foreach(labels, k, v)
	        printf(" %s=%s", k, json_is_string(v) ? json_string_value(v) : "?");
	printf("\narch, ip:     %s, %s\n", *js(n, "arch") ? js(n, "arch") : "-",
	       *js(n, "ip") ? js(n, "ip") : "-");
	printf("seen:         first %s, last %s\n",
	       fmt_ago(now, json_integer_value(json_object_get(n, "first_seen")), a, sizeof(a)),
	       fmt_ago(now, json_integer_value(json_object_get(n, "last_seen")), b, sizeof(b)));
	printf("desired:      image %s, version %s, package sets ",
	       *js(d, "image") ? js(d, "image") : "(profile's)",
	       *js(d, "version") ? js(d, "version") : "(profile's)");
	if (!json_is_array(sets))
		printf("(profile's)");
	else if (!json_array_size(sets))
		printf("(none)");
	json_array_foreach(sets, i, v) printf("%s%s", i ? "," : "", json_string_value(v));
	putchar('\n');
	if (*js(n, "reimage_wipe"))
		printf("reimage:      pending, wipe %s\n", js(n, "reimage_wipe"));
	if (json_is_object(hw))
		printf("hardware:     %lld GPUs, %s memory, %lld disks, %s\n",
		       (long long)json_integer_value(json_object_get(hw, "gpus")),
		       fmt_bytes((uint64_t)json_integer_value(json_object_get(hw, "memory_bytes")),
		                 a, sizeof(a)),
		       (long long)json_integer_value(json_object_get(hw, "disks")),
		       *js(hw, "cpu_model") ? js(hw, "cpu_model") : "?");
	else
		printf("hardware:     no inventory yet (the node reports it on its discovery "
		       "boot)\n");
	if (json_is_object(json_object_get(n, "progress")))
		printf("progress:     %s\n",
		       cli_progress_text(json_object_get(n, "progress"), 30, prog, sizeof(prog)));
	printf("events (last %zu):\n", json_array_size(evs));
	json_array_foreach(evs, i, e)
	{
		time_t ts = (time_t)(json_integer_value(json_object_get(e, "ts_ms")) / 1000);
		char when[32];
		struct tm tm;

		if (!localtime_r(&ts, &tm) ||
		    !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
			snprintf(when, sizeof(when), "?");
		printf("  %s  %-16s  %s\n", when, js(e, "event"), js(e, "detail"));
	}
}

static int node_show(struct cli *cli, int argc, char **argv)
{
	struct response r;
	char path[128];
	int rc;

	if (argc != 2 || !mac_ok(argv[1]))
		return usage_error("node show needs one MAC (aa:bb:cc:dd:ee:ff)");
	snprintf(path, sizeof(path), "/api/v1/nodes/%s", argv[1]);
	rc = client_request(&cli->c, "GET", path, NULL, &r);
	if (rc != CLI_OK)
		return cli_fail(rc, "%s: %s", argv[1], r.err);
	if (cli->json)
		print_json(r.doc);
	else
		print_node(r.doc, (int64_t)time(NULL));
	json_decref(r.doc);
	return CLI_OK;
}

/* node add / node set: the body from the options. */
static int node_write(struct cli *cli, int argc, char **argv, bool add)
{
	static const struct option opts[] = {
		{ "hostname", required_argument, NULL, 'h' },
		{ "profile", required_argument, NULL, 'p' },
		{ "rack", required_argument, NULL, 'r' },
		{ "label", required_argument, NULL, 'l' },
		{ "unlabel", required_argument, NULL, 'u' },
		{ "image", required_argument, NULL, 'i' },
		{ "version", required_argument, NULL, 'v' },
		{ "package-sets", required_argument, NULL, 'P' },
		{ "package-sets-default", no_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *body = json_object(), *labels = json_object();
	struct response r;
	char path[128], *text = NULL;
	const char *mac = NULL;
	int c, rc = CLI_USAGE;

	if (!body || !labels)
		goto out;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *eq = optarg ? strchr(optarg, '=') : NULL;

		switch (c) {
		case 'h':
			json_object_set_new(body, "hostname", json_string(optarg));
			break;
		case 'p':
			json_object_set_new(body, "profile", json_string(optarg));
			break;
		case 'r':
			json_object_set_new(body, "rack", json_string(optarg));
			break;
		case 'l':
			if (!eq || eq == optarg) {
				rc = usage_error("--label wants KEY=VALUE, not \"%s\"", optarg);
				goto out;
			}
			*eq = '\0';
			json_object_set_new(labels, optarg, json_string(eq + 1));
			*eq = '=';
			break;
		case 'u':
			if (add) {
				rc = usage_error("--unlabel is for node set");
				goto out;
			}
			json_object_set_new(labels, optarg, json_null());
			break;
		case 'i':
		case 'v':
		case 'P':
		case 'D':
			if (add) {
				rc = usage_error("node add takes --hostname, --profile, --rack and "
				                 "--label; set the desired image with node set");
				goto out;
			}
			if (c == 'i')
				json_object_set_new(body, "desired_image", json_string(optarg));
			else if (c == 'v')
				json_object_set_new(body, "desired_version", json_string(optarg));
			else if (c == 'D')
				json_object_set_new(body, "package_sets", json_null());
			else {
				json_t *arr = json_array();
				char *dup = strdup(optarg), *p = dup, *comma;

				for (; p && *p; p = comma ? comma + 1 : p + strlen(p)) {
					comma = strchr(p, ',');
					if (comma)
						*comma = '\0';
					if (*p)
						json_array_append_new(arr, json_string(p));
				}
				free(dup);
				json_object_set_new(body, "package_sets", arr);
			}
			break;
		default:
			rc = usage_error("node %s: unknown option", add ? "add" : "set");
			goto out;
		}
	}
	if (optind + 1 != argc || !mac_ok(argv[optind])) {
		rc = usage_error("node %s needs one MAC (aa:bb:cc:dd:ee:ff) and options",
		                 add ? "add" : "set");
		goto out;
	}
	mac = argv[optind];
	if (json_object_size(labels))
		json_object_set(body, "labels", labels);
	if (add)
		json_object_set_new(body, "mac", json_string(mac));
	else if (!json_object_size(body)) {
		rc = usage_error("node set: nothing to change (give --profile, --label, ...)");
		goto out;
	}
	text = json_dumps(body, JSON_COMPACT);
	if (!text) {
		rc = cli_fail(CLI_CONNECT, "out of memory");
		goto out;
	}
	if (add)
		snprintf(path, sizeof(path), "/api/v1/nodes");
	else
		snprintf(path, sizeof(path), "/api/v1/nodes/%s", mac);
	rc = client_request(&cli->c, add ? "POST" : "PATCH", path, text, &r);
	if (rc != CLI_OK) {
		cli_fail(rc, "%s: %s", mac, r.err);
	} else if (cli->json) {
		print_json(r.doc);
	} else {
		printf("%s: %s %s\n", js(r.doc, "mac"), add ? "registered," : "updated,",
		       js(r.doc, "state"));
	}
	json_decref(r.doc);
out:
	free(text);
	json_decref(labels);
	json_decref(body);
	return rc;
}

/* Asks on a terminal before a destructive action; true to go on. */
static bool confirm(const char *what, int n, char **macs)
{
	char answer[16];

	if (!isatty(0) || !isatty(2))
		return true; /* scripts: the command itself is the decision */
	fprintf(stderr, "%s", what);
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %s", macs[i]);
	fprintf(stderr, "? [y/N] ");
	if (!fgets(answer, sizeof(answer), stdin))
		return false;
	return answer[0] == 'y' || answer[0] == 'Y';
}

static int node_action(struct cli *cli, const char *action, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wipe", required_argument, NULL, 'w' },
		{ "yes", no_argument, NULL, 'y' },
		{ NULL, 0, NULL, 0 },
	};
	const char *wipe = NULL;
	json_t *all = json_array();
	char what[64], body[64];
	bool yes = false;
	int c, worst = CLI_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "y", opts, NULL)) != -1) {
		if (c == 'w' && !strcmp(action, "reimage"))
			wipe = optarg;
		else if (c == 'y')
			yes = true;
		else {
			json_decref(all);
			return usage_error("node %s: unknown option%s", action,
			                   c == 'w' ? " (--wipe is for reimage)" : "");
		}
	}
	if (optind >= argc) {
		json_decref(all);
		return usage_error("node %s needs one or more MACs", action);
	}
	for (int i = optind; i < argc; i++)
		if (!mac_ok(argv[i])) {
			json_decref(all);
			return usage_error("\"%s\" is not a MAC (aa:bb:cc:dd:ee:ff)", argv[i]);
		}
	if (wipe && strcmp(wipe, "none") && strcmp(wipe, "metadata") && strcmp(wipe, "full")) {
		json_decref(all);
		return usage_error("--wipe must be none, metadata or full");
	}
	snprintf(what, sizeof(what), "%s%s%s", action, wipe ? " with wipe " : "", wipe ? wipe : "");
	if (!yes && (!strcmp(action, "reimage") || !strcmp(action, "retire")) &&
	    !confirm(what, argc - optind, argv + optind)) {
		json_decref(all);
		return cli_fail(CLI_USAGE,
		                "not confirmed; nothing done (--yes skips the question)");
	}
	snprintf(body, sizeof(body), "{\"wipe\":\"%s\"}", wipe ? wipe : "");
	for (int i = optind; i < argc; i++) {
		struct response r;
		char path[128];
		int rc;

		snprintf(path, sizeof(path), "/api/v1/nodes/%s/actions/%s", argv[i], action);
		rc = client_request(&cli->c, "POST", path, wipe ? body : NULL, &r);
		if (rc != CLI_OK) {
			cli_fail(rc, "%s: %s", argv[i], r.err);
			worst = RB_MAX(worst, rc);
		} else if (cli->json) {
			json_array_append(all, r.doc);
		} else {
			printf("%s: %s%s%s%s\n", js(r.doc, "mac"), js(r.doc, "state"),
			       json_is_true(json_object_get(r.doc, "held")) ? " (held)" : "",
			       *js(r.doc, "reimage_wipe") ? ", reimage with wipe " : "",
			       js(r.doc, "reimage_wipe"));
		}
		json_decref(r.doc);
		if (rc == CLI_AUTH || rc == CLI_CONNECT)
			break; /* the next ones would fail the same way */
	}
	if (cli->json)
		print_json(all);
	json_decref(all);
	return worst;
}

static int cmd_node(struct cli *cli, int argc, char **argv)
{
	static const char *const actions[] = { "provision", "reimage", "hold", "release",
		                               "retire" };
	const char *sub = argc > 1 ? argv[1] : "";

	if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
		return node_ls(cli, argc - 1, argv + 1);
	if (!strcmp(sub, "show"))
		return node_show(cli, argc - 1, argv + 1);
	if (!strcmp(sub, "add"))
		return node_write(cli, argc - 1, argv + 1, true);
	if (!strcmp(sub, "set"))
		return node_write(cli, argc - 1, argv + 1, false);
	for (size_t i = 0; i < RB_ARRAY_SIZE(actions); i++)
		if (!strcmp(sub, actions[i]))
			return node_action(cli, sub, argc - 1, argv + 1);
	return usage_error("node: unknown command \"%s\"", sub);
}

/* ---- catalogue and config ------------------------------------------------------- */

static int get_doc(struct cli *cli, const char *path, json_t **ret)
{
	struct response r;
	int rc = client_request(&cli->c, "GET", path, NULL, &r);

	if (rc != CLI_OK) {
		json_decref(r.doc);
		return cli_fail(rc, "%s", r.err);
	}
	*ret = r.doc;
	return CLI_OK;
}

static void print_images(json_t *doc)
{
	static const char *const head[] = { "NAME", "LATEST", "TYPE", "VERSIONS" };
	json_t *img, *v;
	struct table t;
	size_t i, j;

	if (table_init(&t, head, 4) < 0)
		return;
	json_array_foreach(json_object_get(doc, "images"), i, img)
	{
		char vers[256] = "";
		size_t o = 0;
		const char *type = "";
		const char *cells[4];

		json_array_foreach(json_object_get(img, "versions"), j, v)
		{
			if (o < sizeof(vers))
				o += (size_t)snprintf(vers + o, sizeof(vers) - o, "%s%s",
				                      j ? "," : "", js(v, "version"));
			if (!strcmp(js(v, "version"), js(img, "latest")))
				type = js(v, "type");
		}
		cells[0] = js(img, "name");
		cells[1] = js(img, "latest");
		cells[2] = type;
		cells[3] = vers;
		table_add(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
	if (*js(doc, "warning"))
		fprintf(stderr, "rackboot: the server says: %s\n", js(doc, "warning"));
}

static void print_image(json_t *img)
{
	static const char *const head[] = { "VERSION", "TYPE", "SIZE" };
	struct table t;
	size_t i;
	json_t *v;

	printf("%s (latest %s)\n", js(img, "name"), js(img, "latest"));
	if (table_init(&t, head, 3) < 0)
		return;
	json_array_foreach(json_object_get(img, "versions"), i, v)
	{
		char size[32];
		json_t *sz = json_object_get(v, "disk_size");
		const char *cells[3];

		if (!sz)
			sz = json_object_get(v, "size");
		cells[0] = js(v, "version");
		cells[1] = js(v, "type");
		cells[2] = fmt_bytes((uint64_t)json_integer_value(sz), size, sizeof(size));
		table_add(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
}

static void join_strings(json_t *arr, char *buf, size_t len)
{
	size_t i, o = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(arr, i, v) if (o < len) o +=
	        (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "", json_string_value(v));
}

static void print_profiles(json_t *doc)
{
	static const char *const head[] = { "NAME", "IMAGE", "VERSION",
		                            "WIPE", "AFTER", "PACKAGE SETS" };
	struct table t;
	size_t i;
	json_t *p;

	if (table_init(&t, head, RB_ARRAY_SIZE(head)) < 0)
		return;
	json_array_foreach(json_object_get(doc, "profiles"), i, p)
	{
		char name[80], sets[256];
		const char *cells[RB_ARRAY_SIZE(head)];

		snprintf(name, sizeof(name), "%s%s", js(p, "name"),
		         !strcmp(js(p, "name"), js(doc, "default_profile")) ? " (default)" : "");
		join_strings(json_object_get(p, "package_sets"), sets, sizeof(sets));
		cells[0] = name;
		cells[1] = js(p, "image");
		cells[2] = js(p, "version");
		cells[3] = js(p, "wipe");
		cells[4] = js(p, "after");
		cells[5] = *sets ? sets : "-";
		table_add(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
}

static void print_package_sets(json_t *doc)
{
	static const char *const head[] = { "NAME", "PACKAGES" };
	struct table t;
	size_t i, j;
	json_t *s, *p;

	if (table_init(&t, head, 2) < 0)
		return;
	json_array_foreach(json_object_get(doc, "package_sets"), i, s)
	{
		char pkgs[512] = "";
		size_t o = 0;
		const char *cells[2];

		json_array_foreach(json_object_get(s, "packages"), j, p) if (o < sizeof(pkgs)) o +=
		        (size_t)snprintf(pkgs + o, sizeof(pkgs) - o, "%s%s%s%s", j ? " " : "",
		                         js(p, "name"), *js(p, "version") ? "=" : "",
		                         js(p, "version"));
		cells[0] = js(s, "name");
		cells[1] = pkgs;
		table_add(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
}

/* "current: a=1 b=2" for each of the set's resolutions the server holds. */
static void print_pkgset_state(json_t *doc)
{
	static const char *const keys[] = { "current", "previous", "pinned" };

	for (size_t i = 0; i < RB_ARRAY_SIZE(keys); i++) {
		json_t *m = json_object_get(doc, keys[i]), *v;
		const char *k;

		printf("%-9s", keys[i]);
		if (!json_is_object(m))
			fputs(" -", stdout);
		json_object_foreach(m, k, v)
		        printf(" %s=%s", k, json_is_string(v) ? json_string_value(v) : "?");
		putchar('\n');
	}
}

/* pkgset rollback|unpin NAME */
static int pkgset_action(struct cli *cli, const char *action, int argc, char **argv)
{
	struct response r;
	char path[256];
	int rc;

	if (argc != 2 || !*argv[1] || strchr(argv[1], '/') || strchr(argv[1], '?'))
		return usage_error("pkgset %s NAME", action);
	snprintf(path, sizeof(path), "/api/v1/package-sets/%s/actions/%s", argv[1], action);
	rc = client_request(&cli->c, "POST", path, NULL, &r);
	if (rc != CLI_OK) {
		json_decref(r.doc);
		return cli_fail(rc, "%s: %s", argv[1], r.err);
	}
	if (cli->json) {
		print_json(r.doc);
	} else {
		printf("%s: %s\n", js(r.doc, "name"),
		       json_is_object(json_object_get(r.doc, "pinned"))
		               ? "pinned to its previous versions"
		               : "follows rackbootd.conf and the catalogue");
		print_pkgset_state(r.doc);
	}
	json_decref(r.doc);
	return CLI_OK;
}

/* image|profile|package-set ls|show NAME */
static int cmd_catalog(struct cli *cli, const char *what, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	const char *coll = !strcmp(what, "image")     ? "images"
	                   : !strcmp(what, "profile") ? "profiles"
	                                              : "package-sets";
	char path[256];
	json_t *doc = NULL;
	bool show = !strcmp(sub, "show");
	int rc;

	if (!(!strcmp(sub, "ls") || !strcmp(sub, "list") || show) || argc != (show ? 3 : 2))
		return usage_error("%s ls, or %s show NAME", what, what);
	if (show && (strchr(argv[2], '/') || strchr(argv[2], '?') || !*argv[2]))
		return usage_error("%s show: \"%s\" is not a name", what, argv[2]);
	snprintf(path, sizeof(path), "/api/v1/%s%s%s", coll, show ? "/" : "", show ? argv[2] : "");
	rc = get_doc(cli, path, &doc);
	if (rc != CLI_OK)
		return rc;
	if (cli->json)
		print_json(doc);
	else if (!strcmp(what, "image"))
		show ? print_image(doc) : print_images(doc);
	else if (!strcmp(what, "profile")) {
		if (show) {
			json_t *list =
			        json_pack("{s:[O], s:s}", "profiles", doc, "default_profile", "");

			print_profiles(list);
			json_decref(list);
		} else {
			print_profiles(doc);
		}
	} else if (show) {
		json_t *list = json_pack("{s:[O]}", "package_sets", doc);

		print_package_sets(list);
		json_decref(list);
		print_pkgset_state(doc);
	} else {
		print_package_sets(doc);
	}
	json_decref(doc);
	return CLI_OK;
}

/* ---- events, tokens ------------------------------------------------------------- */

static int cmd_events(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "since", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	long long since = -1;
	bool follow = false;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (c == 'f')
			follow = true;
		else if (c == 's' && rb_strtonum(optarg, 0, INT64_MAX, &since) == 0)
			continue;
		else
			return usage_error("events [-f] [--since ID]");
	}
	if (optind < argc)
		return usage_error("events takes no argument \"%s\"", argv[optind]);
	/* Without -f: the stored history (all, or after --since). */
	if (!follow && since < 0)
		since = 0;
	return cli_events(cli, follow, since);
}

static int cmd_token(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tokens-file", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = DEFAULT_TOKENS_FILE;
	char token[RB_OPTOKEN_LEN + 1], err[600];
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'f')
			return usage_error("token create NAME [--tokens-file FILE]");
		file = optarg;
	}
	if (optind + 2 != argc || strcmp(argv[optind], "create") != 0)
		return usage_error("token create NAME [--tokens-file FILE]");
	r = rb_optoken_create(file, argv[optind + 1], token, err, sizeof(err));
	if (r < 0)
		return cli_fail(!rb_optoken_name_ok(argv[optind + 1]) ? CLI_USAGE : CLI_REFUSED,
		                "%s", err);
	puts(token);
	explicit_bzero(token, sizeof(token));
	fprintf(stderr,
	        "rackboot: operator token \"%s\" added to %s (only its SHA-256 is kept there);\n"
	        "it is shown only now. Keep it in RACKBOOT_TOKEN or ~/.config/rackboot/token "
	        "(chmod 600).\n",
	        argv[optind + 1], file);
	return CLI_OK;
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct cli cli = { .c.timeout_s = 30 };
	const char *server = getenv("RACKBOOT_SERVER"), *token = NULL, *cmd;
	const char *cacert = getenv("RACKBOOT_CACERT");
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json")) {
			cli.json = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return CLI_OK;
		} else if ((!strcmp(a, "--server") || !strcmp(a, "--token") ||
		            !strcmp(a, "--cacert")) &&
		           i + 1 < argc) {
			if (a[2] == 's')
				server = argv[++i];
			else if (a[2] == 't')
				token = argv[++i];
			else
				cacert = argv[++i];
		} else if (!strncmp(a, "--server=", 9)) {
			server = a + 9;
		} else if (!strncmp(a, "--token=", 8)) {
			token = a + 8;
		} else {
			return usage_error("unknown option \"%s\"", a);
		}
	}
	if (i >= argc) {
		fputs(usage_text, stderr);
		return CLI_USAGE;
	}
	cmd = argv[i];
	/* --json may also follow the command (rackboot node ls --json). */
	for (int j = i + 1; j < argc;) {
		if (!strcmp(argv[j], "--json")) {
			cli.json = true;
			memmove(&argv[j], &argv[j + 1], sizeof(*argv) * (size_t)(argc - j));
			argc--;
		} else {
			j++;
		}
	}
	if (!strcmp(cmd, "token"))
		return cmd_token(argc - i, argv + i);
	if (!server || !*server)
		server = DEFAULT_SERVER;
	if (strncmp(server, "http://", 7) && strncmp(server, "https://", 8))
		return usage_error("--server \"%s\": give a URL like http://10.0.0.1:8080", server);
	snprintf(cli.c.server, sizeof(cli.c.server), "%s", server);
	cli.c.cacert = cacert && *cacert ? cacert : NULL;
	while (*cli.c.server && cli.c.server[strlen(cli.c.server) - 1] == '/')
		cli.c.server[strlen(cli.c.server) - 1] = '\0';
	if (find_token(token, cli.c.token, sizeof(cli.c.token)) < 0)
		return cli_fail(CLI_AUTH,
		                "no operator token: pass --token, set RACKBOOT_TOKEN or put it in "
		                "~/.config/rackboot/token (make one on the server with: rackbootd "
		                "token create NAME)");
	cli.tty = isatty(1);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return cli_fail(CLI_CONNECT, "cannot initialise libcurl");
	if (!strcmp(cmd, "node") || !strcmp(cmd, "nodes"))
		rc = cmd_node(&cli, argc - i, argv + i);
	else if (!strcmp(cmd, "events"))
		rc = cmd_events(&cli, argc - i, argv + i);
	else if ((!strcmp(cmd, "pkgset") || !strcmp(cmd, "package-set")) && argc - i > 1 &&
	         (!strcmp(argv[i + 1], "rollback") || !strcmp(argv[i + 1], "unpin")))
		rc = pkgset_action(&cli, argv[i + 1], argc - i - 1, argv + i + 1);
	else if (!strcmp(cmd, "pkgset"))
		rc = cmd_catalog(&cli, "package-set", argc - i, argv + i);
	else if (!strcmp(cmd, "image") || !strcmp(cmd, "profile") || !strcmp(cmd, "package-set"))
		rc = cmd_catalog(&cli, cmd, argc - i, argv + i);
	else
		rc = usage_error("unknown command \"%s\"", cmd);
	explicit_bzero(cli.c.token, sizeof(cli.c.token));
	curl_global_cleanup();
	return rc;
}
