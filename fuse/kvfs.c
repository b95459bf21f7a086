/*
 * kvfs.c - `kvfs [options] MOUNTPOINT`: mounts a kvfs cluster, or an
 * embedded single node, with libfuse3's low-level API and a multi-threaded
 * session loop (DESIGN §7 "Mounting"). Without -f it forks before any thread
 * starts, and the parent exits once the child's mount answers, with the
 * child's error if it failed. Manual: kvfs(1); design note: doc/fs.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuse/fs_int.h"
#include "node/server.h"
#include "proto/auth.h"
#include "util/error.h"
#include "util/log.h"

#ifndef KVFS_VERSION
#define KVFS_VERSION "0.1.0"
#endif

struct opts {
	const char *mountpoint;
	const char *cluster;
	const char *secret_file;
	const char *cluster_name;
	const char *data;
	bool foreground, debug, allow_other, default_permissions, sync_unlink;
	unsigned r, w;
	double timeout_s, attr_timeout;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs [options] MOUNTPOINT\n"
		"  --cluster HOST:PORT[,...]  mount this cluster (default: an embedded node)\n"
		"  --secret-file FILE         the cluster's secret\n"
		"  --cluster-name NAME        the cluster's name (default kvfs)\n"
		"  --data DIR                 embedded node's data and the staging area\n"
		"                             (default $XDG_DATA_HOME/kvfs)\n"
		"  -f                         stay in the foreground\n"
		"  -d                         FUSE debug output (implies -f)\n"
		"  -o r=R,w=W,timeout=SECONDS,attr_timeout=SECONDS,allow_other,\n"
		"     default_permissions,nodefault_permissions,sync_unlink\n"
		"  -h, --help    -V, --version\n"
		"See kvfs(1).\n");
}

static int parse_num(const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || d < lo || d > hi)
		return -1;
	*out = d;
	return 0;
}

static int parse_o(struct opts *o, char *spec)
{
	for (char *save = NULL, *tok = strtok_r(spec, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		double d;
		if (eq)
			*eq++ = '\0';
		if (strcmp(tok, "r") == 0 && eq && parse_num(eq, 1, 255, &d) == 0)
			o->r = (unsigned)d;
		else if (strcmp(tok, "w") == 0 && eq && parse_num(eq, 1, 255, &d) == 0)
			o->w = (unsigned)d;
		else if (strcmp(tok, "timeout") == 0 && eq && parse_num(eq, 0.1, 3600, &d) == 0)
			o->timeout_s = d;
		else if (strcmp(tok, "attr_timeout") == 0 && eq && parse_num(eq, 0, 3600, &d) == 0)
			o->attr_timeout = d;
		else if (strcmp(tok, "allow_other") == 0 && !eq)
			o->allow_other = true;
		else if (strcmp(tok, "default_permissions") == 0 && !eq)
			o->default_permissions = true;
		else if (strcmp(tok, "nodefault_permissions") == 0 && !eq)
			o->default_permissions = false;
		else if (strcmp(tok, "sync_unlink") == 0 && !eq)
			o->sync_unlink = true;
		else {
			fprintf(stderr, "kvfs: bad option -o %s%s%s\n", tok, eq ? "=" : "",
				eq ? eq : "");
			return -1;
		}
	}
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Reports the mount's status to the waiting parent: a byte, then a message. */
static int status_fd = -1;

static void report(int status, const char *msg)
{
	if (status_fd < 0) {
		if (status)
			fprintf(stderr, "kvfs: %s\n", msg);
		return;
	}
	uint8_t b = (uint8_t)status;
	ssize_t rc = write(status_fd, &b, 1);
	if (msg && rc == 1)
		rc = write(status_fd, msg, strlen(msg));
	(void)rc;
	close(status_fd);
	status_fd = -1;
}

struct probe {
	const char *mountpoint;
	bool daemon;
};

/* Waits until the mount answers (stat of its root), then reports success. */
static void *probe_main(void *arg)
{
	struct probe *p = arg;
	struct stat st;
	for (int i = 0; i < 200; i++) {
		if (stat(p->mountpoint, &st) == 0 && st.st_ino == FUSE_ROOT_ID)
			break;
		usleep(50 * 1000);
	}
	if (p->daemon) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	report(0, NULL);
	return NULL;
}

static int run(struct opts *o, const char *prog)
{
	struct kv_server *server = NULL;
	struct kv_client *client = NULL;
	struct fuse_session *se = NULL;
	struct kv_auth_secret secret = { .len = 0 };
	struct fs fs;
	bool fs_ready = false, mounted = false, handlers = false;
	char err[512] = "";
	char nodes[128];
	char staging[PATH_MAX];
	int rc = 1;

	if (kv_auth_init() < 0) {
		snprintf(err, sizeof err, "libsodium failed to start");
		goto out;
	}
	if (o->secret_file && kv_auth_secret_load(o->secret_file, &secret) < 0) {
		snprintf(err, sizeof err, "cannot read --secret-file %s", o->secret_file);
		goto out;
	}
	if (!o->cluster) {
		struct kv_server_options so;
		kv_server_options_default(&so);
		so.node_id = 1;
		snprintf(so.listen_host, sizeof so.listen_host, "127.0.0.1");
		so.listen_port = 0;
		snprintf(so.data_dir, sizeof so.data_dir, "%s/node", o->data);
		so.members[0].id = 1;
		snprintf(so.members[0].host, sizeof so.members[0].host, "127.0.0.1");
		so.members[0].port = 0;
		so.n_members = 1;
		so.n = so.r = so.w = 1;
		so.log_level = (int)kv_log_get_level();
		/* The mount's memory budget (200 MiB) covers the embedded node too. */
		so.memtable_bytes = (size_t)8 << 20;
		so.cache_bytes = (size_t)8 << 20;
		if (o->cluster_name)
			snprintf(so.cluster, sizeof so.cluster, "%s", o->cluster_name);
		so.secret = secret;
		int e = mkdir_p(so.data_dir);
		if (e < 0) {
			snprintf(err, sizeof err, "cannot create %.300s: %s", so.data_dir, strerror(-e));
			goto out;
		}
		char serr[512];
		e = kv_server_start(&so, &server, serr, sizeof serr);
		if (e < 0) {
			snprintf(err, sizeof err, "embedded node: %.400s", serr);
			goto out;
		}
		snprintf(nodes, sizeof nodes, "127.0.0.1:%u", kv_server_port(server));
	}
	struct kv_client_config cc = { 0 };
	cc.nodes = o->cluster ? o->cluster : nodes;
	cc.cluster = o->cluster_name;
	cc.secret = &secret;
	cc.timeout_ms = (uint32_t)(o->timeout_s * 1000);
	cc.connect_timeout_ms = cc.timeout_ms < 1000 ? cc.timeout_ms : 1000;
	cc.r = (uint8_t)o->r;
	cc.w = (uint8_t)o->w;
	/* One per write-behind worker (FS_WB_THREADS, doc/fs.md §5), so that
	 * queued deletes run 16 at once and commit in larger groups. */
	cc.conns_per_node = 16;
	if (kv_client_new(&cc, &client) < 0) {
		snprintf(err, sizeof err, "--cluster: %s", kv_client_errmsg(NULL));
		goto out;
	}
	if (o->data)
		snprintf(staging, sizeof staging, "%s/staging", o->data);
	else if (getenv("XDG_RUNTIME_DIR"))
		snprintf(staging, sizeof staging, "%s/kvfs", getenv("XDG_RUNTIME_DIR"));
	else
		snprintf(staging, sizeof staging, "/tmp/kvfs-%u", (unsigned)getuid());
	if (mkdir_p(staging) < 0) {
		snprintf(err, sizeof err, "cannot create the staging area %.300s", staging);
		goto out;
	}
	if (fs_init(&fs, client, staging) < 0) {
		snprintf(err, sizeof err, "out of memory");
		goto out;
	}
	fs_ready = true;
	fs.r = (uint8_t)o->r;
	fs.w = (uint8_t)o->w;
	fs.timeout_ms = cc.timeout_ms;
	fs.attr_timeout = fs.entry_timeout = o->attr_timeout;
	fs.sync_unlink = o->sync_unlink;
	/* Directory renames an earlier mount left half done (DESIGN §7). */
	fs_finish_intents(&fs);
	fs_lease_start(&fs);

	char mopts[256];
	snprintf(mopts, sizeof mopts, "fsname=kvfs,subtype=kvfs,noatime%s%s",
		 o->default_permissions ? ",default_permissions" : "",
		 o->allow_other ? ",allow_other" : "");
	char *fargv[5];
	int fargc = 0;
	fargv[fargc++] = (char *)prog;
	fargv[fargc++] = "-o";
	fargv[fargc++] = mopts;
	if (o->debug)
		fargv[fargc++] = "-d";
	fargv[fargc] = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
	se = fuse_session_new(&args, &kv_fs_ops, sizeof kv_fs_ops, &fs);
	fuse_opt_free_args(&args);
	if (!se) {
		snprintf(err, sizeof err, "cannot start a FUSE session");
		goto out;
	}
	fs.se = se;
	if (fuse_set_signal_handlers(se) != 0) {
		snprintf(err, sizeof err, "cannot install signal handlers");
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(se, o->mountpoint) != 0) {
		snprintf(err, sizeof err, "cannot mount on %s", o->mountpoint);
		goto out;
	}
	mounted = true;
	struct probe pr = { o->mountpoint, !o->foreground };
	pthread_t probe;
	bool probing = pthread_create(&probe, NULL, probe_main, &pr) == 0;
	if (!probing)
		report(0, NULL);
	struct fuse_loop_config lc = { .clone_fd = 0, .max_idle_threads = 10 };
	int lr = fuse_session_loop_mt(se, &lc);
	if (probing)
		pthread_join(probe, NULL);
	/* Unmounting (fusermount3 -u, SIGTERM): write what is dirty first. */
	fs_flush_all(&fs);
	rc = lr == 0 ? 0 : 1;
out:
	if (err[0])
		report(1, err);
	if (mounted)
		fuse_session_unmount(se);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);
	if (fs_ready)
		fs_destroy(&fs);
	kv_client_free(client);
	if (server)
		kv_server_stop(server);
	kv_auth_secret_release(&secret);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	/*
	 * Chunk buffers are 4 MiB and come and go at every chunk (frames,
	 * cache slots, uploads). Served by mmap, each one costs a thousand page
	 * faults of zeroed pages (a fifth of the mount's CPU in a sequential
	 * read, doc/fs.md §4); so they come from the heap and are reused, with
	 * a fixed threshold (glibc's growing one is unbounded), trimming only
	 * above 64 MiB free, and two arenas: resident memory is bounded by the
	 * peak of live buffers (cache, read-ahead, uploads), not file size.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_ARENA_MAX, 2);
	o.default_permissions = true;
	o.timeout_s = 5;
	o.attr_timeout = 1;
	static const struct option longs[] = {
		{ "cluster", required_argument, NULL, 'c' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "cluster-name", required_argument, NULL, 'n' },
		{ "data", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "fdo:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'c': o.cluster = optarg; break;
		case 's': o.secret_file = optarg; break;
		case 'n': o.cluster_name = optarg; break;
		case 'D': o.data = optarg; break;
		case 'f': o.foreground = true; break;
		case 'd': o.debug = o.foreground = true; break;
		case 'o':
			if (parse_o(&o, optarg) < 0)
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("kvfs %s\n", KVFS_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	o.mountpoint = argv[optind];
	struct stat st;
	if (stat(o.mountpoint, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kvfs: %s is not a directory\n", o.mountpoint);
		return 1;
	}
	char datadir[PATH_MAX];
	if (!o.cluster) {
		/* The embedded node is N=R=W=1 (DESIGN §7 "Mounting"). */
		if (o.r > 1 || o.w > 1) {
			fprintf(stderr, "kvfs: the embedded node has N=1: r and w above 1 are "
					"refused (give --cluster to mount a cluster)\n");
			return 1;
		}
		if (!o.data) {
			const char *x = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
			if (x && *x)
				snprintf(datadir, sizeof datadir, "%s/kvfs", x);
			else if (home && *home)
				snprintf(datadir, sizeof datadir, "%s/.local/share/kvfs", home);
			else {
				fprintf(stderr, "kvfs: no $HOME or $XDG_DATA_HOME: give --data DIR\n");
				return 1;
			}
			o.data = datadir;
		}
	}
	if (o.foreground)
		return run(&o, argv[0]);

	/* Fork before any thread starts: the node and the client start threads. */
	int pfd[2];
	if (pipe(pfd) < 0) {
		perror("kvfs: pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("kvfs: fork");
		return 1;
	}
	if (pid == 0) {
		close(pfd[0]);
		setsid();
		status_fd = pfd[1];
		int rc = run(&o, argv[0]);
		_exit(rc);
	}
	close(pfd[1]);
	uint8_t status = 1;
	char msg[600];
	ssize_t n = read(pfd[0], &status, 1);
	if (n != 1) {
		int ws = 0;
		waitpid(pid, &ws, 0);
		fprintf(stderr, "kvfs: the mount process exited before mounting\n");
		return 1;
	}
	size_t got = 0;
	while (got < sizeof msg - 1 && (n = read(pfd[0], msg + got, sizeof msg - 1 - got)) > 0)
		got += (size_t)n;
	msg[got] = '\0';
	if (status != 0) {
		fprintf(stderr, "kvfs: %s\n", got ? msg : "mount failed");
		waitpid(pid, NULL, 0);
		return 1;
	}
	return 0;
}
