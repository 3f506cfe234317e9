package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "backupstore/proto/backupstore/v1"
)

// privateDB is a mariadbd of the torture run's own (own datadir, port and socket), so that
// restarting it never disturbs other users of the machine's shared server.
type privateDB struct {
	dir, port string
	mu        sync.Mutex
	proc      *proc
	restarts  int
}

func startPrivateDB(ctx context.Context, dir string) (*privateDB, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	install := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user="+currentUser(),
		"--auth-root-authentication-method=normal", "--skip-test-db")
	if b, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db (Debian package mariadb-server): %v: %s", err, tail(string(b), 1500))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	db := &privateDB{dir: dir, port: port}
	if err := db.start(ctx); err != nil {
		return nil, err
	}
	return db, nil
}

// currentUser is the user mariadbd runs as: itself (mariadbd refuses to run as root unless told).
func currentUser() string {
	if os.Getuid() == 0 {
		return "root"
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func (db *privateDB) addr() string { return "127.0.0.1:" + db.port }

// start runs mariadbd and waits until it accepts SQL.
func (db *privateDB) start(ctx context.Context) error {
	bin := "/usr/sbin/mariadbd"
	if _, err := os.Stat(bin); err != nil {
		if p, lerr := exec.LookPath("mariadbd"); lerr == nil {
			bin = p
		}
	}
	cmd := exec.Command(bin, "--no-defaults", "--datadir="+filepath.Join(db.dir, "data"),
		"--port="+db.port, "--bind-address=127.0.0.1", "--socket="+filepath.Join(db.dir, "mysqld.sock"),
		"--pid-file="+filepath.Join(db.dir, "mysqld.pid"), "--user="+currentUser(),
		"--innodb-buffer-pool-size=128M", "--max-connections=500", "--skip-log-bin")
	cmd.Env = minimalEnv()
	p, err := startProc("mariadbd", cmd, filepath.Join(db.dir, fmt.Sprintf("mariadbd-%d.log", db.restarts)))
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, p, db.addr(), 60*time.Second); err != nil {
		p.stop(time.Second)
		return err
	}
	// TCP accepts before the server answers queries during recovery.
	conn, err := sql.Open("mysql", db.dsn(""))
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err = conn.PingContext(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop(time.Second)
			return fmt.Errorf("private mariadbd not answering: %w; log: %s", err, p.logTail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	db.mu.Lock()
	db.proc = p
	db.mu.Unlock()
	return nil
}

func (db *privateDB) dsn(name string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", db.addr(), name
	cfg.Timeout = 5 * time.Second
	return cfg.FormatDSN()
}

// restart kills mariadbd (SIGKILL: a crash, InnoDB recovers) and starts it again.
func (db *privateDB) restart(ctx context.Context) error {
	db.mu.Lock()
	p := db.proc
	db.restarts++
	db.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	return db.start(ctx)
}

func (db *privateDB) stop() {
	db.mu.Lock()
	p := db.proc
	db.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

// faultProxy is an in-process toxiproxy (127.0.0.1 only) with one proxy per upstream.
type faultProxy struct {
	srv     *toxiproxy.ApiServer
	proxies map[string]*toxiproxy.Proxy
	seq     atomic.Int64
}

func newFaultProxy() *faultProxy {
	logger := zerolog.Nop()
	return &faultProxy{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger),
		proxies: map[string]*toxiproxy.Proxy{}}
}

// add starts a proxy named name in front of upstream and returns its address.
func (f *faultProxy) add(name, upstream string) (string, error) {
	p := toxiproxy.NewProxy(f.srv, name, "127.0.0.1:0", upstream)
	if err := f.srv.Collection.Add(p, true); err != nil {
		return "", fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	f.proxies[name] = p
	return p.Listen, nil
}

// toxic adds a toxic to a proxy for d, then removes it. kind is a toxiproxy type (latency,
// timeout, reset_peer, ...), attrs its JSON attributes.
func (f *faultProxy) toxic(ctx context.Context, proxy, kind, stream, attrs string, toxicity float64, d time.Duration) error {
	p := f.proxies[proxy]
	name := fmt.Sprintf("%s-%d", kind, f.seq.Add(1))
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, name, kind, stream, toxicity, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return fmt.Errorf("toxic %s: %w", js, err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return p.Toxics.RemoveToxic(context.Background(), name)
}

// cut closes every connection through a proxy (both sides see a reset or EOF) and opens it
// again on the same address.
func (f *faultProxy) cut(proxy string) error {
	p := f.proxies[proxy]
	p.Stop()
	return p.Start()
}

func (f *faultProxy) close() {
	for _, p := range f.proxies {
		p.Stop()
	}
}

// replica is one backupd process of the torture run, restarted on the same port after each kill,
// and a client connection to that port (gRPC reconnects by itself).
type replica struct {
	name string
	addr string
	args []string
	env  []string
	bin  string
	dir  string

	mu       sync.Mutex
	proc     *proc
	starts   int
	peakRSS  int64 // highest VmHWM seen over every life of the process
	conn     *grpc.ClientConn
	backups  pb.BackupServiceClient
	restores pb.RestoreServiceClient
	maint    pb.MaintenanceServiceClient
	stores   pb.StorageServiceClient
}

func newReplica(name, bin, dir string, args, env []string) (*replica, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &replica{name: name, addr: "127.0.0.1:" + port, bin: bin, dir: dir, args: args, env: env}
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)))
	if err != nil {
		return nil, err
	}
	r.conn = conn
	r.backups = pb.NewBackupServiceClient(conn)
	r.restores = pb.NewRestoreServiceClient(conn)
	r.maint = pb.NewMaintenanceServiceClient(conn)
	r.stores = pb.NewStorageServiceClient(conn)
	return r, nil
}

// start starts the process and waits until it listens. backupd exits at once when the catalog
// is unreachable (a MariaDB restart): start retries for up to a minute.
func (r *replica) start(ctx context.Context) error {
	dataDir := filepath.Join(r.dir, r.name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 60 && ctx.Err() == nil; attempt++ {
		r.mu.Lock()
		r.starts++
		n := r.starts
		r.mu.Unlock()
		args := append([]string{"--listen", r.addr, "--data-dir", dataDir}, r.args...)
		cmd := exec.Command(r.bin, args...)
		cmd.Env = r.env
		p, err := startProc("backupd "+r.name, cmd, filepath.Join(r.dir, fmt.Sprintf("%s-%03d.log", r.name, n)))
		if err != nil {
			return err
		}
		if lastErr = waitTCP(ctx, p, r.addr, 30*time.Second); lastErr == nil {
			r.mu.Lock()
			r.proc = p
			r.mu.Unlock()
			return nil
		}
		p.stop(time.Second)
		time.Sleep(time.Second)
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return fmt.Errorf("%s: %w", r.name, lastErr)
}

// sampleRSS records the process's VmHWM.
func (r *replica) sampleRSS() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	if hwm, err := vmHWM(r.proc.pid()); err == nil && hwm > r.peakRSS {
		r.peakRSS = hwm
	}
}

// kill sends SIGKILL and waits for the exit; it reports whether a live process was killed.
func (r *replica) kill() bool {
	r.sampleRSS()
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p == nil {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	return true
}

// exitedUnasked reports a process that ended without being killed (a crash of backupd itself).
func (r *replica) exitedUnasked() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return "", false
	}
	select {
	case <-r.proc.exited:
		msg := fmt.Sprintf("%s exited by itself (%v); log: %s", r.name, r.proc.err, r.proc.logTail(1500))
		r.proc = nil
		return msg, true
	default:
		return "", false
	}
}

func (r *replica) stop() {
	r.sampleRSS()
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
	r.conn.Close()
}

// pickOther returns a replica other than not (any, if there is only one).
func pickOther(rng *rand.Rand, rs []*replica, not *replica) *replica {
	if len(rs) == 1 {
		return rs[0]
	}
	for {
		r := rs[rng.IntN(len(rs))]
		if r != not {
			return r
		}
	}
}
