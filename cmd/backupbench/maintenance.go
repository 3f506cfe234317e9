package main

import (
	"backupstore/internal/bytesize"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc"

	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// maintConfig is every setting of the maintenance benchmark; defaults live in maintFlags.
type maintConfig struct {
	commonConfig
	objects     int
	objectSize  bytesize.Flag
	gcKeys      int
	streams     int
	perKey      string
	budget      bytesize.Flag
	partSize    bytesize.Flag
	workers     []int // parsed perKey
	repackFiles int
	repackSize  bytesize.Flag
}

func maintFlags(fs *flag.FlagSet, c *maintConfig) {
	c.objectSize, c.budget, c.partSize, c.repackSize = 1<<10, 512<<20, storage.DefaultPartSize, 8<<10
	commonFlags(fs, &c.commonConfig, 30*time.Minute)
	fs.IntVar(&c.objects, "objects", 10000, "file objects of the deleted backup, and keys of each per-key DeleteObject baseline")
	fs.Var(&c.objectSize, "object-size", "size of each of those objects")
	fs.IntVar(&c.gcKeys, "gc-keys", 100000, "stray keys under the tenant prefix for garbage collection")
	fs.IntVar(&c.streams, "streams", 16, "concurrent UploadFile streams and PutObject goroutines that create the objects (not measured)")
	fs.StringVar(&c.perKey, "perkey-workers", "1,16", "goroutines of the per-key DeleteObject baselines, comma-separated; the target applies to the first")
	fs.Var(&c.budget, "memory-budget", "backupd --memory-budget")
	fs.Var(&c.partSize, "part-size", "backupd --part-size")
	fs.IntVar(&c.repackFiles, "repack-files", 20000, "small files of the backup whose packs are left a tenth live for the repack stage (0 skips it)")
	fs.Var(&c.repackSize, "repack-file-size", "size of each of those files (at most the pack threshold, 1 MiB)")
}

func (c *maintConfig) validate() error {
	errs := []error{c.commonConfig.validate()}
	if c.repackFiles < 0 || (c.repackFiles > 0 && c.repackFiles < 10) || c.repackSize < 1 || c.repackSize > 1<<20 {
		errs = append(errs, errors.New("--repack-files must be 0 or at least 10, --repack-file-size in [1, 1MiB]"))
	}
	if c.objects < 1 || c.gcKeys < 1 || c.streams < 1 || c.objectSize < 1 || c.objectSize > 4<<20 {
		errs = append(errs, errors.New("--objects, --gc-keys and --streams must be ≥ 1, --object-size in [1, 4MiB]"))
	}
	c.workers = nil
	for f := range strings.SplitSeq(c.perKey, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 1 || w > 256 {
			errs = append(errs, fmt.Errorf("--perkey-workers %q: want numbers in [1, 256], comma-separated", c.perKey))
			break
		}
		c.workers = append(c.workers, w)
	}
	return errors.Join(errs...)
}

// maintBench is one run of the maintenance benchmark.
type maintBench struct {
	*harness
	c      maintConfig
	proxy  *s3Proxy
	d      *daemon
	direct *storage.S3 // straight to the gateway: the baselines' client
}

func maintenanceCommand(ctx context.Context, args []string, stderr io.Writer) (*report, string, error) {
	var c maintConfig
	if err := parseCommand("maintenance", args, stderr, &c, maintFlags); err != nil {
		return nil, "", err
	}
	h := newHarness("maintenance", commandLine("maintenance", args), c.commonConfig, stderr, map[string]any{
		"objects": c.objects, "object_size": c.objectSize.String(), "gc_keys": c.gcKeys, "streams": c.streams,
		"perkey_workers": c.workers, "memory_budget": c.budget.String(), "part_size": c.partSize.String(), "gc_grace": "1s",
		"repack_files": c.repackFiles, "repack_file_size": c.repackSize.String()})
	b := &maintBench{harness: h, c: c}
	err := h.execute(ctx, b.run)
	return h.rep, c.output, err
}

func (b *maintBench) run(ctx context.Context) error {
	err := b.setupEnv(ctx, envOptions{budget: b.c.budget.String(), partSize: b.c.partSize.String()})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if b.proxy, err = b.countingProxy(); err != nil {
		return err
	}
	if b.direct, err = storage.NewS3(storage.S3Config{Region: b.gw.region, Bucket: b.bucket, AccessKeyID: b.gw.key,
		SecretAccessKey: b.gw.secret, Endpoint: b.gw.endpoint, PathStyle: true}); err != nil {
		return err
	}
	// No scheduled cleanup: RunCleanup is called when the garbage is in place.
	if b.d, err = startDaemon(ctx, b.dcfg, "backupd-maintenance", "--gc-grace", "1s", "--cleanup-interval", "0"); err != nil {
		return err
	}
	b.onCleanup(b.d.stop)
	b.cpu.set("backupd", b.d.proc.pid())
	if _, err := b.registerStorage(ctx, b.d, "counted", b.proxy.endpoint, "", true); err != nil {
		return err
	}
	if err := b.deletion(ctx); err != nil {
		return errors.Join(err, b.d.alive())
	}
	if err := b.garbage(ctx); err != nil {
		return errors.Join(err, b.d.alive())
	}
	if b.c.repackFiles > 0 {
		if err := b.repack(ctx); err != nil {
			return errors.Join(err, b.d.alive())
		}
	}
	return nil
}

// countKeys counts the keys under prefix, straight from the gateway.
func (b *maintBench) countKeys(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := b.direct.List(ctx, prefix, func(storage.ObjectInfo) error { n++; return nil })
	return n, err
}

// deletion runs stage 1: DeleteBackup of a backup of --objects files against one DeleteObject
// call per key for the same number of objects of the same size in the same bucket.
func (b *maintBench) deletion(ctx context.Context) error {
	n, size := b.c.objects, int(b.c.objectSize)
	fs := newFileSet(n, size)
	id, err := createBackup(ctx, b.d, "delete")
	if err != nil {
		return err
	}
	out, err := uploadFiles(ctx, b.d, id, fs, b.c.streams, false, "del")
	if err != nil {
		return err
	}
	if out.deduplicated != 0 || out.bytesStored != int64(n*size) {
		return fmt.Errorf("UploadFile: %d deduplicated, %d bytes stored; want 0 and %d", out.deduplicated, out.bytesStored, n*size)
	}
	if err := commitBackup(ctx, b.d, id); err != nil {
		return err
	}
	b.logf("backup %s: %d files of %d bytes stored and committed (%.0f files/s)", id, n, size, float64(n)/out.dur.Seconds())
	orgPrefix := "dev/" + benchOrg + "/"
	before, err := b.countKeys(ctx, orgPrefix)
	if err != nil {
		return err
	}

	perKey := func(workers int) error {
		prefix := fmt.Sprintf("perkey-%d", workers)
		if _, err := putFiles(ctx, b.direct, prefix, fs, b.c.streams); err != nil {
			return fmt.Errorf("PutObject: %w", err)
		}
		s0 := b.cpu.snap()
		start := time.Now()
		err := parallel(ctx, n, workers, func(ctx context.Context, i int) error {
			return b.direct.DeleteObject(ctx, fmt.Sprintf("%s/%05d.bin", prefix, i))
		})
		dur := time.Since(start)
		if err != nil {
			return fmt.Errorf("DeleteObject: %w", err)
		}
		u := b.cpu.snap().since(s0, nil)
		left, err := b.countKeys(ctx, prefix+"/")
		if err != nil {
			return err
		}
		if left != 0 {
			return fmt.Errorf("per-key DeleteObject left %d of %d keys", left, n)
		}
		name := fmt.Sprintf("perkey_%d", workers)
		rate := float64(n) / dur.Seconds()
		b.rep.Runs[name+"_objects_per_s"] = []float64{rate}
		b.rep.CPU[name] = u
		b.logf("per-key DeleteObject, %s: %d objects in %s, %.0f objects/s (%s)", plural(workers, "goroutine"), n, dur.Round(time.Millisecond), rate, u)
		return nil
	}
	deleteBackup := func() error {
		mark := b.proxy.mark()
		sampler := b.db.sample(20 * time.Millisecond)
		s0 := b.cpu.snap()
		start := time.Now()
		resp, err := b.d.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: id})
		dur := time.Since(start)
		sql := sampler.finish(3)
		if err != nil {
			return fmt.Errorf("DeleteBackup: %w", err)
		}
		u := b.cpu.snap().since(s0, nil)
		reqs := b.proxy.since(mark)
		if err := failed(reqs); err != nil {
			return err
		}
		left, err := b.countKeys(ctx, orgPrefix)
		if err != nil {
			return err
		}
		objs := resp.GetObjectsDeleted()
		rate := float64(objs) / dur.Seconds()
		b.rep.Runs["delete_backup_objects_per_s"] = []float64{rate}
		b.rep.CPU["delete_backup"] = u
		del := sum(reqs, func(r proxyReq) bool { return r.Op == "delete-objects" })
		b.logf("DeleteBackup: %d objects (%d bytes) in %s, %.0f objects/s; S3: %s; %d keys left under %s (of %d); %s; %s",
			objs, resp.GetBytesFreed(), dur.Round(time.Millisecond), rate, byOp(reqs), left, orgPrefix, before, u, sql)
		if left != 0 {
			return fmt.Errorf("DeleteBackup left %d of %d keys under %s", left, before, orgPrefix)
		}
		b.rep.addValue("1", fmt.Sprintf("DeleteBackup (MaintenanceService) of a committed backup of %d files of %s: %d objects deleted (files + manifest)",
			n, b.c.objectSize.String(), objs), rate, "objects/s", "",
			fmt.Sprintf("%s wall; S3 (through the proxy): %s — %.0f%% of the wall time in DeleteObjects calls, the rest catalog (mark, ExclusiveObjects, PurgeBackupRows) and the lock; %s; %s",
				dur.Round(time.Millisecond), byOp(reqs), 100*del.Dur.Seconds()/dur.Seconds(), u, sql))
		return nil
	}
	steps := []func() error{func() error { return perKey(b.c.workers[0]) }, deleteBackup}
	for _, w := range b.c.workers[1:] {
		steps = append(steps, func() error { return perKey(w) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	db := b.rep.Runs["delete_backup_objects_per_s"][0]
	for i, w := range b.c.workers {
		name := fmt.Sprintf("perkey_%d", w)
		pk := b.rep.Runs[name+"_objects_per_s"][0]
		what := fmt.Sprintf("per-key DeleteObject loop, %s, %d objects of %s (storage package, straight to versitygw)", plural(w, "goroutine"), n, b.c.objectSize.String())
		b.rep.addValue("1", what, pk, "objects/s", "", b.rep.CPU[name].String())
		label, target := "DeleteBackup ÷ per-key DeleteObject with "+plural(w, "goroutine"), ""
		switch {
		case i > 0:
			label += " (information)"
		case w == 1:
			label += ", one call at a time each (backupd sends its DeleteObjects batches one after the other)"
			target = "≥ 10"
		default:
			target = "≥ 10"
		}
		b.rep.addRatio("1", label, db, "objects/s", div(db, pk), target, "")
	}
	return nil
}

// garbage runs stage 2: --gc-keys stray keys under the tenant prefix, older than the grace
// period (1 s), collected by RunCleanup.
func (b *maintBench) garbage(ctx context.Context) error {
	g := b.c.gcKeys
	prefix := "dev/" + benchOrg + "/files/"
	keys := make([]string, g)
	for i := range keys {
		keys[i] = prefix + "obj-" + uuid.NewString() // what an upload that crashed before its catalog row leaves
	}
	body := []byte("stray bytes\n")
	s0 := b.cpu.snap()
	start := time.Now()
	err := parallel(ctx, g, b.c.streams, func(ctx context.Context, i int) error {
		_, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(keys[i]), Body: bytes.NewReader(body)})
		return err
	})
	putDur := time.Since(start)
	if err != nil {
		return fmt.Errorf("PutObject: %w", err)
	}
	putRate := float64(g) / putDur.Seconds()
	b.logf("%d stray keys put in %s (%.0f/s; %s)", g, putDur.Round(time.Millisecond), putRate, b.cpu.snap().since(s0, nil))
	select { // past the 1 s grace, with LastModified's whole seconds
	case <-time.After(2500 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	listed, err := b.countKeys(ctx, "dev/")
	if err != nil {
		return err
	}

	mark := b.proxy.mark()
	sampler := b.db.sample(50 * time.Millisecond)
	s0 = b.cpu.snap()
	start = time.Now()
	resp, err := b.d.maint.RunCleanup(ctx, &pb.RunCleanupRequest{}, grpc.MaxCallRecvMsgSize(64<<20))
	dur := time.Since(start)
	sql := sampler.finish(2)
	if err != nil {
		return fmt.Errorf("RunCleanup: %w", err)
	}
	u := b.cpu.snap().since(s0, nil)
	reqs := b.proxy.since(mark)
	if err := failed(reqs); err != nil {
		return err
	}
	left, err := b.countKeys(ctx, "dev/")
	if err != nil {
		return err
	}
	rate := float64(listed) / dur.Seconds()
	b.rep.Runs["gc_keys_per_s"] = []float64{rate}
	b.rep.CPU["gc"] = u
	list := sum(reqs, func(r proxyReq) bool { return r.Op == "list" })
	del := sum(reqs, func(r proxyReq) bool { return r.Op == "delete-objects" })
	b.logf("RunCleanup: %s, garbage_deleted %d, skipped %d, objects_deleted %d; S3: %s; %d keys left under dev/; %s; %s",
		dur.Round(time.Millisecond), resp.GetGarbageDeleted(), resp.GetSkipped(), resp.GetObjectsDeleted(), byOp(reqs), left, u, sql)
	b.rep.addValue("2", fmt.Sprintf("stray keys put (information): PutObject of %d bytes, %d goroutines", len(body), b.c.streams), putRate, "keys/s", "", "")
	b.rep.addValue("2", fmt.Sprintf("RunCleanup (backupd --gc-grace 1s) over %d keys under the tenant prefix (%d stray): keys listed and checked per second, keys ÷ cleanup wall time",
		listed, g), rate, "keys/s", "",
		fmt.Sprintf("%s wall; S3 (through the proxy): %s — list %.0f%%, DeleteObjects %.0f%% of the wall time; %s",
			dur.Round(time.Millisecond), byOp(reqs), 100*list.Dur.Seconds()/dur.Seconds(), 100*del.Dur.Seconds()/dur.Seconds(), u))
	b.rep.addValue("2", "RunCleanupResponse.garbage_deleted", float64(resp.GetGarbageDeleted()), "keys", fmt.Sprintf("= %d", g),
		fmt.Sprintf("skipped %d", resp.GetSkipped()))
	b.rep.addValue("2", "keys left under the tenant prefix after the cleanup (listed straight from versitygw)", float64(left), "keys", "= 0", "")
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
