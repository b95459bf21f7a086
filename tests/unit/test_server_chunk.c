/*
 * test_server_chunk.c - chunks and gc end to end (doc/node.md "Chunks and
 * reclamation"): three real servers (node/server.h) in this process on
 * 127.0.0.1, each in its own temp directory, driven through the real client
 * library (kv_client_chunk_put/get/touch, kv_client_put, kv_client_gc).
 * Every server is stopped and every directory removed on the paths the test
 * controls; every call is bounded by the client's deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "port_fx.h"

#include "client/client.h"
#include "fuse/chunk.h"
#include "fuse/object.h"
#include "lsm/lsm.h"
#include "node/node.h"
#include "node/server.h"
#include "ring/keys.h"
#include "proto/auth.h"
#include "util/checksum.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

#define NNODES 3

struct cluster {
	char dir[256];
	uint16_t ports[NNODES];
	struct kv_server *srv[NNODES];
	char nodes[NNODES][32];
};

static uint16_t free_port(void)
{
	uint16_t port = kv_test_free_port();
	assert_int_not_equal(port, 0);
	return port;
}

static void node_start(struct cluster *cl, int i)
{
	struct kv_server_options *o = malloc(sizeof *o);
	assert_non_null(o);
	kv_server_options_default(o);
	o->node_id = (uint32_t)(i + 1);
	o->listen_port = cl->ports[i];
	snprintf(o->data_dir, sizeof o->data_dir, "%s/n%d", cl->dir, i + 1);
	snprintf(o->cluster, sizeof o->cluster, "test");
	assert_int_equal(kv_auth_secret_set(&o->secret, kv_slice_str("s3cret")), 0);
	for (int k = 0; k < NNODES; k++) {
		o->members[k].id = (uint32_t)(k + 1);
		snprintf(o->members[k].host, sizeof o->members[k].host, "127.0.0.1");
		o->members[k].port = cl->ports[k];
	}
	o->n_members = NNODES;
	o->timeout_ms = 3000;
	o->connect_timeout_ms = 500;
	o->memtable_bytes = 1 << 20;
	o->cache_bytes = 1 << 20;
	o->log_level = KV_LOG_ERROR;
	char err[256];
	int rc = kv_server_start(o, &cl->srv[i], err, sizeof err);
	if (rc != 0)
		print_message("node %d: %s\n", i + 1, err);
	assert_int_equal(rc, 0);
	free(o);
}

static void cluster_down(struct cluster *cl)
{
	for (int i = 0; i < NNODES; i++)
		if (cl->srv[i] != NULL)
			assert_int_equal(kv_server_stop(cl->srv[i]), 0);
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", cl->dir);
	assert_int_equal(system(cmd), 0);
}

static struct kv_client *client_of(struct cluster *cl, int i)
{
	struct kv_auth_secret sec;
	assert_int_equal(kv_auth_secret_set(&sec, kv_slice_str("s3cret")), 0);
	struct kv_client_config cfg = { 0 };
	cfg.nodes = cl->nodes[i];
	cfg.cluster = "test";
	cfg.secret = &sec;
	cfg.timeout_ms = 5000;
	struct kv_client *c = NULL;
	assert_int_equal(kv_client_new(&cfg, &c), 0);
	kv_auth_secret_release(&sec);
	return c;
}

/*
 * Waits (at most 10 s) until every running node reaches every other one.
 * kv_server_start() returns once a node listens; its greetings to its
 * peers, and a peer's end of the backoff towards a node that was down
 * (doc/node.md), complete a moment later. Until then a coordinator fails
 * a replica write to that peer at once, so a put answered at W would leave
 * that replica without the chunk. A read at R = 3 (of a key nobody writes)
 * through node i succeeds only when node i reached both others.
 */
static void cluster_wait_connected(struct cluster *cl)
{
	struct kv_client *c[NNODES];
	for (int i = 0; i < NNODES; i++)
		c[i] = cl->srv[i] != NULL ? client_of(cl, i) : NULL;
	for (int i = 0; i < NNODES; i++) {
		if (c[i] == NULL)
			continue;
		struct kv_client_call call = KV_CLIENT_CALL_INIT;
		call.r = NNODES;
		call.node = 0; /* c[i] knows only node i */
		call.timeout_ms = 1000;
		int rc = -1;
		for (int attempt = 0; rc != 0 && attempt < 100; attempt++) {
			struct kv_dvv set;
			kv_dvv_init(&set);
			rc = kv_client_get(c[i], kv_slice_str("/.test-connected"), &call, &set);
			kv_dvv_release(&set);
			if (rc != 0)
				usleep(100 * 1000);
		}
		if (rc != 0)
			print_message("node %d cannot reach its peers: %s\n", i + 1,
				      kv_client_errmsg(c[i]));
		assert_int_equal(rc, 0);
	}
	for (int i = 0; i < NNODES; i++)
		kv_client_free(c[i]);
}

/* A temporary directory and a free loopback port for each node; none started. */
static void cluster_prepare(struct cluster *cl)
{
	memset(cl, 0, sizeof *cl);
	snprintf(cl->dir, sizeof cl->dir, "/tmp/kvfs-test-chunk-XXXXXX"); /* mkdtemp's template */
	assert_non_null(mkdtemp(cl->dir));
	for (int i = 0; i < NNODES; i++) {
		cl->ports[i] = free_port();
		snprintf(cl->nodes[i], sizeof cl->nodes[i], "127.0.0.1:%u", cl->ports[i]);
	}
}

/* Starts every node and waits until each reaches every other. */
static void cluster_start(struct cluster *cl)
{
	for (int i = 0; i < NNODES; i++)
		node_start(cl, i);
	cluster_wait_connected(cl);
}


static void make_chunk(uint8_t *data, size_t n, unsigned seed, uint8_t key[KV_FS_CHUNK_KEY_LEN],
		       uint8_t hash[KV_FS_HASH_LEN])
{
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 9));
	kv_fs_hash(data, n, hash);
	kv_fs_chunk_key(hash, key);
}

/* Puts a chunked file @path whose single chunk is @hash (of @size bytes). */
static void put_file(struct kv_client *c, const char *path, const uint8_t *hash, uint32_t size)
{
	struct kv_fs_manifest man;
	kv_fs_manifest_init(&man, KV_FS_CHUNK_SHIFT);
	assert_int_equal(kv_fs_manifest_append(&man, hash, size), 0);
	struct kv_buf body = KV_BUF_INIT, meta = KV_BUF_INIT;
	assert_int_equal(kv_fs_manifest_encode(&man, &body), 0);
	struct kv_fs_meta fm;
	memset(&fm, 0, sizeof fm);
	fm.type = KV_FS_FILE;
	fm.mode = 0644;
	kv_fs_meta_set_body(&fm, KV_FS_STORE_CHUNKED, kv_buf_slice(&body), size);
	assert_int_equal(kv_fs_meta_encode(&fm, &meta), 0);
	assert_int_equal(kv_client_put(c, kv_slice_str(path), NULL, kv_buf_slice(&meta),
				       kv_buf_slice(&body), NULL, NULL, NULL),
			 0);
	kv_buf_release(&body);
	kv_buf_release(&meta);
	kv_fs_manifest_release(&man);
}

static void test_server_chunk__put_get_through_each_node_then_gc(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_prepare(&cl);
	cluster_start(&cl);
	struct kv_client *c[NNODES];
	for (int i = 0; i < NNODES; i++)
		c[i] = client_of(&cl, i);

	/* A full-size chunk, a small one, and garbage. */
	size_t sizes[3] = { KV_FS_CHUNK_SIZE, 1000, 5000 };
	uint8_t *data[3];
	uint8_t key[3][KV_FS_CHUNK_KEY_LEN], hash[3][KV_FS_HASH_LEN];
	for (int k = 0; k < 3; k++) {
		data[k] = malloc(sizes[k]);
		assert_non_null(data[k]);
		make_chunk(data[k], sizes[k], (unsigned)k + 1, key[k], hash[k]);
		struct kv_slice ks = kv_slice_make(key[k], KV_FS_CHUNK_KEY_LEN);
		int rc = kv_client_chunk_put(c[k % NNODES], ks, kv_slice_make(data[k], sizes[k]), NULL);
		if (rc < 0)
			print_message("chunk_put: %s\n", kv_client_errmsg(c[k % NNODES]));
		assert_int_equal(rc, 0);
		/* A second upload is put-if-absent: it only refreshes the age. */
		assert_int_equal(kv_client_chunk_put(c[(k + 1) % NNODES], ks,
						     kv_slice_make(data[k], sizes[k]), NULL),
				 1);
		struct kv_buf got = KV_BUF_INIT;
		for (int i = 0; i < NNODES; i++) {
			assert_int_equal(kv_client_chunk_get(c[i], ks, NULL, &got), 0);
			assert_int_equal(got.n, sizes[k]);
			assert_memory_equal(got.p, data[k], sizes[k]);
		}
		kv_buf_release(&got);
	}
	/* Bad data, ordinary writes and reads in the chunk space: refused. */
	data[1][0] ^= 1;
	assert_int_equal(kv_client_chunk_put(c[0], kv_slice_make(key[1], KV_FS_CHUNK_KEY_LEN),
					     kv_slice_make(data[1], sizes[1]), NULL),
			 KV_EINVAL);
	data[1][0] ^= 1;
	assert_int_equal(kv_client_put(c[0], kv_slice_make(key[1], KV_FS_CHUNK_KEY_LEN), NULL,
				       kv_slice_make(NULL, 0), kv_slice_str("x"), NULL, NULL, NULL),
			 KV_EINVAL);
	assert_non_null(strstr(kv_client_errmsg(c[0]), "reserved key space"));
	struct kv_buf none = KV_BUF_INIT;
	uint8_t absent[KV_FS_CHUNK_KEY_LEN];
	memcpy(absent, key[2], sizeof absent);
	absent[5] ^= 0xff;
	assert_int_equal(kv_client_chunk_get(c[1], kv_slice_make(absent, sizeof absent), NULL, &none),
			 KV_ENOTFOUND);
	/* A lease on the garbage chunk for a moment. */
	struct kv_slice touch[1] = { kv_slice_make(key[2], KV_FS_CHUNK_KEY_LEN) };
	assert_int_equal(kv_client_chunk_touch(c[2], touch, 1, NULL), 3);

	put_file(c[0], "/big", hash[0], (uint32_t)sizes[0]);
	put_file(c[1], "/small", hash[1], (uint32_t)sizes[1]);

	/* Grace 1 hour: nothing goes. */
	struct kv_client_gc_result r;
	int rc = kv_client_gc(c[1], -1, NULL, &r);
	if (rc < 0)
		print_message("gc: %s\n", kv_client_errmsg(c[1]));
	assert_int_equal(rc, 0);
	assert_int_equal(r.nodes, 3);
	assert_int_equal(r.swept, 0);
	assert_true(r.refs >= 2 * 3);
	/* Grace 1 s, after 1.5 s: the garbage goes from its three replicas. */
	usleep(1500 * 1000);
	assert_int_equal(kv_client_gc(c[2], 1, NULL, &r), 0);
	assert_int_equal(r.swept, 3);
	assert_int_equal(r.bytes, 3 * sizes[2]);
	assert_int_equal(kv_client_chunk_get(c[0], touch[0], NULL, &none), KV_ENOTFOUND);
	struct kv_buf got = KV_BUF_INIT;
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < NNODES; i++) {
			assert_int_equal(kv_client_chunk_get(c[i], kv_slice_make(key[k], KV_FS_CHUNK_KEY_LEN),
							     NULL, &got),
					 0);
			assert_memory_equal(got.p, data[k], sizes[k]);
		}
	/* A member down: the gc fails and says so; nothing is swept. */
	assert_int_equal(kv_server_stop(cl.srv[2]), 0);
	cl.srv[2] = NULL;
	rc = kv_client_gc(c[0], 0, NULL, &r);
	assert_true(rc < 0);
	assert_non_null(strstr(kv_client_errmsg(c[0]), "nothing was swept"));
	for (int k = 0; k < 2; k++)
		assert_int_equal(kv_client_chunk_get(c[0], kv_slice_make(key[k], KV_FS_CHUNK_KEY_LEN),
						     NULL, &got),
				 0);
	kv_buf_release(&got);
	kv_buf_release(&none);
	for (int i = 0; i < NNODES; i++)
		kv_client_free(c[i]);
	for (int k = 0; k < 3; k++)
		free(data[k]);
	cluster_down(&cl);
}

/* DIR/nI/chunks/XX/<hex> of @hash on node @i (doc/storage-format.md "Chunk store"). */
static void body_file(const struct cluster *cl, int i, const uint8_t *hash, char *dst, size_t cap)
{
	int k = snprintf(dst, cap, "%s/n%d/chunks/%02x/", cl->dir, i + 1, hash[0]);
	for (int b = 0; b < KV_FS_HASH_LEN; b++)
		k += snprintf(dst + k, cap - (size_t)k, "%02x", hash[b]);
}

/* Writes a body file by hand: "KVC2" ‖ le32 n ‖ le64 XXH3-64 ‖ bytes, or
 * with @kvck the old form "KVCK" ‖ le32 n ‖ bytes (doc/storage-format.md). */
static void write_body_file(const char *path, const uint8_t *data, size_t n, bool kvck)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	struct kv_buf hdr = KV_BUF_INIT;
	assert_int_equal(kv_buf_append(&hdr, kvck ? "KVCK" : "KVC2", 4), 0);
	assert_int_equal(kv_buf_append_le32(&hdr, (uint32_t)n), 0);
	if (!kvck)
		assert_int_equal(kv_buf_append_le64(&hdr, kv_hash64(data, n)), 0);
	assert_int_equal(fwrite(hdr.p, 1, hdr.n, f), hdr.n);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	kv_buf_release(&hdr);
}

/*
 * Bodies are files outside the engine: one per replica; a damaged one is
 * answered by another replica; at a restart, temp files go, a body without
 * a record is adopted (and later swept as garbage), a body that fails its
 * hash is removed.
 */
static void test_server_chunk__bodies_are_files_and_orphans_are_adopted(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_prepare(&cl);
	cluster_start(&cl);
	struct kv_client *c = client_of(&cl, 0);
	/* Puts at W = N: answered once every replica holds the body and its
	 * record, so no replica is still writing when the test looks at the
	 * files or stops a node. */
	struct kv_client_call all = KV_CLIENT_CALL_INIT;
	all.w = NNODES;
	size_t n = 3000;
	uint8_t *data = malloc(n), *orphan = malloc(n), *old = malloc(n);
	assert_non_null(data);
	assert_non_null(orphan);
	assert_non_null(old);
	uint8_t key[KV_FS_CHUNK_KEY_LEN], hash[KV_FS_HASH_LEN];
	uint8_t okey[KV_FS_CHUNK_KEY_LEN], ohash[KV_FS_HASH_LEN];
	uint8_t oldkey[KV_FS_CHUNK_KEY_LEN], oldhash[KV_FS_HASH_LEN];
	make_chunk(data, n, 41, key, hash);
	make_chunk(orphan, n, 42, okey, ohash);
	make_chunk(old, n, 43, oldkey, oldhash);
	struct kv_slice ks = kv_slice_make(key, sizeof key), oks = kv_slice_make(okey, sizeof okey);
	struct kv_slice oldks = kv_slice_make(oldkey, sizeof oldkey);
	assert_int_equal(kv_client_chunk_put(c, ks, kv_slice_make(data, n), &all), 0);
	char path[512], tmp[600];
	for (int i = 0; i < NNODES; i++) {
		body_file(&cl, i, hash, path, sizeof path);
		assert_int_equal(access(path, R_OK), 0);
	}
	/* Node 1's copy truncated: node 1 reads itself first, then another. */
	body_file(&cl, 0, hash, path, sizeof path);
	assert_int_equal(truncate(path, 100), 0);
	struct kv_buf got = KV_BUF_INIT;
	assert_int_equal(kv_client_chunk_get(c, ks, NULL, &got), 0);
	assert_int_equal(got.n, n);
	assert_memory_equal(got.p, data, n);

	/* Nodes 2 and 3 stopped, as if they had crashed (RUNNING left behind).
	 * Node 2 gets two bodies without a record (one in the old "KVCK" form),
	 * a damaged one and a temp file; node 3 loses the body of the first
	 * chunk, not its record. */
	for (int i = 1; i < 3; i++) {
		assert_int_equal(kv_server_stop(cl.srv[i]), 0);
		cl.srv[i] = NULL;
		snprintf(path, sizeof path, "%s/n%d/RUNNING", cl.dir, i + 1);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(fclose(f), 0);
	}
	body_file(&cl, 2, hash, path, sizeof path);
	assert_int_equal(unlink(path), 0);
	body_file(&cl, 1, ohash, path, sizeof path);
	write_body_file(path, orphan, n, false);
	snprintf(tmp, sizeof tmp, "%s.3.tmp", path);
	write_body_file(tmp, orphan, 10, false);
	char oldpath[512];
	body_file(&cl, 1, oldhash, oldpath, sizeof oldpath);
	write_body_file(oldpath, old, n, true);
	/* Damaged: its bytes do not hash to its name (the checksum is right:
	 * adoption checks the hash, whichever the form). */
	uint8_t bad[KV_FS_HASH_LEN];
	memcpy(bad, ohash, sizeof bad);
	bad[31] ^= 1;
	char badpath[512];
	body_file(&cl, 1, bad, badpath, sizeof badpath);
	write_body_file(badpath, orphan, n, false);
	node_start(&cl, 1);
	node_start(&cl, 2);
	cluster_wait_connected(&cl);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(access(badpath, F_OK), -1);
	assert_int_equal(access(path, R_OK), 0);
	assert_int_equal(access(oldpath, R_OK), 0);
	struct kv_client *c2 = client_of(&cl, 1);
	assert_int_equal(kv_client_chunk_get(c2, oks, NULL, &got), 0);
	assert_memory_equal(got.p, orphan, n);
	assert_int_equal(kv_client_chunk_get(c2, oldks, NULL, &got), 0);
	assert_memory_equal(got.p, old, n);
	/* Node 3 dropped the record of its lost body: the next store rewrites it
	 * there (at W = N the reply waits for it, and says it was written). */
	assert_int_equal(kv_client_chunk_put(c, ks, kv_slice_make(data, n), &all), 0);
	body_file(&cl, 2, hash, tmp, sizeof tmp);
	assert_int_equal(access(tmp, R_OK), 0);

	/* None is referenced: a gc with a 1 s grace sweeps all, files too
	 * (the damaged copy's record names it: swept with the others). */
	usleep(1500 * 1000);
	struct kv_client_gc_result r;
	assert_int_equal(kv_client_gc(c2, 1, NULL, &r), 0);
	assert_int_equal(r.swept, 5);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(access(oldpath, F_OK), -1);
	for (int i = 0; i < NNODES; i++) {
		body_file(&cl, i, hash, path, sizeof path);
		assert_int_equal(access(path, F_OK), -1);
	}
	assert_int_equal(kv_client_chunk_get(c, ks, NULL, &got), KV_ENOTFOUND);
	kv_buf_release(&got);
	kv_client_free(c);
	kv_client_free(c2);
	free(data);
	free(orphan);
	free(old);
	cluster_down(&cl);
}

/*
 * A data directory from before the chunk store keeps bodies in the engine:
 * they are still read, re-putting them finds them, and a sweep deletes them
 * from the engine.
 */
static void test_server_chunk__bodies_in_the_engine_still_work(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_prepare(&cl);
	size_t n = 2000;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	uint8_t key[KV_FS_CHUNK_KEY_LEN], hash[KV_FS_HASH_LEN];
	make_chunk(data, n, 51, key, hash);
	struct kv_slice ks = kv_slice_make(key, sizeof key);
	for (int i = 0; i < NNODES; i++) {
		node_start(&cl, i); /* makes the data directory */
		assert_int_equal(kv_server_stop(cl.srv[i]), 0);
		cl.srv[i] = NULL;
		char db[512];
		snprintf(db, sizeof db, "%s/n%d/db", cl.dir, i + 1);
		struct kv_lsm_options lo;
		kv_lsm_options_init(&lo);
		struct kv_lsm *lsm = NULL;
		assert_int_equal(kv_lsm_open(db, &lo, &lsm, NULL), 0);
		struct kv_buf skey = KV_BUF_INIT, body = KV_BUF_INIT, rkey = KV_BUF_INIT,
			      rval = KV_BUF_INIT;
		assert_int_equal(kv_skey_encode(&skey, ks), 0);
		assert_int_equal(kv_buf_append(&body, "KVCK", 4), 0);
		assert_int_equal(kv_buf_append_le32(&body, (uint32_t)n), 0);
		assert_int_equal(kv_buf_append(&body, data, n), 0);
		assert_int_equal(kv_node_chunk_record_encode(hash, (uint32_t)n,
							     (int64_t)kv_wall_ns(), &rkey, &rval),
				 0);
		assert_int_equal(kv_lsm_put(lsm, kv_buf_slice(&skey), kv_buf_slice(&body)), 0);
		assert_int_equal(kv_lsm_put(lsm, kv_buf_slice(&rkey), kv_buf_slice(&rval)), 0);
		assert_int_equal(kv_lsm_close(lsm), 0);
		kv_buf_release(&skey);
		kv_buf_release(&body);
		kv_buf_release(&rkey);
		kv_buf_release(&rval);
	}
	for (int i = 0; i < NNODES; i++)
		node_start(&cl, i);
	struct kv_client *c = client_of(&cl, 0);
	struct kv_buf got = KV_BUF_INIT;
	assert_int_equal(kv_client_chunk_get(c, ks, NULL, &got), 0);
	assert_int_equal(got.n, n);
	assert_memory_equal(got.p, data, n);
	assert_int_equal(kv_client_chunk_put(c, ks, kv_slice_make(data, n), NULL), 1);
	char path[512];
	body_file(&cl, 0, hash, path, sizeof path);
	assert_int_equal(access(path, F_OK), -1); /* found in the engine: no file */
	usleep(1500 * 1000);
	struct kv_client_gc_result r;
	assert_int_equal(kv_client_gc(c, 1, NULL, &r), 0);
	assert_int_equal(r.swept, 3);
	assert_int_equal(kv_client_chunk_get(c, ks, NULL, &got), KV_ENOTFOUND);
	kv_buf_release(&got);
	kv_client_free(c);
	free(data);
	cluster_down(&cl);
}

static int setup(void **state)
{
	(void)state;
	return kv_auth_init() == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_chunk__put_get_through_each_node_then_gc),
		cmocka_unit_test(test_server_chunk__bodies_are_files_and_orphans_are_adopted),
		cmocka_unit_test(test_server_chunk__bodies_in_the_engine_still_work),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
