package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"backupstore/csvscan/csvgen"
	"backupstore/internal/bytesize"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// scaleConfig is every setting of the scale benchmark (issue 12 §4); defaults live in scaleFlags.
type scaleConfig struct {
	commonConfig
	files        int
	accounts     int
	bodySize     int
	streams      int
	backups      int
	copyBudget   time.Duration
	settleMax    time.Duration
	samples      int
	dedupFiles   int
	dedupStreams int
	hold         string
	budget       bytesize.Flag
	partSize     bytesize.Flag
}

func scaleFlags(fs *flag.FlagSet, c *scaleConfig) {
	c.budget, c.partSize = 512<<20, storage.DefaultPartSize
	commonFlags(fs, &c.commonConfig, 3*time.Hour)
	fs.IntVar(&c.files, "files", 1000000, "files of the big backup (quick try: --files 20000)")
	fs.IntVar(&c.accounts, "accounts", 100000, "Account records of the backup; file i has parent account i mod --accounts")
	fs.IntVar(&c.bodySize, "file-size", 512, "bytes of each generated file body (distinct bodies, so nothing deduplicates)")
	fs.IntVar(&c.streams, "streams", 64, "concurrent UploadFile streams on one connection")
	fs.IntVar(&c.backups, "backups", 50, "backups in the many-backup catalog (the big one and copies of its catalog rows made with INSERT … SELECT); 1 skips that stage")
	fs.DurationVar(&c.copyBudget, "copy-budget", 20*time.Minute, "stop making catalog copies once this long was spent on them (the report says how many were made)")
	fs.DurationVar(&c.settleMax, "settle-max", 5*time.Minute, "longest wait for InnoDB's write-back before each measured stage (the wait ends sooner once the dirty pages stop changing; 0: measure at once, for quick tries on a shared server)")
	fs.IntVar(&c.samples, "samples", 1000, "calls per latency measurement (p50/p99; of 100 calls the p99 is the second-slowest, which one slow call decides)")
	fs.IntVar(&c.dedupFiles, "dedup-files", 500, "uploads of bodies the backup holds, declared SHA-256, to a new backup, with 1 and with --backups backups (0: none)")
	fs.IntVar(&c.dedupStreams, "dedup-streams", 16, "concurrent streams of those uploads")
	fs.StringVar(&c.hold, "hold", "", "for looking into the catalog by hand: create this file and wait while it exists after the copies, after the many-backup stage and before DeleteBackup (write \"dedup\" into it for one more pass of the dedup uploads)")
	fs.Var(&c.budget, "memory-budget", "backupd --memory-budget")
	fs.Var(&c.partSize, "part-size", "backupd --part-size")
}

func (c *scaleConfig) validate() error {
	errs := []error{c.commonConfig.validate()}
	if c.files < 1 || c.accounts < 1 || c.streams < 1 || c.backups < 1 || c.samples < 1 || c.dedupFiles < 0 || c.dedupStreams < 1 {
		errs = append(errs, errors.New("--files, --accounts, --streams, --backups and --samples must be ≥ 1"))
	}
	if c.bodySize < 16 || c.bodySize > 1<<20 {
		errs = append(errs, errors.New("--file-size must be in [16, 1MiB] (packed bodies)"))
	}
	return errors.Join(errs...)
}

// scaleBench is one run of the scale benchmark.
type scaleBench struct {
	*harness
	c        scaleConfig
	proxy    *s3Proxy
	direct   *storage.S3
	d        *daemon
	id       string // the big backup
	tenant   []byte // its catalog tenant id
	sampleIs []int  // file numbers whose ids were kept for reads
	fileIDs  map[int]string
	copies   []string // backup ids of the catalog copies
	setAside bool     // the copies' files rows wait in files_old (dropCopies) until dropSetAside
}

func scaleCommand(ctx context.Context, args []string, stderr io.Writer) (*report, string, error) {
	var c scaleConfig
	if err := parseCommand("scale", args, stderr, &c, scaleFlags); err != nil {
		return nil, "", err
	}
	h := newHarness("scale", commandLine("scale", args), c.commonConfig, stderr, map[string]any{
		"files": c.files, "accounts": c.accounts, "file_size": c.bodySize, "streams": c.streams, "backups": c.backups,
		"copy_budget": c.copyBudget.String(), "settle_max": c.settleMax.String(), "samples": c.samples, "dedup_files": c.dedupFiles, "dedup_streams": c.dedupStreams, "memory_budget": c.budget.String(), "part_size": c.partSize.String(),
		"pack_threshold": "backupd default (1 MiB)"})
	b := &scaleBench{harness: h, c: c, fileIDs: map[int]string{}}
	err := h.execute(ctx, b.run)
	return h.rep, c.output, err
}

// filesLabel is how rows name the backup: "1,000,000 files".
func (b *scaleBench) filesLabel() string { return thousands(b.c.files) + " files" }

func thousands(n int) string {
	s := strconv.Itoa(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func (b *scaleBench) run(ctx context.Context) error {
	err := b.setupEnv(ctx, envOptions{budget: b.c.budget.String(), partSize: b.c.partSize.String(),
		overlap: func(context.Context) error {
			// ids csvgen.ID(AccountPrefix, 0 … accounts-1)
			_, err := writeCSV(filepath.Join(b.dir, "accounts.csv"), b.c.accounts, 0)
			return err
		}})
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
	if b.d, err = startDaemon(ctx, b.dcfg, "backupd-scale", "--gc-grace", "1s", "--cleanup-interval", "0"); err != nil {
		return err
	}
	b.onCleanup(b.d.stop)
	b.cpu.set("backupd", b.d.proc.pid())
	if _, err := b.registerStorage(ctx, b.d, "counted", b.proxy.endpoint, "", true); err != nil {
		return err
	}
	steps := []func(context.Context) error{b.upload, b.commit, func(ctx context.Context) error { return b.reads(ctx, 1) }}
	if b.c.backups > 1 {
		steps = append(steps, b.copyCatalog, b.holdAt("after the copies"), func(ctx context.Context) error { return b.reads(ctx, len(b.copies)+1) },
			b.holdAt("after the many-backup stage"), b.dropCopies)
	}
	steps = append(steps, b.holdAt("before DeleteBackup"), b.deleteBackup, b.dropSetAside)
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return errors.Join(err, b.d.alive())
		}
		b.rss()
	}
	return nil
}

// holdAt parks the run while the file --hold names exists (it creates it), so that the catalog
// can be looked into by hand (EXPLAIN, status counters, a restart of MariaDB) at that point.
// "dedup" written into the file runs one more pass of the dedup uploads (information rows) and
// holds again.
func (b *scaleBench) holdAt(at string) func(context.Context) error {
	return func(ctx context.Context) error {
		if b.c.hold == "" {
			return nil
		}
		if err := os.WriteFile(b.c.hold, nil, 0o644); err != nil {
			return err
		}
		b.logf("holding %s: remove %s to go on, or write \"dedup\" into it for one more pass of the dedup uploads", at, b.c.hold)
		for pass := 1; ; {
			content, err := os.ReadFile(b.c.hold)
			if errors.Is(err, fs.ErrNotExist) {
				b.logf("going on (%s)", at)
				return nil
			}
			if strings.TrimSpace(string(content)) == "dedup" {
				if err := os.WriteFile(b.c.hold, nil, 0o644); err != nil {
					return err
				}
				if err := b.dedup(ctx, false, fmt.Sprintf("held_%d", pass), "9", fmt.Sprintf("held %s, pass %d", at, pass)); err != nil {
					return err
				}
				pass++
				b.logf("holding %s again", at)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
}

// rss records backupd's peak RSS so far against the budget.
func (b *scaleBench) rss() {
	hwm, err := vmHWM(b.d.proc.pid())
	if err != nil {
		b.logf("VmHWM: %v", err)
		return
	}
	b.rep.Runs["backupd_vmhwm_mib"] = append(b.rep.Runs["backupd_vmhwm_mib"], float64(hwm)/(1<<20))
}

// scaleBody is file i's body: its number, then ChaCha8 bytes seeded by it.
func scaleBody(i, size int, dst []byte) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(i))
	copy(seed[8:], "backupbench scale")
	dst = slices.Grow(dst[:0], size)[:size]
	_, _ = rand.NewChaCha8(seed).Read(dst)
	binary.LittleEndian.PutUint64(dst, uint64(i))
	return dst
}

func scalePath(i int) string { return fmt.Sprintf("scale/ContentVersion/%07d.bin", i) }

// upload creates the backup, uploads the Account record set and then every file over
// --streams concurrent UploadFile streams (declared size and SHA-256, one data message).
func (b *scaleBench) upload(ctx context.Context) error {
	var err error
	if b.id, err = createBackup(ctx, b.d, "scale"); err != nil {
		return err
	}
	csvPath := filepath.Join(b.dir, "accounts.csv")
	res, dur, err := uploadRecords(ctx, b.d, b.id, 0, csvPath)
	if err != nil {
		return err
	}
	b.logf("Account record set: %d records in %s", res.GetRecords(), dur.Round(time.Millisecond))
	if err := b.db.admin.QueryRowContext(ctx, "SELECT tenant_id FROM "+b.db.name+".backups WHERE id = ?", b.id).Scan(&b.tenant); err != nil {
		return fmt.Errorf("tenant of backup %s: %w", b.id, err)
	}
	// The catalog's figures depend on whether its indexes fit the server's buffer pool (a
	// million packed files is ~4 GB of rows and indexes; Debian's default pool is 128 MiB).
	var pool int64
	if err := b.db.admin.QueryRowContext(ctx, "SELECT @@innodb_buffer_pool_size").Scan(&pool); err == nil {
		b.rep.Config["innodb_buffer_pool_size"] = pool
		b.logf("MariaDB innodb_buffer_pool_size %d MiB", pool>>20)
	}
	if origin, err := poolSizeOrigin(ctx, b.db.admin); err != nil {
		b.logf("where innodb_buffer_pool_size was set is unknown: %v", err)
	} else if note := poolResizedNote(origin); note != "" {
		b.logf("%s", note)
		b.rep.Notes = append(b.rep.Notes, note)
	}

	n := b.c.files
	keepEvery := max(1, n/2000)
	mark := b.proxy.mark()
	var done, dedup atomic.Int64
	s0 := b.cpu.snap()
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				d := done.Load()
				b.logf("uploaded %d of %d files (%.0f files/s over the last %s; load %s)", d, n, float64(d-last)/now.Sub(lastT).Seconds(),
					now.Sub(lastT).Round(time.Second), loadavg())
				last, lastT = d, now
			}
		}
	})
	var mu sync.Mutex
	var retries atomic.Int64
	retryWhy := map[string]int{}
	sampler := b.db.sample(250 * time.Millisecond)
	// UploadFiles: --streams streams, each taking batches of up to 1,024 files (the service's
	// window) in turn; a file answered with UNAVAILABLE, ABORTED or RESOURCE_EXHAUSTED (or left
	// unanswered by a broken stream) is resent with the same upload id, as the API asks.
	const batch = 1024
	var next atomic.Int64
	err = parallel(ctx, b.c.streams, b.c.streams, func(ctx context.Context, _ int) error {
		for {
			lo := int(next.Add(batch)) - batch
			if lo >= n {
				return nil
			}
			hi := min(lo+batch, n)
			type file struct {
				hdr  *pb.FileHeader
				body []byte
				i    int
			}
			left := map[string]file{}
			for i := lo; i < hi; i++ {
				body := scaleBody(i, b.c.bodySize, nil)
				sum := sha256.Sum256(body)
				size := int64(len(body))
				hdr := &pb.FileHeader{BackupId: b.id, ParentId: csvgen.ID(csvgen.AccountPrefix, int64(i%b.c.accounts)),
					Path: scalePath(i), ContentType: "application/octet-stream", UploadId: uuid.NewString(),
					DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
				left[hdr.UploadId] = file{hdr, body, i}
			}
			for attempt := 0; len(left) > 0; attempt++ {
				if attempt == 10 {
					return fmt.Errorf("UploadFiles: %d files still unanswered after 10 attempts", len(left))
				}
				if attempt > 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(min(2*time.Second, 50*time.Millisecond<<attempt)):
					}
				}
				sctx, cancel := context.WithCancel(ctx)
				stream, err := b.d.backups.UploadFiles(sctx)
				if err != nil {
					cancel()
					return fmt.Errorf("UploadFiles: %w", err)
				}
				sendErr := make(chan error, 1)
				go func(files []file) {
					for _, f := range files {
						if err := stream.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Header{Header: f.hdr}}); err != nil {
							sendErr <- err
							return
						}
						if err := stream.Send(&pb.UploadFilesRequest{Message: &pb.UploadFilesRequest_Data{Data: &pb.FileData{UploadId: f.hdr.UploadId, Data: f.body}}}); err != nil {
							sendErr <- err
							return
						}
					}
					sendErr <- stream.CloseSend()
				}(slices.Collect(maps.Values(left)))
				var rerr error
				for {
					a, err := stream.Recv()
					if err != nil {
						if !errors.Is(err, io.EOF) {
							rerr = err
						}
						break
					}
					f, ok := left[a.GetUploadId()]
					if !ok {
						continue
					}
					if e := a.GetError(); e != nil {
						code := codes.Code(e.GetCode())
						if code != codes.Unavailable && code != codes.Aborted && code != codes.ResourceExhausted {
							cancel()
							return fmt.Errorf("UploadFiles %s: %s %s", f.hdr.Path, code, e.GetMessage())
						}
						retries.Add(1)
						mu.Lock()
						retryWhy[code.String()+": "+e.GetMessage()]++
						mu.Unlock()
						continue
					}
					delete(left, a.GetUploadId())
					if a.GetResult().GetDeduplicated() {
						dedup.Add(1)
					}
					done.Add(1)
					if f.i%keepEvery == 0 {
						mu.Lock()
						b.sampleIs = append(b.sampleIs, f.i)
						mu.Unlock()
					}
				}
				cancel()
				<-sendErr
				if rerr != nil {
					code := status.Code(rerr)
					if code != codes.Unavailable && code != codes.Aborted && code != codes.ResourceExhausted {
						return fmt.Errorf("UploadFiles: %w", rerr)
					}
					retries.Add(1)
				}
			}
		}
	})
	dur = time.Since(start)
	close(stop)
	wg.Wait()
	sqlSeen := sampler.finish(4)
	if err != nil {
		return err
	}
	u := b.cpu.snap().since(s0, nil)
	reqs := b.proxy.since(mark)
	if err := failed(reqs); err != nil {
		return err
	}
	writes := sum(reqs, func(r proxyReq) bool { return r.Op == "put" || r.Op == "other" })
	rate := float64(n) / dur.Seconds()
	b.rep.Runs["upload_files_per_s"] = []float64{rate}
	b.rep.CPU["upload"] = u
	b.logf("uploaded %d files of %d bytes in %s: %.0f files/s, %d deduplicated; S3: %s; %s; %s", n, b.c.bodySize, dur.Round(time.Millisecond), rate, dedup.Load(), byOp(reqs), u, sqlSeen)
	if dedup.Load() != 0 {
		return fmt.Errorf("%d of %d distinct bodies answered deduplicated", dedup.Load(), n)
	}
	b.rep.Runs["upload_retries"] = []float64{float64(retries.Load())}
	why := fmt.Sprint(retryWhy)
	b.logf("upload retries: %d %s", retries.Load(), why)
	b.rep.addValue("1", fmt.Sprintf("upload rate, %s of %d B (UploadFiles, %d concurrent streams of up to 1,024 files in flight, declared size and SHA-256, packed)", b.filesLabel(), b.c.bodySize, b.c.streams),
		rate, "files/s", "", fmt.Sprintf("%s wall; load %s; %s; %d uploads retried %s; %s", dur.Round(time.Second), loadavg(), u, retries.Load(), why, sqlSeen))
	b.rep.addValue("1", fmt.Sprintf("S3 PUT requests per 1,000 files during the upload of %s", b.filesLabel()),
		float64(writes.Requests)*1000/float64(n), "requests", "≤ 10", "PUT and POST requests at the counting proxy: "+byOp(reqs))
	return b.tableSizes(ctx, "after the upload")
}

// uploadOne sends one file over its own UploadFile stream: header, one data message, finish.
func (b *scaleBench) uploadOne(ctx context.Context, hdr *pb.FileHeader, body []byte) (*pb.UploadFileResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := b.d.backups.UploadFile(ctx)
	if err != nil {
		return nil, fmt.Errorf("UploadFile: %w", err)
	}
	for _, m := range []*pb.UploadFileRequest{
		{Message: &pb.UploadFileRequest_Header{Header: hdr}},
		{Message: &pb.UploadFileRequest_Data{Data: body}},
		{Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}},
	} {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break // answered: CloseAndRecv has it
			}
			return nil, fmt.Errorf("UploadFile send: %w", err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("UploadFile %s: %w", hdr.Path, err)
	}
	return resp, nil
}

// commit times CommitBackup of the big backup (its parent check included).
func (b *scaleBench) commit(ctx context.Context) error {
	sampler := b.db.sample(100 * time.Millisecond)
	s0 := b.cpu.snap()
	start := time.Now()
	resp, err := b.d.backups.CommitBackup(ctx, &pb.CommitBackupRequest{BackupId: b.id})
	dur := time.Since(start)
	sqlSeen := sampler.finish(3)
	if err != nil {
		return fmt.Errorf("CommitBackup: %w (%s)", err, sqlSeen)
	}
	u := b.cpu.snap().since(s0, nil)
	b.rep.CPU["commit"] = u
	b.rep.Runs["commit_s"] = []float64{dur.Seconds()}
	orphans := len(resp.GetOrphanFiles())
	b.logf("CommitBackup: %s, %d orphan files, file_count %d; %s; %s", dur.Round(time.Millisecond), orphans, resp.GetBackup().GetFileCount(), u, sqlSeen)
	if orphans != 0 || resp.GetBackup().GetFileCount() != int64(b.c.files) {
		return fmt.Errorf("CommitBackup: %d orphan files, file_count %d; want 0 and %d", orphans, resp.GetBackup().GetFileCount(), b.c.files)
	}
	b.rep.addValue("2", fmt.Sprintf("CommitBackup of %s (s)", b.filesLabel()), dur.Seconds(), "s", "≤ 60",
		fmt.Sprintf("every file's parent among %s Account records; load %s; %s; %s", thousands(b.c.accounts), loadavg(), u, sqlSeen))
	return b.tableSizes(ctx, "after CommitBackup")
}

// latencies calls fn n times, one at a time, and returns the wall time of each in ms.
func latencies(ctx context.Context, n int, fn func(ctx context.Context, k int) error) ([]float64, error) {
	lat := make([]float64, 0, min(n, 1<<12))
	for k := range n {
		t0 := time.Now()
		if err := fn(ctx, k); err != nil {
			return nil, err
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
	return lat, nil
}

// reads measures, in a catalog of `backups` backups, ListBackupContents pages, ReadFile of
// packed files, FindBackup and ListBackups, against the big backup.
// settle waits (up to --settle-max) until MariaDB has stopped writing back the pages the stages
// before dirtied: Innodb_buffer_pool_pages_dirty at most settleDirty, or unchanged for
// settleQuiet (MariaDB leaves some dirty when idle). The latencies of a catalog are then not
// those of the write-back of rows just inserted (after 19 copies of 1 GB a one-row FindBackup's
// p50 rose 1.5×). It logs how long it waited.
func (b *scaleBench) settle(ctx context.Context, what string) {
	start, changed := time.Now(), time.Now()
	last := int64(-1)
	var dirty int64
	for {
		var name string
		if err := b.db.admin.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'").Scan(&name, &dirty); err != nil {
			b.logf("%s: dirty pages unknown (%v); measuring now", what, err)
			return
		}
		if dirty != last {
			last, changed = dirty, time.Now()
		}
		if dirty <= settleDirty || time.Since(changed) >= settleQuiet || time.Since(start) >= b.c.settleMax || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	// The redo log's checkpoint age is logged beside it (a lead, not yet a condition: the
	// eighth session's 50-backup dedup uploads were 2× slower after a wait that left ~30,000
	// dirty pages, where a 200,000-file run that left 741 saw 1.2×).
	var name string
	var age int64
	if err := b.db.admin.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Innodb_checkpoint_age'").Scan(&name, &age); err != nil {
		age = -1
	}
	b.logf("%s: %d dirty InnoDB pages, checkpoint age %.0f MB, after waiting %s for the write-back", what, dirty, float64(age)/1e6, time.Since(start).Round(time.Second))
}

// poolSizeOrigin is where the server's innodb_buffer_pool_size came from: COMPILE-TIME,
// CONFIG, COMMAND-LINE, or SQL when a SET GLOBAL changed it (MariaDB's
// information_schema.SYSTEM_VARIABLES).
func poolSizeOrigin(ctx context.Context, db *sql.DB) (string, error) {
	var origin string
	err := db.QueryRowContext(ctx, "SELECT GLOBAL_VALUE_ORIGIN FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_SIZE'").Scan(&origin)
	return origin, err
}

// poolResizedNote warns when MariaDB's buffer pool was grown at runtime (origin SQL): MariaDB
// 10.11.19 then spends more CPU on the same statements once the grown pool fills, which the
// figures would measure instead of the service (the cause inside MariaDB is not known; the
// effect is). Ninth session, 50 × 1,000,000 files, the same catalog and a full 16 GiB pool:
// dedup upload p50 43–54 ms with the pool grown from 128 MiB by SET GLOBAL, 26 ms with it given
// at startup (24 ms with one backup); MariaDB's connection threads spent 1.3–1.5 CPU-s on 500
// uploads against 0.6 for the same handler and page counts. "" for any other origin.
func poolResizedNote(origin string) string {
	if origin != "SQL" {
		return ""
	}
	return "MariaDB's innodb_buffer_pool_size was set at runtime (SET GLOBAL): once the grown pool fills, MariaDB 10.11 spends about 2.5× the CPU on the same statements " +
		"(dedup uploads at 50 × 1,000,000 files took 2× as long as with the same pool given at startup). Restart MariaDB with --innodb-buffer-pool-size for figures that describe the service."
}

// settle's bounds: 1,000 pages of 16 KiB; 5 s without change (and --settle-max).
const (
	settleDirty = 1000
	settleQuiet = 5 * time.Second
)

func (b *scaleBench) reads(ctx context.Context, backups int) error {
	tag := fmt.Sprintf("%d_backups", backups)
	cat := fmt.Sprintf("catalog of %d backup", backups)
	if backups > 1 {
		cat = fmt.Sprintf("catalog of %d backups (%d of them copies of the first's catalog rows, INSERT … SELECT)", backups, backups-1)
	}
	stage := "3"
	if backups > 1 {
		stage = "5"
	}
	b.settle(ctx, cat)
	probe := func() {
		b.rep.Runs["speed_probe_mbs_"+tag] = append(b.rep.Runs["speed_probe_mbs_"+tag], speedProbe()...)
	}
	probe()

	// Walk every page twice. The first walk finds the pool as the stage left it: in the
	// many-backup stage the copies, written after the big backup, have pushed its rows out
	// (in a real catalog the latest backup is the one written last), while the one-backup
	// stage has just written them. The second walk, with the backup's rows back in the pool
	// in both stages, is the one the goal compares; the first is reported beside it.
	var tokens []string
	for _, pass := range []struct{ run, logAs, label string }{
		{"list_walk_first_ms_", "first walk,", "once, first walk of the stage (information: the pool as the stage found it)"},
		{"list_walk_ms_", "walked", "once (page_size 1000), second walk"},
	} {
		sampler := b.db.sample(100 * time.Millisecond)
		lat, toks, dur, err := b.walk(ctx)
		sqlSeen := sampler.finish(3)
		if err != nil {
			return err
		}
		tokens = toks
		b.rep.Runs[pass.run+tag] = lat
		b.logf("%s: %s %d pages in %s (p50 %.1f ms, p99 %.1f ms); %s", cat, pass.logAs, len(lat), dur.Round(time.Millisecond), percentile(lat, 50), percentile(lat, 99), sqlSeen)
		b.rep.addValue(stage, fmt.Sprintf("ListBackupContents, every page of %s %s, %s: page p99 (ms)", b.filesLabel(), pass.label, cat),
			percentile(lat, 99), "ms", "≤ 50", fmt.Sprintf("%d pages in %s, p50 %.1f ms, max %.1f ms; load %s; %s", len(lat), dur.Round(time.Millisecond),
				percentile(lat, 50), slices.Max(lat), loadavg(), sqlSeen))
	}

	pages := []struct {
		name string
		k    int
	}{{"first", 0}, {"middle", len(tokens) / 2}, {"last", len(tokens) - 1}}
	for _, p := range pages {
		probe()
		sampler := b.db.sample(100 * time.Millisecond)
		lat, err := latencies(ctx, b.c.samples, func(ctx context.Context, _ int) error {
			_, err := b.d.restores.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.id, PageSize: 1000, PageToken: tokens[p.k]})
			return err
		})
		sqlSeen := sampler.finish(2)
		if err != nil {
			return fmt.Errorf("ListBackupContents %s page: %w", p.name, err)
		}
		name := "list_" + p.name + "_ms_" + tag
		b.rep.Runs[name] = lat
		b.logf("%s: ListBackupContents %s page (%d): p50 %.1f ms, p99 %.1f ms; %s", cat, p.name, p.k+1, percentile(lat, 50), percentile(lat, 99), sqlSeen)
		b.rep.addValue(stage, fmt.Sprintf("ListBackupContents %s page p99 at %s (ms), %s", p.name, b.filesLabel(), cat), percentile(lat, 99), "ms", "≤ 50",
			fmt.Sprintf("page %d of %d, %d calls one at a time, p50 %.1f ms; load %s; %s", p.k+1, len(tokens), len(lat), percentile(lat, 50), loadavg(), sqlSeen))
	}

	// ReadFile of packed files spread over the backup, checked byte for byte.
	var is []int
	for i := range b.fileIDs {
		is = append(is, i)
	}
	slices.Sort(is)
	if len(is) == 0 {
		return errors.New("no sampled file ids")
	}
	var buf []byte
	probe()
	sampler := b.db.sample(100 * time.Millisecond)
	lat, err := latencies(ctx, b.c.samples, func(ctx context.Context, k int) error {
		i := is[(k*7919)%len(is)]
		stream, err := b.d.restores.ReadFile(ctx, &pb.ReadFileRequest{BackupId: b.id, Selector: &pb.ReadFileRequest_FileId{FileId: b.fileIDs[i]}})
		if err != nil {
			return fmt.Errorf("ReadFile: %w", err)
		}
		var got []byte
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("ReadFile %s: %w", scalePath(i), err)
			}
			got = append(got, m.GetData()...)
		}
		buf = scaleBody(i, b.c.bodySize, buf)
		if !bytes.Equal(got, buf) {
			return fmt.Errorf("ReadFile %s: %d bytes, not the body sent", scalePath(i), len(got))
		}
		return nil
	})
	sqlSeen := sampler.finish(2)
	if err != nil {
		return err
	}
	b.rep.Runs["readfile_ms_"+tag] = lat
	b.logf("%s: ReadFile p50 %.1f ms, p99 %.1f ms; %s", cat, percentile(lat, 50), percentile(lat, 99), sqlSeen)
	b.rep.addValue(stage, fmt.Sprintf("ReadFile of one packed file p99 (ms), backup of %s, %s", b.filesLabel(), cat), percentile(lat, 99), "ms", "",
		fmt.Sprintf("%d reads by file id (%d distinct files), one at a time, bodies checked; p50 %.1f ms; load %s; %s", len(lat), min(len(lat), len(is)), percentile(lat, 50), loadavg(), sqlSeen))

	// FindBackup (now: the big backup is the latest) and ListBackups (first page of the org's).
	probe()
	lat, err = latencies(ctx, b.c.samples, func(ctx context.Context, _ int) error {
		resp, err := b.d.restores.FindBackup(ctx, &pb.FindBackupRequest{OrgId: benchOrg, At: timestamppb.Now()})
		if err == nil && resp.GetBackup().GetId() != b.id {
			err = fmt.Errorf("FindBackup found %s, want %s", resp.GetBackup().GetId(), b.id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("FindBackup: %w", err)
	}
	b.rep.Runs["findbackup_ms_"+tag] = lat
	b.rep.addValue(stage, "FindBackup p99 (ms), "+cat, percentile(lat, 99), "ms", "", fmt.Sprintf("%d calls, p50 %.2f ms; load %s", len(lat), percentile(lat, 50), loadavg()))
	lat, err = latencies(ctx, b.c.samples, func(ctx context.Context, _ int) error {
		resp, err := b.d.backups.ListBackups(ctx, &pb.ListBackupsRequest{OrgId: benchOrg, Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED, PageSize: 50})
		if err == nil && len(resp.GetBackups()) != min(backups, 50) {
			err = fmt.Errorf("ListBackups listed %d backups, want %d", len(resp.GetBackups()), min(backups, 50))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ListBackups: %w", err)
	}
	b.rep.Runs["listbackups_ms_"+tag] = lat
	b.rep.addValue(stage, "ListBackups (org and COMMITTED filters, page_size 50) p99 (ms), "+cat, percentile(lat, 99), "ms", "", fmt.Sprintf("%d calls, p50 %.2f ms; load %s", len(lat), percentile(lat, 50), loadavg()))
	// The page of 50 holds every backup of the catalog, so its answer grows with them; a
	// page of 1 is the same answer (the latest backup) in any catalog.
	lat1, err := latencies(ctx, b.c.samples, func(ctx context.Context, _ int) error {
		resp, err := b.d.backups.ListBackups(ctx, &pb.ListBackupsRequest{OrgId: benchOrg, Status: pb.BackupStatus_BACKUP_STATUS_COMMITTED, PageSize: 1})
		if err == nil && len(resp.GetBackups()) != 1 {
			err = fmt.Errorf("ListBackups with page_size 1 listed %d backups", len(resp.GetBackups()))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ListBackups: %w", err)
	}
	b.rep.Runs["listbackups1_ms_"+tag] = lat1
	b.rep.addValue(stage, "ListBackups (org and COMMITTED filters, page_size 1) p99 (ms), "+cat, percentile(lat1, 99), "ms", "", fmt.Sprintf("%d calls, p50 %.2f ms; load %s", len(lat1), percentile(lat1, 50), loadavg()))
	b.logf("%s: FindBackup p99 %.2f ms, ListBackups p99 %.2f ms (page of 50), %.2f ms (page of 1)", cat, percentile(b.rep.Runs["findbackup_ms_"+tag], 99), percentile(lat, 99), percentile(lat1, 99))

	probe()
	// Twice, as the walk: the first pass reads the blobs' rows and files_blob's pages into the
	// pool (information), the second is the one the goal compares.
	for _, first := range []bool{true, false} {
		if err := b.dedup(ctx, first, tag, stage, cat); err != nil {
			return err
		}
	}
	probe()
	sp := b.rep.Runs["speed_probe_mbs_"+tag]
	b.logf("%s: speed probe (SHA-256 on one goroutine) median %.0f MB/s, min %.0f, max %.0f", cat, median(sp), slices.Min(sp), slices.Max(sp))
	b.rep.addValue(stage, "speed probe: SHA-256 of 4 MiB on one goroutine, median MB/s (information), "+cat, median(sp), "MB/s", "",
		fmt.Sprintf("%d probes before, between and after the measurements of this stage, min %.0f, max %.0f: what the cores gave while the latencies were taken (this VM reports no steal time)",
			len(sp), slices.Min(sp), slices.Max(sp)))
	if backups > 1 {
		b.ratios(tag)
	}
	return nil
}

// walk lists every page of the big backup once (page_size 1000) and returns each page's
// latency and token; it keeps the ids of the sampled files for ReadFile.
func (b *scaleBench) walk(ctx context.Context) (lat []float64, tokens []string, dur time.Duration, err error) {
	want := map[string]int{}
	for _, i := range b.sampleIs {
		want[scalePath(i)] = i
	}
	token := ""
	files := 0
	start := time.Now()
	for {
		tokens = append(tokens, token)
		t0 := time.Now()
		resp, err := b.d.restores.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.id, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, nil, 0, fmt.Errorf("ListBackupContents page %d: %w", len(tokens), err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		for _, f := range resp.GetFiles() {
			if i, ok := want[f.GetPath()]; ok {
				b.fileIDs[i] = f.GetFileId()
			}
		}
		files += len(resp.GetFiles())
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if files != b.c.files {
		return nil, nil, 0, fmt.Errorf("ListBackupContents listed %d files, want %d", files, b.c.files)
	}
	return lat, tokens, time.Since(start), nil
}

// speedProbe times a fixed single-goroutine workload, SHA-256 of 4 MiB, three times and
// returns each rate in MB/s. The machine is a VM sharing its host and reports no steal time:
// the probe is how a run tells a catalog that got slower from cores that did.
func speedProbe() []float64 {
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	out := make([]float64, 3)
	for k := range out {
		t0 := time.Now()
		sum := sha256.Sum256(buf)
		out[k] = float64(len(buf)) / 1e6 / time.Since(t0).Seconds()
		buf[k] = sum[0] // the sum is used: the call stays
	}
	return out
}

// dedup times uploads that deduplicate: --dedup-files of the big backup's bodies sent again to
// a new backup with their declared SHA-256, one stream each on --dedup-streams, so each is one
// dedup lookup (FindBlobs) and the rows of an upload answered without its body. The backup is
// committed and deleted again afterwards (not measured), so that the big backup stays the
// latest and its blobs are again referenced by it alone. first marks the stage's first pass
// (information, see reads).
func (b *scaleBench) dedup(ctx context.Context, first bool, tag, stage, cat string) error {
	n := min(b.c.dedupFiles, b.c.files)
	if n == 0 {
		return nil
	}
	id, err := createBackup(ctx, b.d, "scale-dedup")
	if err != nil {
		return err
	}
	lat := make([]float64, n)
	var sent, dedup atomic.Int64
	probe := newDBProbe(b.db)
	p0 := probe.snap(ctx)
	sampler := b.db.sample(100 * time.Millisecond)
	s0 := b.cpu.snap()
	start := time.Now()
	err = parallel(ctx, n, b.c.dedupStreams, func(ctx context.Context, k int) error {
		i := (k * 7919) % b.c.files
		body := scaleBody(i, b.c.bodySize, nil)
		sum := sha256.Sum256(body)
		size := int64(len(body))
		hdr := &pb.FileHeader{BackupId: id, ParentId: csvgen.ID(csvgen.AccountPrefix, int64(i%b.c.accounts)),
			Path: scalePath(i), ContentType: "application/octet-stream", UploadId: uuid.NewString(),
			DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
		t0 := time.Now()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := b.d.backups.UploadFile(sctx)
		if err != nil {
			return fmt.Errorf("UploadFile: %w", err)
		}
		if err := stream.Send(&pb.UploadFileRequest{Message: &pb.UploadFileRequest_Header{Header: hdr}}); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("UploadFile send: %w", err)
		}
		// As backup.proto asks: with a declared SHA-256, wait for the service to ask for
		// the body; a deduplicated upload just answers.
		if md, err := stream.Header(); err == nil && len(md.Get(pb.UploadHeader)) > 0 {
			for _, m := range []*pb.UploadFileRequest{{Message: &pb.UploadFileRequest_Data{Data: body}}, {Message: &pb.UploadFileRequest_Finish{Finish: &pb.FinishWrite{}}}} {
				if err := stream.Send(m); err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					return fmt.Errorf("UploadFile send: %w", err)
				}
				sent.Add(int64(len(m.GetData())))
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			return fmt.Errorf("UploadFile (dedup) %s: %w", hdr.Path, err)
		}
		lat[k] = float64(time.Since(t0).Microseconds()) / 1000
		if resp.GetResult().GetDeduplicated() {
			dedup.Add(1)
		}
		return nil
	})
	dur := time.Since(start)
	sqlSeen := sampler.finish(3)
	if err != nil {
		return err
	}
	u := b.cpu.snap().since(s0, nil)
	sqlSeen += "; " + probe.snap(ctx).since(p0, n)
	run, pass := "dedup_upload_ms_", "second pass"
	if first {
		run, pass = "dedup_upload_first_ms_", "first pass of the stage (information: the pool as the stage found it)"
	}
	b.rep.Runs[run+tag] = lat
	b.logf("%s: %s: %d dedup uploads in %s, %d deduplicated, %d body bytes sent; p50 %.1f ms, p99 %.1f ms; %s; %s", cat, pass, n, dur.Round(time.Millisecond),
		dedup.Load(), sent.Load(), percentile(lat, 50), percentile(lat, 99), u, sqlSeen)
	b.rep.addValue(stage, fmt.Sprintf("dedup upload (declared SHA-256 of a body the backup of %s holds) p99 (ms), %s, %s", b.filesLabel(), pass, cat), percentile(lat, 99), "ms", "",
		fmt.Sprintf("%d uploads to a new backup on %d streams, %d answered deduplicated, %d body bytes sent; p50 %.1f ms; %.0f uploads/s; load %s; %s; %s",
			n, b.c.dedupStreams, dedup.Load(), sent.Load(), percentile(lat, 50), float64(n)/dur.Seconds(), loadavg(), u, sqlSeen))
	if dedup.Load() != int64(n) {
		return fmt.Errorf("dedup uploads: %d of %d answered deduplicated", dedup.Load(), n)
	}
	if err := commitBackup(ctx, b.d, id); err != nil {
		return err
	}
	if _, err := b.d.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: id}); err != nil {
		return fmt.Errorf("DeleteBackup (dedup backup): %w", err)
	}
	return nil
}

// ratios adds the many-backup ÷ one-backup p99 rows (issue 12 §4: within 2×).
func (b *scaleBench) ratios(tag string) {
	n := len(b.copies) + 1
	// The rows marked information compare unlike things: a first pass finds the backup's rows
	// pushed out of the pool by the copies in one stage and just written in the other; a page
	// of 50 backups holds 50 in one catalog and 1 in the other.
	for _, r := range []struct {
		run, what string
		info      bool
	}{
		{"list_walk_first_ms_", "ListBackupContents page p99, every page once, first walk (information)", true},
		{"list_walk_ms_", "ListBackupContents page p99, every page once, second walk", false},
		{"list_first_ms_", "ListBackupContents first page p99", false},
		{"list_middle_ms_", "ListBackupContents middle page p99", false},
		{"list_last_ms_", "ListBackupContents last page p99", false},
		{"readfile_ms_", "ReadFile p99", false},
		{"findbackup_ms_", "FindBackup p99", false},
		{"listbackups_ms_", "ListBackups page_size 50 p99 (information: its answer grows with the backups it lists)", true},
		{"listbackups1_ms_", "ListBackups page_size 1 p99 (the same answer in any catalog)", false},
		{"dedup_upload_first_ms_", "dedup upload p99, first pass (information)", true},
		{"dedup_upload_ms_", "dedup upload p99, second pass", false},
	} {
		one, many := b.rep.Runs[r.run+"1_backups"], b.rep.Runs[r.run+tag]
		if len(one) == 0 || len(many) == 0 {
			continue
		}
		p1, pn := percentile(one, 99), percentile(many, 99)
		goal := "≤ 2"
		if r.info {
			goal = ""
		}
		// The p50s beside it: a p99 of 500 calls on 16 streams is decided by one stall of
		// the server's disk (16 calls at once), which the p50 shrugs off.
		m1, mn := percentile(one, 50), percentile(many, 50)
		b.rep.addRatio("5", fmt.Sprintf("%s, %d backups × %s ÷ 1 backup (catalog copies, INSERT … SELECT)", r.what, n, b.filesLabel()), pn, "ms", div(pn, p1), goal,
			fmt.Sprintf("1 backup: %.2f ms; p50 %.2f → %.2f ms (%.2f×)", p1, m1, mn, mn/m1))
	}
	if one, many := b.rep.Runs["speed_probe_mbs_1_backups"], b.rep.Runs["speed_probe_mbs_"+tag]; len(one) > 0 && len(many) > 0 {
		m1, mn := median(one), median(many)
		b.rep.addRatio("5", fmt.Sprintf("speed probe median, %d backups ÷ 1 backup (information: below 1, one goroutine got less of the cores while the %d-backup catalog was measured, whatever the catalog)", n, n),
			mn, "MB/s", div(mn, m1), "", fmt.Sprintf("1 backup: %.0f MB/s", m1))
	}
}

// tableSizes reports rows, data and index MB of every catalog table (information_schema after
// ANALYZE TABLE; InnoDB's row counts are estimates).
func (b *scaleBench) tableSizes(ctx context.Context, when string) error {
	rows, err := b.db.admin.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", b.db.name)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
		if _, err := b.db.admin.ExecContext(ctx, "ANALYZE TABLE "+b.db.name+"."+n); err != nil {
			return fmt.Errorf("ANALYZE TABLE %s: %w", n, err)
		}
	}
	rows, err = b.db.admin.QueryContext(ctx, "SELECT TABLE_NAME, COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0), COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY DATA_LENGTH + INDEX_LENGTH DESC", b.db.name)
	if err != nil {
		return err
	}
	defer rows.Close()
	backups := len(b.copies) + 1
	var parts []string
	for rows.Next() {
		var name string
		var n, data, index int64
		if err := rows.Scan(&name, &n, &data, &index); err != nil {
			return err
		}
		mb := float64(data+index) / 1e6
		parts = append(parts, fmt.Sprintf("%s %d rows %.0f MB", name, n, mb))
		if mb < 1 {
			continue // the small tables are in the log line only
		}
		b.rep.addValue("sizes", fmt.Sprintf("table %s %s, %d backup(s) in the catalog: data + index MB", name, when, backups), mb, "MB", "",
			fmt.Sprintf("≈ %d rows (InnoDB estimate after ANALYZE TABLE), data %.1f MB, index %.1f MB, ≈ %.0f bytes a row", n, float64(data)/1e6, float64(index)/1e6, float64(data+index)/float64(max(n, 1))))
	}
	b.logf("table sizes %s: %s", when, strings.Join(parts, "; "))
	return rows.Err()
}

// copyCatalog makes the many-backup catalog: --backups - 1 copies of the big backup's catalog
// rows (backup, record sets, record chunks, files; not its upload rows), each its own COMMITTED
// backup that started earlier, sharing the objects, packs and blobs.
//
// How, and why (docs/BENCHMARKS.md, eighth session): made the obvious way, by INSERT … SELECT of
// files into files, the copies slowed from 32 s to 160 s each as the buffer pool filled, about 2
// hours for 49. Two things grew or repeated per copy:
//   - files_blob (tenant, blob, backup, id) is the one index whose entries of every backup
//     interleave (the copies share the blobs), so each copy's 1,000,000 inserts swept the whole
//     index, k × ~150 MB read back from disk and written again at the k-th copy;
//   - MariaDB materializes a SELECT of the table it inserts into in an internal temporary table
//     (1,000,000 rows a copy; one such table failed in /tmp and lost a run).
//
// So the source rows are first put in a side table (files_src, without indexes) and files_blob
// (with its foreign key) is dropped; the copies only append to the files table's other indexes
// (each keyed by backup first) and the index is then built once by sorting, as CREATE INDEX does.
// The catalog holds the same rows and the same indexes as one the server wrote, but files_blob's
// pages are full where one grown by random inserts is about two thirds full: reads of that index
// (the dedup check and DeleteBackup's liveness checks) find it in fewer pages than a real one.
func (b *scaleBench) copyCatalog(ctx context.Context) error {
	db := b.db.name
	conn, err := b.db.admin.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The copies are rows already checked once (same blobs, same upload ids, a new backup id
	// inserted in the same transaction): the session skips the foreign-key lookups (one per
	// row into blobs and backups) and lets InnoDB defer unique-index checks; the foreign key
	// dropped below is added back without a scan for the same reason. Setup only; the server's
	// own writes keep both. Set back before the connection returns to the pool.
	if _, err := conn.ExecContext(ctx, "SET SESSION foreign_key_checks = 0, unique_checks = 0"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SET SESSION foreign_key_checks = 1, unique_checks = 1")
	cols := func(table string) ([]string, error) {
		rows, err := conn.QueryContext(ctx, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", db, table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var cs []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				return nil, err
			}
			cs = append(cs, c)
		}
		return cs, rows.Err()
	}
	// INSERT INTO t (cols) SELECT cols FROM src with idCol replaced by the copy's id (and its
	// overrides).
	copyStmt := func(table, src, idCol string, override map[string]string) (string, error) {
		cs, err := cols(table)
		if err != nil {
			return "", err
		}
		sel := make([]string, len(cs))
		for i, c := range cs {
			switch {
			case c == idCol:
				sel[i] = "?"
			case override[c] != "":
				sel[i] = override[c]
			default:
				sel[i] = c
			}
		}
		return fmt.Sprintf("INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s WHERE tenant_id = ? AND %s = ?",
			db, table, strings.Join(cs, ", "), strings.Join(sel, ", "), db, src, idCol), nil
	}
	backupStmt, err := copyStmt("backups", "backups", "id", map[string]string{"started_at": "started_at - ?", "committed_at": "committed_at - ?",
		"idempotency_key": "NULL", "manifest_key": "CONCAT(manifest_key, '.copy')"})
	if err != nil {
		return err
	}
	stmts := map[string]string{}
	tables := []string{"record_sets", "record_chunks", "files"}
	for _, t := range tables {
		src := t
		if t == "files" {
			src = "files_src"
		}
		if stmts[t], err = copyStmt(t, src, "backup_id", nil); err != nil {
			return err
		}
	}
	s0 := b.cpu.snap()
	start := time.Now()
	blobIndex, err := b.deferBlobIndex(ctx, conn)
	if err != nil {
		return err
	}
	prep := time.Since(start)
	b.logf("catalog copies: source rows in files_src, files_blob dropped, in %s", prep.Round(time.Millisecond))
	var each []float64
	for k := 1; k < b.c.backups; k++ {
		if time.Since(start) > b.c.copyBudget {
			b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("--copy-budget %s reached after %d copies: the many-backup catalog has %d backups, not %d.",
				b.c.copyBudget, len(b.copies), len(b.copies)+1, b.c.backups))
			break
		}
		t0 := time.Now()
		// started_at is in ms or ns; an hour or more earlier either way
		cp := scaleCopy{id: uuid.NewString(), shift: int64(k) * int64(time.Hour/time.Millisecond)}
		if err := b.copyOne(ctx, conn, backupStmt, stmts, tables, cp); err != nil {
			return fmt.Errorf("catalog copy %d: %w", k, err)
		}
		b.copies = append(b.copies, cp.id)
		each = append(each, time.Since(t0).Seconds())
		b.logf("catalog copy %d of %d in %s (load %s)", k, b.c.backups-1, time.Since(t0).Round(time.Millisecond), loadavg())
	}
	t0 := time.Now()
	if err := blobIndex(ctx); err != nil {
		return err
	}
	build := time.Since(t0)
	b.logf("files_blob built by sort in %s", build.Round(time.Millisecond))
	dur := time.Since(start)
	u := b.cpu.snap().since(s0, nil)
	b.rep.Runs["catalog_copy_s"] = each
	b.rep.addValue("4", fmt.Sprintf("making the many-backup catalog: %d copies of the %s backup's catalog rows (backup, record sets, chunks, files; not uploads) with INSERT … SELECT, per copy (information)",
		len(b.copies), b.filesLabel()), median(each), "s", "", fmt.Sprintf("%s in all: %s to set the source rows aside and drop files_blob, %s to build files_blob by sort afterwards; load %s; %s",
		dur.Round(time.Second), prep.Round(time.Second), build.Round(time.Second), loadavg(), u))
	return b.tableSizes(ctx, fmt.Sprintf("with %d copies", len(b.copies)))
}

// scaleCopy is one catalog copy: its backup id and how far earlier it started (ms).
type scaleCopy struct {
	id    string
	shift int64
}

var (
	blobKeyDef = regexp.MustCompile("(?m)^\\s*(KEY `files_blob` \\([^)]*\\))")
	blobFKDef  = regexp.MustCompile("(?m)^\\s*(CONSTRAINT `files_blob_fk` FOREIGN KEY .*?)(?:,)?$")
)

// deferBlobIndex puts the big backup's files rows in files_src and drops files_blob and its
// foreign key; the function it returns adds both back (as SHOW CREATE TABLE had them; the
// foreign key without a scan, the session's foreign_key_checks being off) and drops files_src.
func (b *scaleBench) deferBlobIndex(ctx context.Context, conn *sql.Conn) (func(context.Context) error, error) {
	db := b.db.name
	var name, ddl string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+db+".files").Scan(&name, &ddl); err != nil {
		return nil, err
	}
	key, fk := blobKeyDef.FindStringSubmatch(ddl), blobFKDef.FindStringSubmatch(ddl)
	if key == nil || fk == nil {
		return nil, fmt.Errorf("files_blob or files_blob_fk not found in SHOW CREATE TABLE files:\n%s", ddl)
	}
	for _, q := range []string{
		"CREATE TABLE " + db + ".files_src ENGINE=InnoDB AS SELECT * FROM " + db + ".files WHERE tenant_id = ? AND backup_id = ?",
		"ALTER TABLE " + db + ".files DROP FOREIGN KEY files_blob_fk, DROP KEY files_blob",
	} {
		var args []any
		if strings.Contains(q, "?") {
			args = []any{b.tenant, b.id}
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return nil, fmt.Errorf("%.60s…: %w", q, err)
		}
	}
	return func(ctx context.Context) error {
		for _, q := range []string{
			"ALTER TABLE " + db + ".files ADD " + key[1] + ", ALGORITHM=INPLACE",
			"ALTER TABLE " + db + ".files ADD " + fk[1] + ", ALGORITHM=INPLACE",
			"DROP TABLE " + db + ".files_src",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%.60s…: %w", q, err)
			}
		}
		var name, after string
		if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+db+".files").Scan(&name, &after); err != nil {
			return err
		}
		if !slices.Equal(ddlLines(after), ddlLines(ddl)) { // the keys' order may differ
			return fmt.Errorf("files after the copies differs from before:\n%s\nbefore:\n%s", after, ddl)
		}
		return nil
	}, nil
}

// ddlLines is a SHOW CREATE TABLE's lines without trailing commas, sorted.
func ddlLines(ddl string) []string {
	ls := strings.Split(ddl, "\n")
	for i, l := range ls {
		ls[i] = strings.TrimSuffix(strings.TrimSpace(l), ",")
	}
	slices.Sort(ls)
	return ls
}

// copyOne makes one catalog copy in one transaction: its backup row, record sets, chunks and
// files.
func (b *scaleBench) copyOne(ctx context.Context, conn *sql.Conn, backupStmt string, stmts map[string]string, tables []string, cp scaleCopy) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// started_at: find the unit from the value (ns since 1970 ≈ 1.7e18, µs ≈ 1.7e15, ms ≈ 1.7e12,
	// s ≈ 1.7e9); shift is in ms.
	var started int64
	if err := tx.QueryRowContext(ctx, "SELECT started_at FROM "+b.db.name+".backups WHERE tenant_id = ? AND id = ?", b.tenant, b.id).Scan(&started); err != nil {
		return err
	}
	shift := cp.shift
	switch {
	case started > 1e17:
		shift *= 1e6
	case started > 1e14:
		shift *= 1e3
	case started < 1e11:
		shift /= 1e3
	}
	if _, err := tx.ExecContext(ctx, backupStmt, cp.id, shift, shift, b.tenant, b.id); err != nil {
		return fmt.Errorf("backups: %w", err)
	}
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, stmts[t], cp.id, b.tenant, b.id); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return tx.Commit()
}

var constraintName = regexp.MustCompile("CONSTRAINT `([^`]+)`")

// dropSetAside drops the copies' files rows dropCopies set aside, after the delete was measured.
func (b *scaleBench) dropSetAside(ctx context.Context) error {
	if !b.setAside {
		return nil
	}
	start := time.Now()
	if _, err := b.db.admin.ExecContext(ctx, "DROP TABLE "+b.db.name+".files_old"); err != nil {
		return fmt.Errorf("DROP TABLE files_old: %w", err)
	}
	b.setAside = false
	b.logf("the copies' files rows (files_old) dropped in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// dropCopies removes the copies' catalog rows again, so that deleting the big backup frees its
// keys (the copies share its blobs). The files table is rebuilt with the big backup's rows only
// (same definition, constraints renamed), which is far quicker than deleting the copies' rows.
// The old table (the copies' rows) is set aside without its foreign keys and dropped only after
// the DeleteBackup measurement (dropSetAside): right after a large DROP, MariaDB spent 1.3–5×
// the CPU a freshly restarted one spent on the same work (docs/BENCHMARKS.md, seventh session),
// so a delete measured after it measured the benchmark's own DROP as much as the service.
func (b *scaleBench) dropCopies(ctx context.Context) error {
	if len(b.copies) == 0 {
		return nil
	}
	db := b.db.name
	start := time.Now()
	conn, err := b.db.admin.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var name, ddl string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+db+".files").Scan(&name, &ddl); err != nil {
		return err
	}
	var dropFKs []string
	for _, m := range constraintName.FindAllStringSubmatch(ddl, -1) {
		dropFKs = append(dropFKs, "DROP FOREIGN KEY `"+m[1]+"`")
	}
	ddl = strings.Replace(ddl, "CREATE TABLE `files`", "CREATE TABLE "+db+".files_keep", 1)
	ddl = constraintName.ReplaceAllString(ddl, "CONSTRAINT `${1}_k`")
	qs := []string{
		ddl,
		"INSERT INTO " + db + ".files_keep SELECT * FROM " + db + ".files WHERE tenant_id = ? AND backup_id = ?",
		"RENAME TABLE " + db + ".files TO " + db + ".files_old, " + db + ".files_keep TO " + db + ".files",
	}
	if len(dropFKs) > 0 {
		qs = append(qs, "ALTER TABLE "+db+".files_old "+strings.Join(dropFKs, ", "))
	}
	for _, q := range qs {
		var args []any
		if strings.Contains(q, "?") {
			args = []any{b.tenant, b.id}
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("%.60s…: %w", q, err)
		}
	}
	for _, t := range []string{"record_chunks", "record_sets", "backups"} {
		col := "backup_id"
		if t == "backups" {
			col = "id"
		}
		for _, cp := range b.copies {
			if _, err := conn.ExecContext(ctx, "DELETE FROM "+db+"."+t+" WHERE tenant_id = ? AND "+col+" = ?", b.tenant, cp); err != nil {
				return fmt.Errorf("DELETE FROM %s: %w", t, err)
			}
		}
	}
	b.logf("copies' catalog rows removed in %s (files table rebuilt with the big backup's rows; the copies' rows set aside in files_old, without foreign keys, until after DeleteBackup)", time.Since(start).Round(time.Millisecond))
	b.copies = nil
	b.setAside = true
	return nil
}

// deleteBackup times DeleteBackup of the big backup and then waits until its keys are gone
// from the bucket.
func (b *scaleBench) deleteBackup(ctx context.Context) error {
	prefix := "dev/" + benchOrg + "/"
	countKeys := func() (int, error) {
		n := 0
		err := b.direct.List(ctx, prefix, func(storage.ObjectInfo) error { n++; return nil })
		return n, err
	}
	before, err := countKeys()
	if err != nil {
		return err
	}
	// After the copies' rows were dropped (the files table rebuilt), as before each read stage:
	// the delete is then not timed against that rebuild's write-back.
	b.settle(ctx, "DeleteBackup")
	mark := b.proxy.mark()
	probe := newDBProbe(b.db)
	p0 := probe.snap(ctx)
	sampler := b.db.sample(200 * time.Millisecond)
	s0 := b.cpu.snap()
	start := time.Now()
	resp, err := b.d.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b.id})
	callDur := time.Since(start)
	sqlSeen := sampler.finish(3)
	if err != nil {
		return fmt.Errorf("DeleteBackup: %w (%s)", err, sqlSeen)
	}
	left := -1
	for {
		if left, err = countKeys(); err != nil {
			return err
		}
		if left == 0 || time.Since(start) > 10*time.Minute {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	dur := time.Since(start)
	u := b.cpu.snap().since(s0, nil)
	sqlSeen += "; per file: " + probe.snap(ctx).since(p0, b.c.files)
	reqs := b.proxy.since(mark)
	b.rep.Runs["delete_s"] = []float64{dur.Seconds()}
	b.rep.CPU["delete"] = u
	b.logf("DeleteBackup: call %s, keys gone after %s (%d of %d left); %d objects deleted; S3: %s; %s; %s",
		callDur.Round(time.Millisecond), dur.Round(time.Millisecond), left, before, resp.GetObjectsDeleted(), byOp(reqs), u, sqlSeen)
	if left != 0 {
		return fmt.Errorf("DeleteBackup: %d of %d keys left under %s after %s", left, before, prefix, dur.Round(time.Second))
	}
	b.rep.addValue("6", fmt.Sprintf("DeleteBackup of %s until its keys are gone (s)", b.filesLabel()), dur.Seconds(), "s", "≤ 120",
		fmt.Sprintf("the call took %s; %d keys before, %d objects deleted; S3: %s; load %s; %s; %s", callDur.Round(time.Millisecond), before,
			resp.GetObjectsDeleted(), byOp(reqs), loadavg(), u, sqlSeen))
	peak := slices.Max(append([]float64{0}, b.rep.Runs["backupd_vmhwm_mib"]...))
	if hwm, err := vmHWM(b.d.proc.pid()); err == nil {
		peak = max(peak, float64(hwm)/(1<<20))
	}
	budget := float64(b.c.budget) / (1 << 20)
	b.rep.addRatio("7", fmt.Sprintf("backupd peak RSS (VmHWM) over the whole run ÷ --memory-budget %s", b.c.budget.String()), peak, "MiB", div(peak, budget), "≤ 1.0",
		"VmHWM after each stage: "+fmtList(b.rep.Runs["backupd_vmhwm_mib"]))
	return b.tableSizes(ctx, "after DeleteBackup")
}

func fmtList(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, ", ")
}
