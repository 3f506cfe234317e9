package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	pb "backupstore/proto/backupstore/v1"
)

// commonConfig is what every benchmark command takes.
type commonConfig struct {
	mysql   string
	timeout time.Duration
	tmp     string
	keep    bool
	output  string
}

func commonFlags(fs *flag.FlagSet, c *commonConfig, timeout time.Duration) {
	fs.StringVar(&c.mysql, "mysql", "root@tcp(127.0.0.1:3306)/", "MariaDB/MySQL server (a database bs_bench_<random> is created there and dropped)")
	fs.DurationVar(&c.timeout, "timeout", timeout, "bound on the whole run")
	fs.StringVar(&c.tmp, "tmp", "", "parent of the temporary directory (default $TMPDIR)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (logs, CSVs) for inspection")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
}

func (c *commonConfig) validate() error {
	if c.output != "table" && c.output != "json" {
		return fmt.Errorf("-o must be table or json, not %q", c.output)
	}
	return nil
}

// parseCommand parses the flags of the benchmark command name into c: define declares them
// (and sets c's defaults), c's validate checks them.
func parseCommand[C interface{ validate() error }](name string, args []string, stderr io.Writer, c C, define func(*flag.FlagSet, C)) error {
	fs := flag.NewFlagSet("backupbench "+name, flag.ContinueOnError)
	define(fs, c)
	return parseFlags(fs, args, stderr, c.validate)
}

// parseFlags parses args into fs; errUsage on a bad command line, flag.ErrHelp for -h.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, validate func() error) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	if err := validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	return nil
}

// harness is the environment of one benchmark run (temporary directory, database, versitygw and
// its bucket, the backupd binary, rclone) and its report. It is shared by every command.
type harness struct {
	cc     commonConfig
	stderr io.Writer
	start  time.Time
	root   string
	dir    string
	gw     *gateway
	s3     *s3.Client
	bucket string
	db     *database
	dcfg   daemonConfig
	rclone string // "" when unavailable or not wanted
	rep    *report
	cpu    *cpuMeter

	cleanups []func()
}

func newHarness(name, command string, cc commonConfig, stderr io.Writer, config map[string]any) *harness {
	h := &harness{cc: cc, stderr: stderr, start: time.Now(), cpu: newCPUMeter()}
	h.rep = &report{Benchmark: name, Started: h.start, Command: command, Machine: machineInfo(),
		Runs: map[string][]float64{}, CPU: map[string]cpuUse{}, Config: config}
	return h
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.stderr, "[%6.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) onCleanup(f func()) { h.cleanups = append(h.cleanups, f) }

// execute runs body under --timeout, then every cleanup (also on failure or interrupt), and
// completes the report.
func (h *harness) execute(ctx context.Context, body func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, h.cc.timeout)
	defer cancel()
	err := body(ctx)
	dl, _ := ctx.Deadline()
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded), !time.Now().Before(dl): // gRPC's own deadline timer may fire first
		err = fmt.Errorf("stopped by --timeout %s: %w", h.cc.timeout, err)
	case ctx.Err() != nil:
		err = fmt.Errorf("interrupted: %w", err)
	}
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
	h.rep.Machine.LoadAfter = loadavg()
	h.rep.Duration = time.Since(h.start).Round(100 * time.Millisecond).String()
	if err != nil {
		h.rep.Error = err.Error()
	}
	return err
}

// envOptions says what setupEnv prepares besides the database, gateway and backupd binary.
type envOptions struct {
	rclone     bool                            // find or build rclone
	skipRclone bool                            // the user said --skip-rclone (noted in the report)
	budget     string                          // backupd --memory-budget
	partSize   string                          // backupd --part-size
	overlap    func(ctx context.Context) error // runs while backupd (and rclone) build, e.g. CSV generation
}

// countingProxy starts the counting S3 proxy in front of the gateway's bucket, closed at
// cleanup, and names it in the report.
func (h *harness) countingProxy() (*s3Proxy, error) {
	p, err := startProxy(h.gw.endpoint, h.bucket)
	if err != nil {
		return nil, err
	}
	h.onCleanup(p.close)
	h.rep.Machine.Proxy = "counting S3 proxy (bench process) at " + p.endpoint
	return p, nil
}

// setupEnv creates the temporary directory, the database, the gateway and its bucket, and
// builds backupd (and rclone if wanted) while o.overlap runs.
func (h *harness) setupEnv(ctx context.Context, o envOptions) error {
	var err error
	if h.root, err = repoRoot(); err != nil {
		return err
	}
	gwBin, err := ensureVersity(ctx, h.root, h.logf)
	if err != nil {
		return err
	}
	if h.dir, err = os.MkdirTemp(h.cc.tmp, "backupbench-*"); err != nil {
		return err
	}
	if h.cc.keep {
		h.logf("temporary directory (kept): %s", h.dir)
	} else {
		dir := h.dir
		h.onCleanup(func() {
			if err := os.RemoveAll(dir); err != nil {
				h.logf("cleanup: %v", err)
			}
		})
	}

	// rclone takes its remote from the environment; an empty config file keeps it quiet.
	if err := os.WriteFile(filepath.Join(h.dir, "rclone.conf"), nil, 0o600); err != nil {
		return err
	}
	if h.db, err = createDatabase(ctx, h.cc.mysql); err != nil {
		return err
	}
	h.rep.Machine.MariaDB = h.db.version
	db := h.db
	h.onCleanup(func() {
		if err := db.drop(); err != nil {
			h.logf("cleanup: %v", err)
		}
	})
	h.logf("database %s created", db.name)

	if h.gw, err = startGateway(ctx, gwBin, filepath.Join(h.dir, "versitygw")); err != nil {
		return err
	}
	h.onCleanup(func() { h.gw.proc.stop(5 * time.Second) })
	h.cpu.set("versitygw", h.gw.proc.pid())
	h.cpu.set("mariadb", findProcs("mariadbd", "mysqld")...)
	h.rep.Machine.VersityGW = binVersion(ctx, gwBin, "--version")
	h.s3 = h.gw.s3Client()
	h.bucket = "bench-" + randomHex(4)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = h.s3.CreateBucket(cctx, &s3.CreateBucketInput{Bucket: aws.String(h.bucket)})
	cancel()
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	h.logf("versitygw at %s, bucket %s", h.gw.endpoint, h.bucket)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h.dcfg = daemonConfig{dir: h.dir, dsn: h.db.dsn, masterKey: base64.StdEncoding.EncodeToString(key),
		budget: o.budget, partSize: o.partSize}

	// Building and generating overlap; nothing is measured yet.
	var wg sync.WaitGroup
	var buildErr, rcloneErr error
	wg.Go(func() {
		h.logf("building backupd")
		h.dcfg.bin, buildErr = buildBackupd(ctx, h.root, h.dir)
	})
	wantRclone := o.rclone && !o.skipRclone
	if wantRclone {
		wg.Go(func() { h.rclone, rcloneErr = ensureRclone(ctx, h.root, h.logf) })
	}
	var genErr error
	if o.overlap != nil {
		genErr = o.overlap(ctx)
	}
	wg.Wait()
	if err := errors.Join(genErr, buildErr); err != nil {
		return err
	}
	switch {
	case o.rclone && o.skipRclone:
		h.rep.Notes = append(h.rep.Notes, "rclone skipped (--skip-rclone): no rclone figures.")
	case wantRclone && rcloneErr != nil:
		h.rep.Notes = append(h.rep.Notes, "rclone could not be built, so it was not measured: "+rcloneErr.Error())
		h.logf("rclone unavailable: %v", rcloneErr)
		h.rclone = ""
	case wantRclone:
		h.rep.Machine.Rclone = binVersion(ctx, h.rclone, "version")
	}
	return ctx.Err()
}

// registerStorage registers the gateway's bucket, at endpoint (the gateway's own or a proxy's)
// under prefix, as a storage of the tenant and returns its id.
func (h *harness) registerStorage(ctx context.Context, d *daemon, name, endpoint, prefix string, makeDefault bool) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := d.stores.RegisterStorage(cctx, &pb.RegisterStorageRequest{Name: name, Region: h.gw.region,
		Bucket: h.bucket, AccessKeyId: h.gw.key, SecretAccessKey: h.gw.secret, Endpoint: endpoint,
		PathStyle: true, Prefix: prefix, MakeDefault: makeDefault})
	if err != nil {
		return "", fmt.Errorf("RegisterStorage %s: %w", name, err)
	}
	id := resp.GetStorage().GetId()
	h.logf("storage %s (%s, endpoint %s, prefix %q) registered", name, id, endpoint, prefix)
	return id, nil
}

// noise notes how much of the machine's CPU other processes took during the measurements: the
// wall-time figures move with it.
func (h *harness) noise(stages string, uses map[string][]cpuUse, walls map[string][]time.Duration) {
	var shares []float64
	for name, us := range uses {
		for i, u := range us {
			if i < len(walls[name]) && walls[name][i] > 0 {
				shares = append(shares, u["others"]/(walls[name][i].Seconds()*float64(h.rep.Machine.NProc)))
			}
		}
	}
	if len(shares) == 0 {
		return
	}
	slices.Sort(shares)
	h.rep.Notes = append(h.rep.Notes, fmt.Sprintf("During %s, CPU time not attributed to the benchmark's processes (other users of the machine, kernel threads) was %.0f%% of the machine's capacity in the median measurement (%.0f%% to %.0f%%): "+
		"wall-time figures and their ratios move with that; CPU-seconds per process (in the figure notes) and per-CPU-second rows much less.",
		stages, 100*median(shares), 100*shares[0], 100*shares[len(shares)-1]))
}

// commandLine is how the report names the command that produced it.
func commandLine(name string, args []string) string {
	s := "go run ./cmd/backupbench " + name
	if profileBuilt {
		s = "go run -tags benchprofile ./cmd/backupbench " + name
	}
	if len(args) > 0 {
		s += " " + strings.Join(args, " ")
	}
	return s
}
