/*
 * test_config.c - kvfsd's flags and config file (node/config.h; man/kvfsd.8,
 * man/kvfs.conf.5): every key, file and flag precedence, and every error.
 *
 * Links against config.c only: the defaults below mirror
 * kv_server_options_default() as server.h documents it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "node/config.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_ARGS 64

struct fixture {
	char dir[64];
	char err[512];
	struct kv_server_options o;
};

static struct fixture *F;

/* The defaults of server.h, as kv_server_options_default() sets them. */
static void defaults(struct kv_server_options *o)
{
	memset(o, 0, sizeof *o);
	memcpy(o->listen_host, "127.0.0.1", sizeof "127.0.0.1");
	o->listen_port = KV_SERVER_DEFAULT_PORT;
	memcpy(o->cluster, "kvfs", sizeof "kvfs");
	o->n = 3;
	o->r = 2;
	o->w = 2;
	o->timeout_ms = 5000;
	o->forward_timeout_ms = 1000;
	o->connect_timeout_ms = 1000;
	o->idle_timeout_ms = 10000;
	memcpy(o->sync, "always", sizeof "always");
	o->memtable_bytes = (size_t)16 << 20;
	o->cache_bytes = (size_t)32 << 20;
	o->max_value = (size_t)4 << 20;
	o->max_conn_queue_bytes = (size_t)64 << 20;
	o->log_level = KV_LOG_INFO;
}

static int setup(void **state)
{
	F = calloc(1, sizeof *F);
	assert_non_null(F);
	snprintf(F->dir, sizeof F->dir, "/tmp/kvfs-test-config-XXXXXX");
	assert_non_null(mkdtemp(F->dir));
	defaults(&F->o);
	*state = F;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", F->dir);
	assert_int_equal(system(cmd), 0);
	free(F);
	F = NULL;
	*state = NULL;
	return 0;
}

/* Writes @text to @name in the fixture's directory; returns its path (static). */
static const char *write_file(const char *name, const char *text, size_t len)
{
	static char path[2][256];
	static int which;
	char *p = path[which++ & 1];
	FILE *f;

	snprintf(p, 256, "%s/%s", F->dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return p;
}

static const char *conf(const char *text)
{
	return write_file("kvfs.conf", text, strlen(text));
}

/* Runs kv_config_parse_args() on fresh defaults, "kvfsd" and the NULL-terminated flags. */
static int run(const char *first, ...)
{
	char *argv[MAX_ARGS];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"kvfsd";
	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		assert_true(argc < MAX_ARGS);
		argv[argc++] = (char *)a;
	}
	va_end(ap);
	argv[argc] = NULL;
	defaults(&F->o);
	F->err[0] = '\0';
	return kv_config_parse_args(&F->o, argc, argv, F->err, sizeof F->err);
}

static void expect_error(int rc, const char *needle)
{
	if (rc >= 0 || !strstr(F->err, needle))
		fail_msg("rc %d, err '%s', expected '%s'", rc, F->err, needle);
	assert_null(strchr(F->err, '\n'));
}

/* ---- every key ------------------------------------------------------- */

static void test_config__minimal_node_is_a_cluster_of_itself(void **state)
{
	(void)state;
	assert_int_equal(run("--node-id", "7", "--data", "/var/lib/kvfs", NULL), 0);
	struct kv_server_options *o = &F->o;
	assert_int_equal(o->node_id, 7);
	assert_string_equal(o->data_dir, "/var/lib/kvfs");
	assert_string_equal(o->listen_host, "127.0.0.1");
	assert_int_equal(o->listen_port, 7400);
	assert_int_equal(o->n_members, 1);
	assert_int_equal(o->members[0].id, 7);
	assert_string_equal(o->members[0].host, "127.0.0.1");
	assert_int_equal(o->members[0].port, 7400);
	assert_true(o->members[0].weight == 1.0);
	assert_int_equal(o->n, 1);
	assert_int_equal(o->r, 1);
	assert_int_equal(o->w, 1);
	assert_string_equal(o->sync, "always");
	assert_int_equal(o->secret.len, 0);
	assert_string_equal(o->cluster, "kvfs");
}

static void test_config__every_flag_is_applied(void **state)
{
	(void)state;
	const char *secret = write_file("secret", "sesame\n", 7);
	int rc = run("--node-id", "2", "--listen", "127.0.0.12:7500", "--data", "d2",
		     "--members", "1=127.0.0.11:7500,2=127.0.0.12:7500/2.5, 3=127.0.0.13:7500",
		     "--cluster-name", "prod-1", "--secret-file", secret, "--sync", "batch:5",
		     "--n", "3", "--r", "1", "--w", "3", "--timeout", "2500",
		     "--forward-timeout", "300", "--connect-timeout", "400",
		     "--idle-timeout", "60000", "--memtable-mb", "8", "--cache-mb", "0",
		     "--background-mbps", "48",
		     "--max-value", "512K", "--max-queue-mb", "16", "--log", "/tmp/kvfsd.log",
		     "--log-level", "debug", NULL);
	if (rc)
		fail_msg("%s", F->err);
	struct kv_server_options *o = &F->o;
	assert_int_equal(o->node_id, 2);
	assert_string_equal(o->listen_host, "127.0.0.12");
	assert_int_equal(o->listen_port, 7500);
	assert_string_equal(o->data_dir, "d2");
	assert_int_equal(o->n_members, 3);
	assert_int_equal(o->members[0].id, 1);
	assert_string_equal(o->members[0].host, "127.0.0.11");
	assert_int_equal(o->members[1].id, 2);
	assert_true(o->members[1].weight == 2.5);
	assert_int_equal(o->members[2].id, 3);
	assert_string_equal(o->members[2].host, "127.0.0.13");
	assert_int_equal(o->members[2].port, 7500);
	assert_string_equal(o->cluster, "prod-1");
	assert_int_equal(o->secret.len, 6);
	assert_memory_equal(o->secret.bytes, "sesame", 6);
	assert_string_equal(o->sync, "batch:5");
	assert_int_equal(o->n, 3);
	assert_int_equal(o->r, 1);
	assert_int_equal(o->w, 3);
	assert_int_equal(o->timeout_ms, 2500);
	assert_int_equal(o->forward_timeout_ms, 300);
	assert_int_equal(o->connect_timeout_ms, 400);
	assert_int_equal(o->idle_timeout_ms, 60000);
	assert_int_equal(o->memtable_bytes, 8 << 20);
	assert_int_equal(o->background_bytes_per_sec, 48 << 20);
	assert_int_equal(o->cache_bytes, 0);
	assert_int_equal(o->max_value, 512 << 10);
	assert_int_equal(o->max_conn_queue_bytes, 16 << 20);
	assert_string_equal(o->log_file, "/tmp/kvfsd.log");
	assert_int_equal(o->log_level, KV_LOG_DEBUG);
}

static void test_config__every_key_is_read_from_the_file(void **state)
{
	(void)state;
	char text[2048];
	const char *secret = write_file("secret", "s3cret", 6);
	snprintf(text, sizeof text,
		 "# kvfs.conf for node 3\n"
		 "\n"
		 "node-id = 3\n"
		 "listen=127.0.0.13:7400\n"
		 "  data   =   /srv/kvfs/3   \n"
		 "members = 1=127.0.0.11:7400,2=127.0.0.12:7400,3=127.0.0.13:7400/0.5\n"
		 "cluster-name = test.cluster_a\n"
		 "secret-file = %s\n"
		 "sync = none\n"
		 "n = 2\n"
		 "r = 2   # trailing comment\n"
		 "w = 1\t# another\n"
		 "timeout = 100\n"
		 "forward-timeout = 50\n"
		 "connect-timeout = 60\n"
		 "idle-timeout = 70\n"
		 "memtable-mb = 4\n"
		 "background-mbps = 0\n"
		 "cache-mb = 64\n"
		 "max-value = 4M\n"
		 "max-queue-mb = 1\n"
		 "log = /var/log/kvfsd#3.log\n"
		 "log-level = info\r\n",
		 secret);
	int rc = run("--config", conf(text), NULL);
	if (rc)
		fail_msg("%s", F->err);
	struct kv_server_options *o = &F->o;
	assert_int_equal(o->node_id, 3);
	assert_string_equal(o->listen_host, "127.0.0.13");
	assert_string_equal(o->data_dir, "/srv/kvfs/3");
	assert_int_equal(o->n_members, 3);
	assert_true(o->members[2].weight == 0.5);
	assert_string_equal(o->cluster, "test.cluster_a");
	assert_int_equal(o->secret.len, 6);
	assert_string_equal(o->sync, "none");
	assert_int_equal(o->n, 2);
	assert_int_equal(o->r, 2);
	assert_int_equal(o->w, 1);
	assert_int_equal(o->timeout_ms, 100);
	assert_int_equal(o->forward_timeout_ms, 50);
	assert_int_equal(o->connect_timeout_ms, 60);
	assert_int_equal(o->idle_timeout_ms, 70);
	assert_int_equal(o->memtable_bytes, 4 << 20);
	assert_int_equal(o->background_bytes_per_sec, 0);
	assert_int_equal(o->cache_bytes, 64 << 20);
	assert_int_equal(o->max_value, 4 << 20);
	assert_int_equal(o->max_conn_queue_bytes, 1 << 20);
	assert_string_equal(o->log_file, "/var/log/kvfsd#3.log");
	assert_int_equal(o->log_level, KV_LOG_INFO);
}

static void test_config__load_file_alone_completes_and_checks(void **state)
{
	(void)state;
	const char *path = conf("node-id = 1\ndata = /d\n");
	assert_int_equal(kv_config_load_file(&F->o, path, F->err, sizeof F->err), 0);
	assert_int_equal(F->o.n_members, 1);
	assert_int_equal(F->o.n, 1);

	defaults(&F->o);
	path = conf("node-id = 1\n");
	assert_int_equal(kv_config_load_file(&F->o, path, F->err, sizeof F->err), KV_EINVAL);
	assert_non_null(strstr(F->err, "missing --data"));
}

static void test_config__equals_form_and_last_flag_wins(void **state)
{
	(void)state;
	assert_int_equal(run("--node-id=1", "--data=/a", "--data", "/b", "--timeout=9", NULL), 0);
	assert_string_equal(F->o.data_dir, "/b");
	assert_int_equal(F->o.timeout_ms, 9);
}

static void test_config__sync_policies_are_checked_by_the_engine(void **state)
{
	(void)state;
	static const char *good[] = { "always", "none", "batch:1", "batch:100" };
	for (size_t i = 0; i < 4; i++) {
		defaults(&F->o);
		assert_int_equal(run("--node-id", "1", "--data", "/d", "--sync", good[i], NULL), 0);
		assert_string_equal(F->o.sync, good[i]);
	}
	static const char *bad[] = { "sometimes", "batch:", "batch:x", "ALWAYS",
				     "batch:5:6", "always-and-forever-and-ever-and-ever" };
	for (size_t i = 0; i < 6; i++) {
		defaults(&F->o);
		expect_error(run("--node-id", "1", "--data", "/d", "--sync", bad[i], NULL),
			     "for --sync: expected always, batch:MS or none");
	}
}

static void test_config__max_value_takes_k_and_m_suffixes(void **state)
{
	(void)state;
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--max-value", "1000", NULL), 0);
	assert_int_equal(F->o.max_value, 1000);
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--max-value", "3k", NULL), 0);
	assert_int_equal(F->o.max_value, 3072);
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--max-value", "2M", NULL), 0);
	assert_int_equal(F->o.max_value, 2 << 20);
	static const char *bad[] = { "5M", "4194305", "0", "K", "1G", "-1", "1.5M", " 4", "1KK" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(run("--node-id", "1", "--data", "/d", "--max-value", bad[i], NULL),
			     "for --max-value: expected a size from 1 to 4M");
}

static void test_config__log_levels(void **state)
{
	(void)state;
	static const char *names[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(run("--node-id", "1", "--data", "/d", "--log-level", names[i], NULL),
				 0);
		assert_int_equal(F->o.log_level, i);
	}
	expect_error(run("--node-id", "1", "--data", "/d", "--log-level", "loud", NULL),
		     "bad value 'loud' for --log-level: expected error, warn, info or debug");
}

static void test_config__default_quorums_are_capped_to_the_members(void **state)
{
	(void)state;
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--members",
			     "1=127.0.0.11:7400,2=127.0.0.12:7400", NULL), 0);
	assert_int_equal(F->o.n, 2);
	assert_int_equal(F->o.r, 2);
	assert_int_equal(F->o.w, 2);
	/* listen defaults to the node's own member address */
	assert_string_equal(F->o.listen_host, "127.0.0.11");

	defaults(&F->o);
	assert_int_equal(run("--node-id", "4", "--data", "/d", "--members",
			     "1=127.0.0.11:7400,2=127.0.0.12:7400,3=127.0.0.13:7400,"
			     "4=127.0.0.14:7401",
			     NULL), 0);
	assert_int_equal(F->o.n, 3);
	assert_int_equal(F->o.r, 2);
	assert_int_equal(F->o.w, 2);
	assert_int_equal(F->o.listen_port, 7401);
}

static void test_config__wildcard_listen_with_a_secret(void **state)
{
	(void)state;
	const char *secret = write_file("secret", "k", 1);
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--listen", "0.0.0.0:7400",
			     "--secret-file", secret, NULL), 0);
	assert_string_equal(F->o.listen_host, "0.0.0.0");
	/* a wildcard listen at the member's port is fine */
	assert_int_equal(run("--node-id", "1", "--data", "/d", "--listen", "0.0.0.0:7400",
			     "--secret-file", secret, "--members", "1=10.0.0.1:7400", NULL), 0);
	assert_int_equal(F->o.listen_port, 7400);
}

/* ---- file and flags -------------------------------------------------- */

static void test_config__flags_override_the_file_wherever_config_stands(void **state)
{
	(void)state;
	const char *path = conf("node-id = 1\ndata = /from-file\nn = 1\ntimeout = 100\n");
	assert_int_equal(run("--data", "/from-flag", "--config", path, NULL), 0);
	assert_string_equal(F->o.data_dir, "/from-flag");
	assert_int_equal(F->o.timeout_ms, 100);

	defaults(&F->o);
	assert_int_equal(run("--config", path, "--timeout", "7", NULL), 0);
	assert_string_equal(F->o.data_dir, "/from-file");
	assert_int_equal(F->o.timeout_ms, 7);
}

static void test_config__help_and_version(void **state)
{
	(void)state;
	assert_int_equal(run("--help", NULL), KV_CONFIG_HELP);
	assert_int_equal(run("--node-id", "x", "-h", NULL), KV_CONFIG_HELP);
	assert_int_equal(run("--version", NULL), KV_CONFIG_VERSION);
	/* help wins even over a config file that does not exist */
	assert_int_equal(run("--config", "/nonexistent/kvfs.conf", "--help", NULL), KV_CONFIG_HELP);
	const char *u = kv_config_usage();
	static const char *keys[] = { "--config", "--node-id", "--listen", "--data", "--members",
				      "--cluster-name", "--secret-file", "--sync", "--n", "--r",
				      "--w", "--timeout", "--forward-timeout",
				      "--connect-timeout", "--idle-timeout", "--memtable-mb",
				      "--background-mbps",
				      "--cache-mb", "--max-value", "--max-queue-mb", "--log",
				      "--log-level", "--version" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		assert_non_null(strstr(u, keys[i]));
}

/* ---- errors ---------------------------------------------------------- */

static void test_config__unknown_key_names_file_and_line(void **state)
{
	(void)state;
	char want[256];
	const char *path = conf("node-id = 1\n# comment\nfoo = bar\n");
	snprintf(want, sizeof want, "unknown key 'foo' at %s:3", path);
	expect_error(run("--config", path, NULL), want);
	assert_string_equal(F->err, want);
}

static void test_config__unknown_flag_and_stray_argument(void **state)
{
	(void)state;
	expect_error(run("--node-id", "1", "--data", "/d", "--foo", "1", NULL),
		     "unknown option '--foo'");
	expect_error(run("--node-id", "1", "-x", NULL), "unknown option '-x'");
	expect_error(run("--node-id", "1", "stray", NULL), "unexpected argument 'stray'");
	expect_error(run("--node-id", NULL), "missing value for --node-id");
	expect_error(run("--node-id", "", "--data", "/d", NULL), "missing value for --node-id");
}

static void test_config__bad_numbers(void **state)
{
	(void)state;
	struct {
		const char *flag, *value, *want;
	} cases[] = {
		{ "--node-id", "0", "bad value '0' for --node-id: expected an integer from 1 to 4294967295" },
		{ "--node-id", "4294967296", "for --node-id" },
		{ "--node-id", "-1", "for --node-id" },
		{ "--node-id", "1x", "bad value '1x' for --node-id" },
		{ "--n", "17", "for --n: expected an integer from 1 to 16" },
		{ "--r", "0", "for --r" },
		{ "--w", "abc", "for --w" },
		{ "--timeout", "0", "for --timeout: expected an integer from 1 to 3600000" },
		{ "--forward-timeout", "3600001", "for --forward-timeout" },
		{ "--connect-timeout", "", "missing value for --connect-timeout" },
		{ "--idle-timeout", "+5", "for --idle-timeout" },
		{ "--memtable-mb", "0", "for --memtable-mb" },
		{ "--background-mbps", "65537", "for --background-mbps" },
		{ "--cache-mb", "65537", "for --cache-mb" },
		{ "--max-queue-mb", "99999999999999999999999", "for --max-queue-mb" },
		{ "--listen", "localhost:7400", "for --listen: expected HOST:PORT" },
		{ "--listen", "127.0.0.1", "for --listen" },
		{ "--listen", "127.0.0.1:65536", "for --listen" },
		{ "--listen", "[::1]:7400", "for --listen" },
		{ "--cluster-name", "a b", "for --cluster-name" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		defaults(&F->o);
		expect_error(run("--node-id", "1", "--data", "/d", cases[i].flag, cases[i].value,
				 NULL),
			     cases[i].want);
	}
	char want[256];
	const char *path = conf("node-id = 1\ndata = /d\n\nn = three\n");
	snprintf(want, sizeof want, "bad value 'three' for 'n' at %s:4: expected an integer", path);
	expect_error(run("--config", path, NULL), want);
}

static void test_config__quorums_outside_one_to_n(void **state)
{
	(void)state;
	const char *members = "1=127.0.0.11:7400,2=127.0.0.12:7400,3=127.0.0.13:7400";
	expect_error(run("--node-id", "1", "--data", "/d", "--members", members, "--r", "4", NULL),
		     "r = 4 (--r) must be from 1 to n = 3");
	expect_error(run("--node-id", "1", "--data", "/d", "--members", members, "--n", "2",
			 "--w", "3", NULL),
		     "w = 3 (--w) must be from 1 to n = 2");
	char want[256];
	const char *path = conf("node-id = 1\ndata = /d\nr = 2\n");
	snprintf(want, sizeof want, "r = 2 (at %s:3) must be from 1 to n = 1", path);
	defaults(&F->o);
	expect_error(run("--config", path, NULL), want);
}

static void test_config__node_id_must_be_a_member(void **state)
{
	(void)state;
	expect_error(run("--node-id", "4", "--data", "/d", "--members",
			 "1=127.0.0.11:7400,2=127.0.0.12:7400", NULL),
		     "node-id 4 (--node-id) is not among the members (1, 2)");
}

static void test_config__duplicate_members_are_refused(void **state)
{
	(void)state;
	expect_error(run("--node-id", "1", "--data", "/d", "--members",
			 "1=127.0.0.11:7400,2=127.0.0.12:7400,2=127.0.0.13:7400", NULL),
		     "duplicate member id 2 in --members");
	expect_error(run("--node-id", "1", "--data", "/d", "--members",
			 "1=127.0.0.11:7400,2=127.0.0.12:7400,3=127.0.0.11:7400", NULL),
		     "members 1 and 3 share the address 127.0.0.11:7400 in --members");
	char want[256];
	const char *path = conf("members = 1=127.0.0.1:1,1=127.0.0.1:2\n");
	snprintf(want, sizeof want, "duplicate member id 1 in 'members' at %s:1", path);
	expect_error(run("--config", path, NULL), want);
}

static void test_config__bad_member_syntax(void **state)
{
	(void)state;
	static const char *bad[] = {
		"1=127.0.0.11", "127.0.0.11:7400", "0=127.0.0.11:7400", "x=127.0.0.11:7400",
		"1=127.0.0.11:0", "1=127.0.0.11:7400/0", "1=127.0.0.11:7400/-1",
		"1=127.0.0.11:7400/nan", "1=127.0.0.11:7400/1001", "1=host:7400",
		"1=127.0.0.11:7400,", ",1=127.0.0.11:7400", "1=127.0.0.11:7400,,2=127.0.0.12:7400",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		defaults(&F->o);
		expect_error(run("--node-id", "1", "--data", "/d", "--members", bad[i], NULL),
			     "in --members: expected ID=HOST:PORT[/WEIGHT]");
	}
	expect_error(run("--node-id", "1", "--data", "/d", "--members", "1=0.0.0.0:7400", NULL),
		     "member 1 has the wildcard address 0.0.0.0");
}

static void test_config__n_above_member_count_is_refused(void **state)
{
	(void)state;
	expect_error(run("--node-id", "1", "--data", "/d", "--n", "3", NULL),
		     "n = 3 (--n) but the cluster has only 1 member (no --members given)");
	expect_error(run("--node-id", "1", "--data", "/d", "--n", "3", "--members",
			 "1=127.0.0.11:7400,2=127.0.0.12:7400", NULL),
		     "n = 3 (--n) but the cluster has only 2 members");
}

static void test_config__non_loopback_needs_a_secret(void **state)
{
	(void)state;
	expect_error(run("--node-id", "1", "--data", "/d", "--listen", "0.0.0.0:7400", NULL),
		     "refusing to listen on 0.0.0.0 without --secret-file");
	assert_string_equal(F->err, "refusing to listen on 0.0.0.0 without --secret-file");
	expect_error(run("--node-id", "1", "--data", "/d", "--members",
			 "1=192.168.1.1:7400", NULL),
		     "refusing to listen on 192.168.1.1 without --secret-file");
	expect_error(run("--node-id", "1", "--data", "/d", "--members",
			 "1=127.0.0.11:7400,2=10.1.1.1:7400", NULL),
		     "refusing member 2 at 10.1.1.1:7400 without --secret-file");
}

static void test_config__listen_must_match_the_member_address(void **state)
{
	(void)state;
	expect_error(run("--node-id", "1", "--data", "/d", "--listen", "127.0.0.1:7400",
			 "--members", "1=127.0.0.11:7400", NULL),
		     "listen 127.0.0.1:7400 (--listen) is not node 1's member address 127.0.0.11:7400");
}

static void test_config__missing_data_or_node_id(void **state)
{
	(void)state;
	expect_error(run("--data", "/d", NULL), "missing --node-id");
	expect_error(run("--node-id", "1", NULL), "missing --data");
	expect_error(run(NULL), "missing --node-id");
}

static void test_config__bad_config_files(void **state)
{
	(void)state;
	char want[256];
	const char *path;

	expect_error(run("--config", "/nonexistent/kvfs.conf", NULL),
		     "cannot read config file /nonexistent/kvfs.conf: No such file or directory");
	expect_error(run("--config", F->dir, NULL), "Is a directory");

	path = conf("node-id = 1\nnode-id = 2\n");
	snprintf(want, sizeof want, "duplicate key 'node-id' at %s:2 (first set at line 1)", path);
	expect_error(run("--config", path, NULL), want);

	path = conf("node-id 1\n");
	snprintf(want, sizeof want, "expected 'key = value' at %s:1", path);
	expect_error(run("--config", path, NULL), want);

	path = conf(" = 1\n");
	snprintf(want, sizeof want, "expected 'key = value' at %s:1, found no key", path);
	expect_error(run("--config", path, NULL), want);

	path = conf("data =   # nothing\n");
	snprintf(want, sizeof want, "missing value for 'data' at %s:1", path);
	expect_error(run("--config", path, NULL), want);

	path = conf("config = other.conf\n");
	expect_error(run("--config", path, NULL), "'config' cannot be set in a config file");

	path = write_file("nul.conf", "node-id = 1\nda\0ta = x\n", 22);
	snprintf(want, sizeof want, "NUL byte at %s:2", path);
	expect_error(run("--config", path, NULL), want);

	path = write_file("bin.conf", "\x01\xff\x7f = 1\n", 8);
	snprintf(want, sizeof want, "unknown key '\?\?\?' at %s:1", path);
	expect_error(run("--config", path, NULL), want);

	char *longline = malloc(KV_CONFIG_LINE_MAX + 16);
	assert_non_null(longline);
	memset(longline, 'a', KV_CONFIG_LINE_MAX + 10);
	memcpy(longline, "data = ", 7);
	longline[KV_CONFIG_LINE_MAX + 10] = '\n';
	path = write_file("long.conf", longline, KV_CONFIG_LINE_MAX + 11);
	free(longline);
	snprintf(want, sizeof want, "line %s:1 is longer than", path);
	expect_error(run("--config", path, NULL), want);

	path = conf("node-id = 1\n");
	expect_error(run("--config", path, "--config", path, NULL), "--config given twice");
}

static void test_config__bad_secret_files(void **state)
{
	(void)state;
	char want[256];
	const char *path = write_file("empty", "", 0);

	snprintf(want, sizeof want, "secret file %s is empty (--secret-file)", path);
	expect_error(run("--node-id", "1", "--data", "/d", "--secret-file", path, NULL), want);
	expect_error(run("--node-id", "1", "--data", "/d", "--secret-file", "/nonexistent/s", NULL),
		     "cannot read secret file /nonexistent/s: No such file or directory");
	assert_int_equal(F->o.secret.len, 0);

	char big[KV_AUTH_SECRET_MAX + 10];
	memset(big, 'x', sizeof big);
	path = write_file("big", big, sizeof big);
	snprintf(want, sizeof want, "secret file %s is larger than 1024 bytes", path);
	expect_error(run("--node-id", "1", "--data", "/d", "--secret-file", path, NULL), want);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_config__minimal_node_is_a_cluster_of_itself),
		T(test_config__every_flag_is_applied),
		T(test_config__every_key_is_read_from_the_file),
		T(test_config__load_file_alone_completes_and_checks),
		T(test_config__equals_form_and_last_flag_wins),
		T(test_config__sync_policies_are_checked_by_the_engine),
		T(test_config__max_value_takes_k_and_m_suffixes),
		T(test_config__log_levels),
		T(test_config__default_quorums_are_capped_to_the_members),
		T(test_config__wildcard_listen_with_a_secret),
		T(test_config__flags_override_the_file_wherever_config_stands),
		T(test_config__help_and_version),
		T(test_config__unknown_key_names_file_and_line),
		T(test_config__unknown_flag_and_stray_argument),
		T(test_config__bad_numbers),
		T(test_config__quorums_outside_one_to_n),
		T(test_config__node_id_must_be_a_member),
		T(test_config__duplicate_members_are_refused),
		T(test_config__bad_member_syntax),
		T(test_config__n_above_member_count_is_refused),
		T(test_config__non_loopback_needs_a_secret),
		T(test_config__listen_must_match_the_member_address),
		T(test_config__missing_data_or_node_id),
		T(test_config__bad_config_files),
		T(test_config__bad_secret_files),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
