package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-sql-driver/mysql"

	"backupstore/internal/testenv"
)

// The child-process helpers the tests use (internal/testenv), under the names this package
// has always called them.
var (
	freePort      = testenv.FreePort
	randomHex     = testenv.RandomHex
	minimalEnv    = testenv.MinimalEnv
	versityBinary = testenv.VersityBinary
	isExecutable  = testenv.IsExecutable
)

// proc is a child process started so that it dies with the benchmark (Pdeathsig), whose exit
// is observed by one goroutine.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string        // file holding its stdout and stderr
	exited chan struct{} // closed when it exited
	err    error         // its exit status, once exited is closed
}

// startProc starts cmd with its output in logPath and SIGKILL as its parent-death signal
// (testenv.StartLocked keeps the forking thread alive for as long as the child runs).
func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	exited := make(chan error, 1)
	if err := testenv.StartLocked(cmd, exited); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = <-exited
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to end (SIGTERM) and kills it if it has not within grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last n bytes of the process's log.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

// waitTCP polls addr until it accepts a connection, the process exits or timeout passes.
func waitTCP(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup (%v); log: %s", p.name, p.err, p.logTail(3000))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %w; log: %s", p.name, addr, timeout, err, p.logTail(3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// vmHWM returns the peak resident set size of process pid (VmHWM in /proc/PID/status), in bytes.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// repoRoot finds the directory of the backupstore go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module backupstore")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run backupbench inside the backupstore repository (no go.mod of module backupstore above the working directory)")
		}
		dir = parent
	}
}

// gateway is a versitygw started for the benchmark.
type gateway struct {
	endpoint, region, key, secret string
	proc                          *proc
}

const benchRegion = "us-east-1"

// startGateway starts versitygw with a posix backend in dir, on a free loopback port.
func startGateway(ctx context.Context, bin, dir string) (*gateway, error) {
	dataDir, iamDir := filepath.Join(dir, "data"), filepath.Join(dir, "iam")
	for _, d := range []string{dataDir, iamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var g *gateway
	err := testenv.OnFreePort(func(port string) error {
		g = &gateway{endpoint: "http://127.0.0.1:" + port, region: benchRegion, key: "bench" + randomHex(6), secret: randomHex(20)}
		cmd := exec.Command(bin, "--port", "127.0.0.1:"+port, "--access", g.key, "--secret", g.secret,
			"--iam-dir", iamDir, "--region", g.region, "--quiet", "posix", dataDir)
		cmd.Env = minimalEnv()
		p, err := startProc("versitygw", cmd, filepath.Join(dir, "versitygw.log"))
		if err != nil {
			return err
		}
		g.proc = p
		if err := waitHTTP(ctx, p, g.endpoint, 20*time.Second); err != nil {
			p.stop(time.Second)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// waitHTTP polls endpoint until any HTTP answer comes back (403 for anonymous means ready).
func waitHTTP(ctx context.Context, p *proc, endpoint string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup (%v); log: %s", p.name, p.err, p.logTail(2000))
		default:
		}
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering on %s after %v: %w", p.name, endpoint, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// s3Client is an SDK client for the gateway: path style, static root credentials, SDK body
// checksums only when required.
func (g *gateway) s3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     g.region,
		BaseEndpoint:               aws.String(g.endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(g.key, g.secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// database is a throw-away MariaDB database.
type database struct {
	admin   *sql.DB
	name    string
	dsn     string // names the database
	version string
}

func createDatabase(ctx context.Context, base string) (*database, error) {
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		return nil, fmt.Errorf("--mysql %q: %w", base, err)
	}
	cfg.DBName = ""
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.PingContext(cctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("MariaDB at %s: %w", cfg.Addr, err)
	}
	d := &database{admin: admin, name: "bs_bench_" + randomHex(6)}
	_ = admin.QueryRowContext(cctx, "SELECT VERSION()").Scan(&d.version)
	if _, err := admin.ExecContext(cctx, "CREATE DATABASE "+d.name); err != nil {
		admin.Close()
		return nil, fmt.Errorf("CREATE DATABASE %s: %w", d.name, err)
	}
	cfg.DBName = d.name
	d.dsn = cfg.FormatDSN()
	return d, nil
}

func (d *database) drop() error {
	defer d.admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+d.name); err != nil {
		return fmt.Errorf("DROP DATABASE %s: %w", d.name, err)
	}
	return nil
}

// buildBackupd builds ./cmd/backupd into dir.
func buildBackupd(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "backupd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/backupd")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/backupd: %v: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

const (
	rcloneModule  = "github.com/rclone/rclone@v1.76.0"
	versityModule = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
)

// ensureRclone returns root/.bin/rclone, building it first if it is missing.
func ensureRclone(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	return ensureTool(ctx, root, "rclone", rcloneModule, logf)
}

// ensureVersity returns the versitygw the tests use ($VERSITYGW_BIN, .bin/versitygw, PATH),
// building it into root/.bin first when there is none, as the test command does.
func ensureVersity(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	if bin, err := versityBinary(root); err == nil {
		return bin, nil
	}
	return ensureTool(ctx, root, "versitygw", versityModule, logf)
}

// ensureTool returns root/.bin/name, building it from module with go install if it is missing.
func ensureTool(ctx context.Context, root, name, module string, logf func(string, ...any)) (string, error) {
	bin := filepath.Join(root, ".bin", name)
	if isExecutable(bin) {
		return bin, nil
	}
	logf("building %s (%s) into %s: this takes minutes", name, module, filepath.Dir(bin))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", module)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin))
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		if len(b) > 1500 {
			b = b[len(b)-1500:]
		}
		return "", fmt.Errorf("go install %s: %v: %s", module, err, bytes.TrimSpace(b))
	}
	if !isExecutable(bin) {
		return "", fmt.Errorf("go install %s did not produce %s", module, bin)
	}
	return bin, nil
}

// binVersion returns the main module and version a Go binary was built from (go version -m),
// else the first line of `bin args...`, else "".
func binVersion(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output(); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" {
				return f[2]
			}
		}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = minimalEnv()
	b, _ := cmd.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.Join(strings.Fields(line), " ")
}

// sqlSampler polls the server's process list for the database's running statements while a
// measurement runs: a sampling profile of where catalog time goes (backupd has no profiler). For
// the statement seen most it also takes the plan MariaDB is running it with (SHOW EXPLAIN FOR).
type sqlSampler struct {
	stop    chan struct{}
	done    chan struct{}
	every   time.Duration
	samples int
	counts  map[string]int    // statement shape → samples seen running
	plans   map[string]string // statement shape → its running plan, once seen 3 times
}

var (
	sqlLiteral = regexp.MustCompile(`'(?:[^'\\]|\\.)*'|\b\d+\b`)
	sqlList    = regexp.MustCompile(`\?(?:, \?)+`)
)

// sqlShape folds whitespace and replaces literals, so that the batches of one statement count
// together.
func sqlShape(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	q = sqlList.ReplaceAllString(sqlLiteral.ReplaceAllString(q, "?"), "?…")
	if len(q) > 160 {
		q = q[:160] + "…"
	}
	return q
}

func (d *database) sample(every time.Duration) *sqlSampler {
	s := &sqlSampler{stop: make(chan struct{}), done: make(chan struct{}), every: every, counts: map[string]int{}, plans: map[string]string{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rows, err := d.admin.QueryContext(ctx, "SELECT ID, COALESCE(INFO, '') FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND IN ('Query', 'Execute')", d.name)
			if err == nil {
				s.samples++
				type running struct {
					id    int64
					shape string
				}
				var seen []running
				for rows.Next() {
					var r running
					var info string
					if rows.Scan(&r.id, &info) == nil && info != "" {
						r.shape = sqlShape(info)
						s.counts[r.shape]++
						seen = append(seen, r)
					}
				}
				rows.Close()
				for _, r := range seen {
					if _, ok := s.plans[r.shape]; !ok && s.counts[r.shape] >= 3 {
						s.plans[r.shape] = d.explain(ctx, r.id)
					}
				}
			}
			cancel()
		}
	}()
	return s
}

// explain returns the plan of the statement connection id is running, condensed to
// "table access key rows" per line; "" if it cannot be had (the statement ended meanwhile).
func (d *database) explain(ctx context.Context, id int64) string {
	rows, err := d.admin.QueryContext(ctx, fmt.Sprintf("SHOW EXPLAIN FOR %d", id))
	if err != nil {
		return ""
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return ""
	}
	var parts []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if rows.Scan(ptrs...) != nil {
			return ""
		}
		get := func(name string) string {
			for i, c := range cols {
				if strings.EqualFold(c, name) && vals[i].Valid {
					return vals[i].String
				}
			}
			return "-"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s: %s key %s rows %s", get("id"), get("select_type"), get("table"), get("type"), get("key"), get("rows")))
	}
	return strings.Join(parts, "; ")
}

// finish stops sampling and describes the statements seen most, e.g. "12 of 40 samples: DELETE …".
func (s *sqlSampler) finish(top int) string {
	close(s.stop)
	<-s.done
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range s.counts {
		all = append(all, kv{k, n})
	}
	if len(all) == 0 {
		return fmt.Sprintf("no catalog statement running in %d samples", s.samples)
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	var parts []string
	for i, e := range all[:min(top, len(all))] {
		p := fmt.Sprintf("%d: %s", e.n, e.k)
		if plan := s.plans[e.k]; i == 0 && plan != "" {
			p += " [plan: " + plan + "]"
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("catalog statements running, in %d samples every %s: %s", s.samples, s.every, strings.Join(parts, " | "))
}
