package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"backupstore/internal/testenv"
	pb "backupstore/proto/backupstore/v1"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs backupd with args in the background; it returns a client
// connection, the log buffer and a stop function that returns run's error.
func start(t *testing.T, args ...string) (*grpc.ClientConn, *lockedBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	// The tests' versitygw is on 127.0.0.1, as an operator would allow an on-prem S3.
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0", "--allow-endpoints", "127.0.0.1/32"}, args...), logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("backupd exited: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("backupd did not start\n%s", logs.String())
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("backupd did not stop")
			}
			conn.Close()
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return conn, logs, stop
}

func TestDefaultsStartServeAndStop(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // no flags at all apart from the port: ./backupd-data is used
	conn, logs, stop := start(t)
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "backupstore.v1.StorageService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	c := pb.NewStorageServiceClient(conn)
	if _, err := c.ListStorages(context.Background(), &pb.ListStoragesRequest{}); err != nil {
		t.Fatalf("ListStorages with --auth=none: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, f := range []string{"backupd-data/catalog.db", "backupd-data/master.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "backupd-data/master.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("master.key mode %v", fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "backupd serving") || !strings.Contains(logs.String(), "stopped") {
		t.Errorf("logs:\n%s", logs.String())
	}
	// A second start reuses the same master key and catalog.
	key1, _ := os.ReadFile(filepath.Join(dir, "backupd-data/master.key"))
	_, _, stop2 := start(t)
	stop2()
	key2, _ := os.ReadFile(filepath.Join(dir, "backupd-data/master.key"))
	if !bytes.Equal(key1, key2) {
		t.Fatal("master key regenerated on restart")
	}
}

func TestTokenAuthMySQLAndSecretsStayOutOfLogs(t *testing.T) {
	gw := testenv.VersityGW(t)
	bucket := gw.NewBucket(t)
	dir := t.TempDir()
	tok := "backupd-test-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(tok))
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(hex.EncodeToString(sum[:])+" acme\n"), 0o600)
	keyFile := filepath.Join(dir, "master.key")
	os.WriteFile(keyFile, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600)
	conn, logs, stop := start(t, "--data-dir", dir, "--auth", "token", "--tokens-file", tokens,
		"--mysql-dsn", testenv.MySQLDSN(t), "--master-key-file", keyFile, "--log-format", "json", "--log-level", "debug")
	c := pb.NewStorageServiceClient(conn)
	_, err := c.ListStorages(context.Background(), &pb.ListStoragesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	resp, err := c.RegisterStorage(ctx, &pb.RegisterStorageRequest{Name: "s", Region: "us-east-1", Bucket: bucket,
		AccessKeyId: gw.RootKey, SecretAccessKey: gw.RootSecret, Endpoint: gw.Endpoint, PathStyle: true})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if _, err := c.RegisterStorage(ctx, &pb.RegisterStorageRequest{Name: "w", Region: "us-east-1", Bucket: bucket, Prefix: "w",
		AccessKeyId: gw.RootKey, SecretAccessKey: "wrong-secret-value-123", Endpoint: gw.Endpoint, PathStyle: true}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("wrong secret: %v", err)
	}
	stop()
	out := logs.String()
	if !strings.Contains(out, resp.Storage.Id) {
		t.Fatalf("expected the registration in the logs:\n%s", out)
	}
	for _, s := range []string{gw.RootSecret, "wrong-secret-value-123"} {
		if strings.Contains(out, s) {
			t.Fatalf("secret %q in logs", s)
		}
	}
}

func TestGracefulShutdownLetsInFlightCallsFinish(t *testing.T) {
	// An endpoint that accepts connections and never answers keeps a
	// RegisterStorage call busy for --probe-timeout.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conn, _, stop := start(t, "--data-dir", t.TempDir(), "--probe-timeout", "1500ms", "--shutdown-timeout", "20s")
	c := pb.NewStorageServiceClient(conn)
	errc := make(chan error, 1)
	go func() {
		_, err := c.RegisterStorage(context.Background(), &pb.RegisterStorageRequest{Name: "s", Region: "us-east-1",
			Bucket: "some-bucket", AccessKeyId: "k", SecretAccessKey: "s", Endpoint: "http://" + lis.Addr().String(), PathStyle: true})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond) // the call is in flight
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	err = <-errc
	st, _ := status.FromError(err)
	reason := ""
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			reason = ei.Reason
		}
	}
	// The handler's own answer arrived (not a connection torn down mid-call).
	if st.Code() != codes.Unavailable || reason != "STORAGE_UNREACHABLE" {
		t.Fatalf("in-flight call ended with %v (reason %q), want the handler's STORAGE_UNREACHABLE", err, reason)
	}
	if d := time.Since(begin); d < 500*time.Millisecond {
		t.Fatalf("shutdown took %v: it did not wait for the in-flight call", d)
	}
}

func TestEnvOverridesAndBadFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var c config
	newFlags(fs, &c)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BACKUPD_LISTEN": "0.0.0.0:9", "BACKUPD_MYSQL_DSN": "u@tcp(db)/x", "BACKUPD_REVALIDATE_INTERVAL": "5m",
		"BACKUPD_ALLOW_ENDPOINTS": "10.0.0.0/8,s3.corp.example"}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:1" || c.mysqlDSN != "u@tcp(db)/x" || c.revalidateEvery != 5*time.Minute || c.allowEndpoints != "10.0.0.0/8,s3.corp.example" {
		t.Fatalf("config %+v", c)
	}
	if err := applyEnv(fs, func(k string) string {
		if k == "BACKUPD_PROBE_TIMEOUT" {
			return "soon"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "BACKUPD_PROBE_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
	for _, args := range [][]string{
		{"--auth", "magic"},
		{"--auth", "token"},
		{"--mysql-dsn", "root@tcp(127.0.0.1:3306)/test"}, // production catalog without a master key
		{"--default-storage", "s3"},
		{"--allow-endpoints", "10.0.0.0/33"},
		{"--allow-endpoints", "http://s3.corp:9000"},
		{"--repack-below", "0"},
		{"--repack-below", "1.5"},
		{"stray"},
	} {
		var buf bytes.Buffer
		err := run(context.Background(), append(args, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"), &buf, nil)
		if err == nil {
			t.Errorf("run %v: want an error", args)
		}
	}
}

// SIGHUP reloads the tokens file: a revoked token stops working and a new one
// works, without a restart (SIGHUP used to end backupd).
func TestSIGHUPReloadsTokens(t *testing.T) {
	dir := t.TempDir()
	line := func(tok, tenant string) string {
		sum := sha256.Sum256([]byte(tok))
		return hex.EncodeToString(sum[:]) + " " + tenant + "\n"
	}
	old, added := "sighup-old-token-0123456789abcdef", "sighup-new-token-0123456789abcdef"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(line(old, "acme")), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, logs, _ := start(t, "--data-dir", dir, "--auth", "token", "--tokens-file", tokens)
	c := pb.NewStorageServiceClient(conn)
	call := func(tok string) codes.Code {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		_, err := c.ListStorages(ctx, &pb.ListStoragesRequest{})
		return status.Code(err)
	}
	if call(old) != codes.OK || call(added) != codes.Unauthenticated {
		t.Fatal("tokens before the reload")
	}
	if err := os.WriteFile(tokens, []byte(line(added, "acme")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for call(added) != codes.OK || call(old) != codes.Unauthenticated {
		if time.Now().After(deadline) {
			t.Fatalf("tokens not reloaded after SIGHUP\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "tokens file reloaded") || !strings.Contains(logs.String(), "SIGHUP") {
		t.Fatalf("the reload on SIGHUP is not in the log:\n%s", logs.String())
	}
}

// --auth=mtls: the tenant comes from the verified client certificate's SPIFFE
// ID (or CN) through the map; a certificate of another CA, none, or an
// unmapped identity gets nothing; TLS below 1.3 is refused.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := testenv.NewCA(t), testenv.NewCA(t)
	srvCert := ca.Server(t)
	mapFile := filepath.Join(dir, "clients")
	os.WriteFile(mapFile, []byte("# workers\nspiffe://example.org/ns/acme/sa/worker acme\nCN=globex-job globex\n"), 0o600)
	conn, _, _ := start(t, "--data-dir", dir, "--auth", "mtls", "--tls-cert", srvCert.CertFile, "--tls-key", srvCert.KeyFile,
		"--tls-client-ca", ca.File, "--tls-client-map", mapFile)
	addr := conn.Target()
	call := func(cfg *tls.Config) error {
		cfg.RootCAs = ca.Pool()
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = pb.NewBackupServiceClient(c).ListBackups(ctx, &pb.ListBackupsRequest{})
		return err
	}
	with := func(l *testenv.Leaf) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{l.Pair}} }
	if err := call(with(ca.Client(t, "worker", "spiffe://example.org/ns/acme/sa/worker"))); err != nil {
		t.Fatalf("mapped SPIFFE ID: %v", err)
	}
	if err := call(with(ca.Client(t, "globex-job", ""))); err != nil {
		t.Fatalf("mapped CN: %v", err)
	}
	if err := call(with(ca.Client(t, "stranger", "spiffe://example.org/ns/x/sa/y"))); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unmapped identity: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{
		"another CA's certificate": with(other.Client(t, "globex-job", "")),
		"no certificate":           {},
		"TLS 1.2":                  {Certificates: []tls.Certificate{ca.Client(t, "globex-job", "").Pair}, MaxVersion: tls.VersionTLS12},
	} {
		if err := call(cfg); status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: %v, want the handshake refused", name, err)
		}
	}
}

// Bearer tokens, or no auth, are not served in plaintext on a non-loopback
// address unless --insecure-listen says a proxy terminates TLS (checked
// before anything listens).
func TestPlaintextOnTheNetworkIsRefused(t *testing.T) {
	dir := t.TempDir()
	err := run(context.Background(), []string{"--data-dir", dir, "--listen", "0.0.0.0:0"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "--insecure-listen") {
		t.Fatalf("--auth=none on 0.0.0.0 without TLS: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if !loopbackListen(addr) {
			t.Fatalf("%s is loopback", addr)
		}
	}
	for _, addr := range []string{"0.0.0.0:1", ":1", "10.0.0.1:1", "[::]:1", "example.org:1"} {
		if loopbackListen(addr) {
			t.Fatalf("%s is not loopback", addr)
		}
	}
}
