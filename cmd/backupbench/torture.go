package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"backupstore/csvscan/csvgen"
	"backupstore/internal/bytesize"
	pb "backupstore/proto/backupstore/v1"
)

type metadataMD = metadata.MD

// tortureConfig is every setting of the torture run.
type tortureConfig struct {
	duration     time.Duration
	seed         uint64
	replicas     int
	clients      int
	killEvery    time.Duration
	dbRestarts   int
	faults       bool
	gcGrace      time.Duration
	uploadTTL    time.Duration
	partSize     int64
	budget       bytesize.Flag
	tmp          string
	keep         bool
	logFile      string
	seedGiven    bool
	finalTimeout time.Duration
}

func tortureFlags(fs *flag.FlagSet, c *tortureConfig) {
	c.budget = 160 << 20
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "how long clients and faults run (then the final checks)")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed of operations, data and faults (default: from the clock; printed for replay)")
	fs.IntVar(&c.replicas, "replicas", 3, "backupd processes sharing the catalog and the bucket")
	fs.IntVar(&c.clients, "clients", 6, "concurrent client goroutines")
	fs.DurationVar(&c.killEvery, "kill-every", 4*time.Second, "mean interval between kill -9 of a random replica (0: none)")
	fs.IntVar(&c.dbRestarts, "db-restarts", 1, "restarts (kill -9) of the private MariaDB during the run")
	fs.BoolVar(&c.faults, "faults", true, "inject S3 and MySQL connection resets, latency and stalls (toxiproxy)")
	fs.DurationVar(&c.gcGrace, "gc-grace", 20*time.Second, "backupd --gc-grace")
	fs.DurationVar(&c.uploadTTL, "upload-ttl", 30*time.Second, "backupd --upload-ttl")
	fs.Var(&c.budget, "memory-budget", "backupd --memory-budget (peak RSS must stay within it plus 256MiB)")
	fs.StringVar(&c.tmp, "tmp", "", "parent of the temporary directory (default $TMPDIR)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (logs of every process)")
	fs.StringVar(&c.logFile, "log", "", "file for violations and the operations before each (default torture-SEED.log in the temporary directory's parent)")
	fs.DurationVar(&c.finalTimeout, "final-timeout", 10*time.Minute, "bound on the final checks")
}

// tortureRun is one run: its processes, its model and its counters.
type tortureRun struct {
	cfg           tortureConfig
	stderr        io.Writer
	dir           string
	reps          []*replica
	db            *privateDB
	gw            *gateway
	fp            *faultProxy
	bucket        string
	prefix        string
	storageID     string
	m             *model
	v             *violations
	log           *opLog
	orgs          []string
	retentionOrgs map[string]bool
	start         time.Time

	cmu    sync.Mutex
	counts map[string]int64
	codes  map[codes.Code]int64
	faultN map[string]int64
}

func (t *tortureRun) count(name string) {
	t.cmu.Lock()
	t.counts[name]++
	t.cmu.Unlock()
}

func (t *tortureRun) countCode(c codes.Code) {
	t.cmu.Lock()
	t.codes[c]++
	t.cmu.Unlock()
}

func (t *tortureRun) fault(name string) {
	t.cmu.Lock()
	t.faultN[name]++
	t.cmu.Unlock()
	t.log.add("FAULT %s", name)
}

func (t *tortureRun) logf(format string, args ...any) {
	fmt.Fprintf(t.stderr, "[%6.1fs] %s\n", time.Since(t.start).Seconds(), fmt.Sprintf(format, args...))
}

// tortureCommand runs the torture run. Its report goes to stderr as it runs and to stdout at the
// end; a violation makes it fail.
func tortureCommand(ctx context.Context, args []string, stderr io.Writer) (*report, string, error) {
	fs := flag.NewFlagSet("backupbench torture", flag.ContinueOnError)
	var c tortureConfig
	tortureFlags(fs, &c)
	if err := parseFlags(fs, args, stderr, func() error {
		if c.replicas < 1 || c.clients < 1 || c.duration <= 0 {
			return errors.New("--replicas, --clients and --duration must be positive")
		}
		return nil
	}); err != nil {
		return nil, "", err
	}
	fs.Visit(func(f *flag.Flag) { c.seedGiven = c.seedGiven || f.Name == "seed" })
	if !c.seedGiven {
		c.seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	c.partSize = 5 << 20
	t := &tortureRun{cfg: c, stderr: stderr, start: time.Now(), counts: map[string]int64{}, codes: map[codes.Code]int64{}, faultN: map[string]int64{}}
	t.log = newOpLog(100000)
	t.v = &violations{log: t.log, seed: c.seed}
	err := t.run(ctx)
	t.report(os.Stdout, err)
	if len(t.v.snapshot()) > 0 {
		// Every operation of the run (the last 100,000), for the violations' context.
		if f, ferr := os.Create(t.v.file + ".ops"); ferr == nil {
			for _, l := range t.log.last(100000) {
				fmt.Fprintln(f, l)
			}
			f.Close()
		}
	}
	if err != nil {
		return nil, "", err
	}
	if n := len(t.v.snapshot()); n > 0 {
		return nil, "", fmt.Errorf("%d invariant violations (seed %d; replay: go run ./cmd/backupbench torture --duration %s --seed %d)", n, c.seed, c.duration, c.seed)
	}
	return nil, "", nil
}

func (t *tortureRun) run(ctx context.Context) error {
	c := t.cfg
	t.logf("torture run: seed %d, %s, %d replicas, %d clients", c.seed, c.duration, c.replicas, c.clients)
	root, err := repoRoot()
	if err != nil {
		return err
	}
	gwBin, err := ensureVersity(ctx, root, t.logf)
	if err != nil {
		return err
	}
	if t.dir, err = os.MkdirTemp(c.tmp, "torture-*"); err != nil {
		return err
	}
	if c.keep {
		t.logf("temporary directory (kept): %s", t.dir)
	} else {
		defer os.RemoveAll(t.dir)
	}
	if t.v.file = c.logFile; t.v.file == "" {
		t.v.file = filepath.Join(filepath.Dir(t.dir), fmt.Sprintf("torture-%d.log", c.seed))
	}
	_ = os.Remove(t.v.file)

	// Build backupd while MariaDB and versitygw start.
	var bin string
	var buildErr error
	var wg sync.WaitGroup
	wg.Go(func() { bin, buildErr = buildBackupd(ctx, root, t.dir) })
	t.db, err = startPrivateDB(ctx, filepath.Join(t.dir, "mariadb"))
	if err != nil {
		wg.Wait()
		return err
	}
	defer t.db.stop()
	if t.gw, err = startGateway(ctx, gwBin, filepath.Join(t.dir, "versitygw")); err != nil {
		wg.Wait()
		return err
	}
	defer t.gw.proc.stop(5 * time.Second)
	wg.Wait()
	if buildErr != nil {
		return buildErr
	}
	s3c := t.gw.s3Client()
	t.bucket, t.prefix = "torture-"+randomHex(4), "tt"
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(t.bucket)}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	admin, err := sql.Open("mysql", t.db.dsn(""))
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE torture"); err != nil {
		return err
	}
	catalog, err := sql.Open("mysql", t.db.dsn("torture"))
	if err != nil {
		return err
	}
	defer catalog.Close()

	// Faults sit between the replicas and both servers.
	zerolog.SetGlobalLevel(zerolog.Disabled) // toxiproxy's toxics log through the global logger
	t.fp = newFaultProxy()
	defer t.fp.close()
	mysqlProxy, err := t.fp.add("mysql", t.db.addr())
	if err != nil {
		return err
	}
	s3Proxy, err := t.fp.add("s3", strings.TrimPrefix(t.gw.endpoint, "http://"))
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	proxied := &privateDB{port: strings.TrimPrefix(mysqlProxy, "127.0.0.1:")}
	dsn := proxied.dsn("torture") + "&readTimeout=30s&writeTimeout=30s"
	args := []string{"--mysql-dsn", dsn, "--memory-budget", c.budget.String(), "--part-size", fmt.Sprint(c.partSize),
		"--max-connections", "16", "--revalidate-interval", "0", "--allow-endpoints", "127.0.0.1/32", "--cleanup-interval", "7s",
		"--gc-grace", c.gcGrace.String(), "--upload-ttl", c.uploadTTL.String(), "--shutdown-timeout", "2s", "--log-level", "warn",
		// Every pack with a dead body is repacked by each cleanup, and retired packs go a
		// second later: repacks run under kills, faults, dedup against the bodies they move and
		// restores that may find their pack gone and must follow the blob to its new pack.
		"--repack-below", "1", "--repack-grace", "1s"}
	env := minimalEnv("BACKUPD_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key))
	for i := range c.replicas {
		r, err := newReplica(fmt.Sprintf("r%d", i), bin, t.dir, args, env)
		if err != nil {
			return err
		}
		t.reps = append(t.reps, r)
	}
	defer func() {
		for _, r := range t.reps {
			r.stop()
		}
	}()
	// The first replica alone creates the schema.
	if err := t.reps[0].start(ctx); err != nil {
		return err
	}
	for _, r := range t.reps[1:] {
		if err := r.start(ctx); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	resp, err := t.reps[0].stores.RegisterStorage(rctx, &pb.RegisterStorageRequest{Name: "torture", Region: t.gw.region,
		Bucket: t.bucket, AccessKeyId: t.gw.key, SecretAccessKey: t.gw.secret, Endpoint: "http://" + s3Proxy,
		PathStyle: true, Prefix: t.prefix, MakeDefault: true})
	cancel()
	if err != nil {
		return fmt.Errorf("RegisterStorage: %w", err)
	}
	t.storageID = resp.GetStorage().GetId()
	t.logf("MariaDB %s (proxy %s), versitygw %s (proxy %s), bucket %s, storage %s, replicas %d",
		t.db.addr(), mysqlProxy, t.gw.endpoint, s3Proxy, t.bucket, t.storageID, len(t.reps))

	rng := mrand.New(mrand.NewPCG(c.seed, 0x70274e))
	t.m = newModel(rng, c.partSize)
	t.retentionOrgs = map[string]bool{}
	for i := range 5 {
		org := orgID(i)
		t.orgs = append(t.orgs, org)
		if i >= 3 {
			t.retentionOrgs[org] = true
		}
	}

	// The run.
	runCtx, stopRun := context.WithTimeout(ctx, c.duration)
	var bg sync.WaitGroup
	for i := range c.clients {
		cl := &client{t: t, id: i, rng: mrand.New(mrand.NewPCG(c.seed, uint64(i+1)))}
		bg.Go(func() { cl.run(runCtx) })
	}
	chaosRng := mrand.New(mrand.NewPCG(c.seed, 0xc4a05))
	faultRng := mrand.New(mrand.NewPCG(c.seed, 0xfa017))
	bg.Go(func() { t.killer(runCtx, chaosRng) })
	bg.Go(func() { t.dbRestarter(runCtx) })
	if c.faults {
		bg.Go(func() { t.injector(runCtx, faultRng) })
	}
	bg.Go(func() { t.monitor(runCtx) })
	progress := time.NewTicker(15 * time.Second)
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-progress.C:
			t.logf("%s", t.progressLine())
		}
	}
	progress.Stop()
	bg.Wait()
	stopRun()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	t.logf("run over: %s", t.progressLine())
	fctx, cancelFinal := context.WithTimeout(ctx, c.finalTimeout)
	defer cancelFinal()
	return t.final(fctx, catalog, s3c)
}

// orgID returns the i-th org id of the run (18 characters).
func orgID(i int) string {
	return csvgen.ID("00D", int64(1000+i))
}

func (t *tortureRun) progressLine() string {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	return fmt.Sprintf("backups %d committed %d, chunks %d, files %d (dedup %d), restores %d, resumes %d, kills %d, faults %d, violations %d",
		t.counts["backups_created"], t.counts["backups_committed"], t.counts["chunks_uploaded"], t.counts["files_uploaded"],
		t.counts["files_deduplicated"], t.counts["restores"], t.counts["resumes"], t.faultN["kill -9 replica"], sumMap(t.faultN), len(t.v.snapshot()))
}

func sumMap[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// killer kill -9s a random replica now and then and restarts it at once on the same port.
func (t *tortureRun) killer(ctx context.Context, rng *mrand.Rand) {
	if t.cfg.killEvery <= 0 {
		return
	}
	for {
		d := t.cfg.killEvery/2 + time.Duration(rng.Int64N(int64(t.cfg.killEvery)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		r := t.reps[rng.IntN(len(t.reps))]
		if r.kill() {
			t.fault("kill -9 replica")
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		if err := r.start(context.WithoutCancel(ctx)); err != nil {
			t.v.add("replicas restart", "new", "restart %s: %v", r.name, err)
		}
	}
}

// dbRestarter kills and restarts the private MariaDB --db-restarts times, evenly spread.
func (t *tortureRun) dbRestarter(ctx context.Context) {
	n := t.cfg.dbRestarts
	for i := 1; i <= n; i++ {
		at := t.start.Add(t.cfg.duration * time.Duration(i) / time.Duration(n+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		t.fault("MariaDB kill -9 and restart")
		if err := t.db.restart(context.WithoutCancel(ctx)); err != nil {
			t.v.add("MariaDB restarts", "harness", "restart MariaDB: %v", err)
			return
		}
	}
}

// injector adds one toxic after another between the replicas and MariaDB or versitygw.
func (t *tortureRun) injector(ctx context.Context, rng *mrand.Rand) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		// quiet gaps between faults, so that long operations (a verify reading every object) can
		// complete between them, as they must when faults are rare
		case <-time.After(time.Duration(1000+rng.IntN(3000)) * time.Millisecond):
		}
		proxy := []string{"s3", "mysql"}[rng.IntN(2)]
		d := time.Duration(300+rng.IntN(2500)) * time.Millisecond
		var err error
		switch k := rng.IntN(10); {
		case k < 3:
			t.fault(proxy + " latency")
			err = t.fp.toxic(ctx, proxy, "latency", []string{"upstream", "downstream"}[rng.IntN(2)],
				fmt.Sprintf(`{"latency":%d,"jitter":%d}`, 20+rng.IntN(200), rng.IntN(50)), 1, d)
		case k < 5:
			t.fault(proxy + " stall")
			err = t.fp.toxic(ctx, proxy, "timeout", []string{"upstream", "downstream"}[rng.IntN(2)], `{"timeout":0}`, 0.5, min(d, 2500*time.Millisecond))
		case k < 7:
			t.fault(proxy + " connection reset")
			err = t.fp.toxic(ctx, proxy, "reset_peer", "upstream", fmt.Sprintf(`{"timeout":%d}`, rng.IntN(300)), 0.3, min(d, time.Second))
		case k < 9:
			t.fault(proxy + " connections cut")
			err = t.fp.cut(proxy)
		default:
			t.fault(proxy + " bandwidth limit")
			err = t.fp.toxic(ctx, proxy, "bandwidth", "downstream", `{"rate":2048}`, 1, d)
		}
		if err != nil {
			t.logf("fault injection: %v", err)
		}
	}
}

// monitor samples the replicas' peak RSS and notices replicas that died by themselves.
func (t *tortureRun) monitor(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, r := range t.reps {
			r.sampleRSS()
			if msg, ok := r.exitedUnasked(); ok {
				t.v.add("no replica crashes by itself", "new", "%s", msg)
				if err := r.start(ctx); err != nil && ctx.Err() == nil {
					t.logf("restart %s: %v", r.name, err)
				}
			}
		}
	}
}

// final turns faults off, waits past the grace period and the upload TTL, runs cleanup, and
// checks every invariant against the model, the catalog and the bucket.
func (t *tortureRun) final(ctx context.Context, catalog *sql.DB, s3c *s3.Client) error {
	for _, p := range t.fp.proxies {
		p.Toxics.ResetToxics(ctx)
	}
	for _, r := range t.reps {
		r.mu.Lock()
		dead := r.proc == nil
		r.mu.Unlock()
		if dead {
			if err := r.start(ctx); err != nil {
				return err
			}
		}
	}
	cl := &client{t: t, id: 99, rng: mrand.New(mrand.NewPCG(t.cfg.seed, 99))}
	// Every committed backup, before cleanup.
	t.logf("final: restoring every committed backup")
	t.checkAll(ctx, "final, before cleanup")

	wait := max(t.cfg.gcGrace, t.cfg.uploadTTL) + 3*time.Second
	t.logf("final: waiting %s (past --gc-grace and --upload-ttl), then cleanup on every replica", wait)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
	}
	for pass := range 2 {
		if pass > 0 {
			// Past --repack-grace: the second pass deletes what the first one's repacks
			// retired, so that the replicas' scheduled cleanups find nothing left to change
			// while the bucket and the catalog are compared.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
		}
		for _, r := range t.reps {
			err := cl.unary(ctx, "RunCleanup", func(actx context.Context, _ *replica) error {
				resp, err := r.maint.RunCleanup(actx, &pb.RunCleanupRequest{})
				if err == nil {
					t.logf("final cleanup %d on %s: expired %d, deleted %d objects, garbage %d, uploads aborted %d, skipped %d",
						pass+1, r.name, resp.GetBackupsExpired(), resp.GetObjectsDeleted(), resp.GetGarbageDeleted(), resp.GetUploadsAborted(), resp.GetSkipped())
				}
				return err
			})
			if err != nil {
				t.v.add("final cleanup succeeds", "new", "RunCleanup on %s: %v", r.name, err)
			}
		}
	}
	t.logf("final: restoring every committed backup again, checking catalog and bucket")
	t.checkAll(ctx, "final, after cleanup")
	t.checkRetention(ctx, cl)
	t.checkAbandoned(ctx, cl)
	if err := t.checkStore(ctx, catalog, s3c); err != nil {
		return err
	}
	for _, r := range t.reps {
		r.sampleRSS()
		limit := int64(t.cfg.budget) + memOverhead
		if r.peakRSS > limit {
			t.v.add("RSS stays within the budget", "7", "%s peak RSS %d MiB > budget %s + %d MiB", r.name, r.peakRSS>>20, t.cfg.budget.String(), memOverhead>>20)
		}
	}
	return nil
}

// checkAll restores every backup the model holds as committed, four at a time.
func (t *tortureRun) checkAll(ctx context.Context, why string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var n atomic.Int64
	for i, b := range t.m.all() {
		if b.get() != mCommitted {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cl := &client{t: t, id: 100 + i%4, rng: mrand.New(mrand.NewPCG(t.cfg.seed, uint64(1000+i)))}
			if cl.checkBackup(ctx, b, why) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	t.logf("%s: %d committed backups restored byte-identical", why, n.Load())
}

// checkRetention: of each org with a policy, the newest keep_last committed backups (the
// smallest keep_last ever set) must still be committed.
func (t *tortureRun) checkRetention(ctx context.Context, cl *client) {
	for org := range t.retentionOrgs {
		t.m.mu.Lock()
		keep, ok := t.m.keepLast[org]
		t.m.mu.Unlock()
		if !ok {
			continue
		}
		var bs []*mBackup
		for _, b := range t.m.all() {
			// A backup whose commit (or delete) answer was lost may be
			// committed: it may hold one of the kept places, so it counts
			// in the ranking, but only one seen expired is a violation.
			if st := b.get(); b.org == org && (st == mCommitted || st == mGone || st == mUnknown) {
				bs = append(bs, b)
			}
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].started.After(bs[j].started) })
		for i, b := range bs {
			if i >= int(keep) {
				break
			}
			if b.get() == mGone {
				t.v.add("retention keeps the newest keep_last backups", "12", "org %s keep_last %d: backup %s (newest #%d, started %s) was expired",
					org, keep, b.id, i+1, b.started.Format(time.RFC3339Nano))
			}
		}
	}
}

// checkAbandoned: uploads left behind by abandoned backups are no longer pending after cleanup
// past the TTL.
func (t *tortureRun) checkAbandoned(ctx context.Context, cl *client) {
	for _, b := range t.m.all() {
		b.mu.Lock()
		ups := slices.Clone(b.abandoned)
		// Finished uploads of backups left OPEN stay committed with the result first answered.
		done := map[string]string{} // upload id → sha256
		if b.state == mOpen {
			for _, s := range b.sets {
				for _, ch := range s.chunks {
					if ch.result != nil {
						done[ch.uploadID] = ch.result.GetSha256()
					}
				}
			}
			for _, f := range b.files {
				done[f.uploadID] = f.result.GetSha256()
			}
		}
		b.mu.Unlock()
		for up, sum := range done {
			var u *pb.Upload
			err := cl.unary(ctx, "QueryUploadStatus", func(actx context.Context, r *replica) error {
				var err error
				u, err = cl.query(actx, r, b.id, up)
				return err
			})
			if err == nil && (u.GetState() != pb.UploadState_UPLOAD_STATE_COMMITTED || u.GetResult().GetSha256() != sum) {
				t.v.add("every finished upload is durable", "1", "backup %s (OPEN) upload %s: %s, result %v; it finished with sha256 %s",
					b.id, up, u.GetState(), u.GetResult(), sum)
			}
		}
		for _, up := range ups {
			var u *pb.Upload
			err := cl.unary(ctx, "QueryUploadStatus", func(actx context.Context, r *replica) error {
				var err error
				u, err = cl.query(actx, r, b.id, up)
				return err
			})
			if err == nil && u.GetState() == pb.UploadState_UPLOAD_STATE_PENDING {
				t.v.add("cleanup ends uploads past their TTL", "12", "backup %s upload %s still PENDING after cleanup past the TTL", b.id, up)
			}
		}
	}
}

// checkStore compares the catalog with the bucket: every key has a row and every row its key;
// no multipart upload is left; every object row is referenced; committed manifests list every
// file and chunk the model holds.
func (t *tortureRun) checkStore(ctx context.Context, db *sql.DB, s3c *s3.Client) error {
	keys := map[string]int64{}
	var token *string
	for {
		out, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(t.bucket), ContinuationToken: token})
		if err != nil {
			return fmt.Errorf("list bucket: %w", err)
		}
		for _, o := range out.Contents {
			keys[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		token = out.NextContinuationToken
	}
	rows := map[string]string{} // full key → kind
	// Objects, and packs (small files' bodies, one object each).
	q, err := db.QueryContext(ctx, "SELECT object_key, kind FROM objects UNION ALL SELECT object_key, 'pack' FROM packs")
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	for q.Next() {
		var k, kind string
		if err := q.Scan(&k, &kind); err != nil {
			q.Close()
			return err
		}
		rows[t.prefix+"/"+k] = kind
	}
	q.Close()
	if err := q.Err(); err != nil {
		return err
	}
	var stray, missing []string
	for k := range keys {
		if _, ok := rows[k]; !ok {
			stray = append(stray, k)
		}
	}
	for k, kind := range rows {
		if _, ok := keys[k]; !ok {
			missing = append(missing, k+" ("+kind+")")
		}
	}
	slices.Sort(stray)
	slices.Sort(missing)
	if len(stray) > 0 {
		t.v.add("no object in the bucket without a catalog row after GC", "8", "%d stray keys, e.g. %v", len(stray), stray[:min(10, len(stray))])
	}
	if len(missing) > 0 {
		t.v.add("no catalog row without its object", "1", "%d rows without their object, e.g. %v", len(missing), missing[:min(10, len(missing))])
	}
	mp, err := s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(t.bucket)})
	if err != nil {
		return fmt.Errorf("list multipart uploads: %w", err)
	}
	if n := len(mp.Uploads); n > 0 {
		var ks []string
		for _, u := range mp.Uploads[:min(10, n)] {
			ks = append(ks, aws.ToString(u.Key))
		}
		t.v.add("no leaked multipart upload after cleanup", "12", "%d multipart uploads left, e.g. %v", n, ks)
	}
	var pending int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM uploads WHERE state = 'PENDING'").Scan(&pending); err != nil {
		return err
	}
	if pending > 0 {
		t.v.add("cleanup ends uploads past their TTL", "12", "%d uploads still PENDING after cleanup past the TTL", pending)
	}
	// Packs: every pack row still holds a body some file references (deleting the last
	// backup that uses a pack deletes it).
	var deadPacks []string
	// A RETIRED pack (repacked) holds no blob by construction and waits out --repack-grace.
	dq, err := db.QueryContext(ctx, `SELECT p.object_key FROM packs p WHERE p.state = 'SEALED' AND NOT EXISTS (SELECT 1 FROM blobs bl
		JOIN files f ON f.tenant_id = bl.tenant_id AND f.blob_id = bl.id WHERE bl.tenant_id = p.tenant_id AND bl.pack_id = p.id)`)
	if err != nil {
		return err
	}
	for dq.Next() {
		var k string
		if err := dq.Scan(&k); err != nil {
			dq.Close()
			return err
		}
		deadPacks = append(deadPacks, k)
	}
	dq.Close()
	if err := dq.Err(); err != nil {
		return err
	}
	if len(deadPacks) > 0 {
		t.v.add("no pack without a body a file references, after cleanup", "8", "%d packs, e.g. %v", len(deadPacks), deadPacks[:min(10, len(deadPacks))])
	}
	// References: every object row is referenced by a file, a chunk or its backup's manifest.
	unref, err := db.QueryContext(ctx, `SELECT o.object_key, o.kind, COALESCE(o.backup_id, '') FROM objects o
		WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.tenant_id = o.tenant_id AND f.object_id = o.id)
		  AND NOT EXISTS (SELECT 1 FROM record_chunks c WHERE c.tenant_id = o.tenant_id AND (c.data_object_id = o.id OR c.index_object_id = o.id))
		  AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.tenant_id = o.tenant_id AND b.manifest_key = o.object_key)`)
	if err != nil {
		return err
	}
	var orphans []string
	for unref.Next() {
		var k, kind, bid string
		if err := unref.Scan(&k, &kind, &bid); err != nil {
			unref.Close()
			return err
		}
		orphans = append(orphans, fmt.Sprintf("%s (%s, backup %q)", k, kind, bid))
	}
	unref.Close()
	if len(orphans) > 0 {
		t.v.add("refcounts equal references: no object row without a reference", "8", "%d unreferenced object rows, e.g. %v", len(orphans), orphans[:min(10, len(orphans))])
	}
	// Manifests of committed backups list what the model holds.
	for _, b := range t.m.all() {
		if b.get() != mCommitted {
			continue
		}
		var mkey string
		if err := db.QueryRowContext(ctx, "SELECT manifest_key FROM backups WHERE id = ?", b.id).Scan(&mkey); err != nil {
			t.v.add("every committed backup stays in the catalog", "new", "backup %s: %v", b.id, err)
			continue
		}
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.prefix + "/" + mkey)})
		if err != nil {
			t.v.add("every committed backup has its manifest", "6", "backup %s manifest %s: %v", b.id, mkey, err)
			continue
		}
		var man struct {
			Chunks []struct{ SHA256 string } `json:"record_chunks"`
			Files  []struct{ ID string }     `json:"files"`
		}
		err = json.NewDecoder(io.LimitReader(out.Body, 64<<20)).Decode(&man)
		out.Body.Close()
		if err != nil {
			t.v.add("every committed backup has its manifest", "6", "backup %s manifest: %v", b.id, err)
			continue
		}
		got := map[string]bool{}
		for _, f := range man.Files {
			got[f.ID] = true
		}
		nChunks := 0
		for _, s := range b.sets {
			nChunks += len(s.chunks)
		}
		for _, f := range b.files {
			if !got[f.result.GetFileId()] {
				t.v.add("the manifest lists every file of a committed backup", "5", "backup %s: file %s (%s) not in its manifest (%d files listed, %d committed)",
					b.id, f.result.GetFileId(), f.path, len(man.Files), len(b.files))
				break
			}
		}
		if len(man.Files) != len(b.files) || len(man.Chunks) != nChunks {
			t.v.add("the manifest lists every file of a committed backup", "5", "backup %s: manifest lists %d files and %d chunks, the client committed %d and %d",
				b.id, len(man.Files), len(man.Chunks), len(b.files), nChunks)
		}
	}
	t.logf("final: %d keys in the bucket, %d object rows, %d multipart uploads", len(keys), len(rows), len(mp.Uploads))
	return nil
}

// report prints counts, faults and the invariants' outcome.
func (t *tortureRun) report(w io.Writer, runErr error) {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	fmt.Fprintf(w, "\ntorture run: seed %d, duration %s, %d replicas, %d clients, wall %s\n", t.cfg.seed, t.cfg.duration, t.cfg.replicas, t.cfg.clients,
		time.Since(t.start).Round(time.Second))
	fmt.Fprintln(w, "operations:")
	for _, k := range sortedKeys(t.counts) {
		fmt.Fprintf(w, "  %-24s %d\n", k, t.counts[k])
	}
	fmt.Fprintln(w, "faults injected:")
	for _, k := range sortedKeys(t.faultN) {
		fmt.Fprintf(w, "  %-28s %d\n", k, t.faultN[k])
	}
	fmt.Fprintln(w, "error codes seen by clients:")
	for c, n := range t.codes {
		fmt.Fprintf(w, "  %-24s %d\n", c, n)
	}
	for _, r := range t.reps {
		fmt.Fprintf(w, "replica %s: %d starts, peak RSS %d MiB (limit %d MiB)\n", r.name, r.starts, r.peakRSS>>20, (int64(t.cfg.budget)+memOverhead)>>20)
	}
	vs := t.v.snapshot()
	fmt.Fprintf(w, "violations: %d\n", len(vs))
	// Grouped by invariant and the issue-9 item they look like, with the first examples.
	type group struct {
		check, item string
		list        []violation
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, v := range vs {
		k := v.Check + "\x00" + v.Item
		g := byKey[k]
		if g == nil {
			g = &group{check: v.Check, item: v.Item}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.list = append(g.list, v)
	}
	for _, g := range groups {
		fmt.Fprintf(w, "  %d × %s (looks like issue 9 item %s), e.g.:\n", len(g.list), g.check, g.item)
		for _, v := range g.list[:min(3, len(g.list))] {
			d := v.Detail
			if len(d) > 600 {
				d = d[:600] + "…"
			}
			fmt.Fprintf(w, "      [%s] %s\n", v.At, d)
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(w, "the operations before each violation are in %s (every operation: %s.ops)\n", t.v.file, t.v.file)
	}
	if runErr != nil {
		fmt.Fprintf(w, "run failed: %v\n", runErr)
	}
	fmt.Fprintf(w, "replay: go run ./cmd/backupbench torture --duration %s --seed %d\n", t.cfg.duration, t.cfg.seed)
}

func sortedKeys(m map[string]int64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
