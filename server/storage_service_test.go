package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"backupstore/budget"
	"backupstore/csvscan"
	"backupstore/ingest"
	"backupstore/internal/app"
	"backupstore/internal/testenv"
	"backupstore/maintenance"
	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/registry"
	"backupstore/restore"
	"backupstore/secrets"
	"backupstore/server"
	"backupstore/storage"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one backupd-equivalent server on a loopback port with two tenants.
type env struct {
	t       *testing.T
	client  pb.StorageServiceClient
	backups pb.BackupServiceClient
	ing     *ingest.Service
	rst     *restore.Service
	mnt     *maintenance.Service
	maint   pb.MaintenanceServiceClient
	clockMu sync.Mutex
	offset  time.Duration // the test clock runs this far ahead of real time
	restore pb.RestoreServiceClient
	budget  *budget.Budget
	streams *server.StreamGuard // nil unless envOptions.streams
	local   string              // root of the service-default local storage
	conn    *grpc.ClientConn
	gw      *testenv.GW
	reg     *registry.Registry
	catalog *metadata.Store
	db      *sql.DB // a second connection to the catalog, for grepping it
	driver  string
	logs    *syncBuffer
	secrets []string // every secret sent; none may leak
}

const (
	tokenA = "token-for-tenant-acme-0123456789abcdef"
	tokenB = "token-for-tenant-globex-0123456789abcdef"
)

func hashLine(tok, tenant string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:]) + " " + tenant + "\n"
}

// envOptions change what newEnv wires: testing knobs and a wrapper around
// the service-default (local) store, for fault injection and for parking a
// stream at an exact step.
type envOptions struct {
	ingestHooks   *ingest.Hooks
	wrapStore     func(storage.Store) storage.Store
	conns         *server.ConnLimits // serve on the guarded listener with these limits
	maxIdle       time.Duration
	budget        *budget.Config       // a shared budget (tenant shares, bounded waits) instead of 512 MiB
	quotas        ingest.Quotas        // per-tenant catalog quotas
	streams       *server.StreamLimits // per-tenant stream cap and idle timeout
	restore       restore.Config       // app.Config.Restore (its Catalog, Registry and Budget are the env's)
	pack          int64                // ingest.Config.PackThreshold
	packLinger    time.Duration        // ingest.Config.PackLinger
	catalogShare  int                  // ingest.Config.CatalogShare
	filesInFlight int                  // ingest.Config.FilesInFlight
}

func newEnv(t *testing.T, driver string, opts ...func(*envOptions)) *env {
	t.Helper()
	var o envOptions
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, driver: driver, gw: testenv.VersityGW(t), logs: &syncBuffer{}}
	dsn := ""
	switch driver {
	case "sqlite":
		dsn = t.TempDir() + "/catalog.db"
	case "mysql":
		dsn = testenv.MySQLDSN(t)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db

	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	ring, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := server.ParseTokens([]byte("# test tokens\n" + hashLine(tokenA, "acme") + hashLine(tokenB, "globex")))
	if err != nil {
		t.Fatal(err)
	}
	e.local = t.TempDir()
	local, err := storage.NewLocal(storage.LocalConfig{Root: e.local})
	if err != nil {
		t.Fatal(err)
	}
	mem := app.MemoryConfig{Total: 512 << 20, TenantShare: 512 << 20}
	if o.budget != nil {
		mem = app.MemoryConfig{Total: o.budget.Size, TenantShare: o.budget.TenantShare, MaxWait: o.budget.MaxWait}
	}
	cfg := app.Config{
		Catalog: app.CatalogConfig{Driver: driver, DSN: dsn}, Keyring: ring, ServiceStore: local,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Auth:   app.AuthConfig{Authenticator: auth}, Memory: mem, Streams: o.streams,
		Registry: registry.Config{FailureThreshold: 3, StepTimeout: 2 * time.Second, DialTimeout: time.Second,
			AllowEndpoints: "127.0.0.1/32"}, // the test gateway, as an operator would allow an on-prem S3
		Ingest: ingest.Config{PartSize: 5 << 20, Now: e.now, SpoolDir: t.TempDir(),
			Limits: csvscan.Limits{MaxFieldBytes: 1 << 20, MaxRowBytes: 2 << 20}, Hooks: o.ingestHooks, Quotas: o.quotas, PackThreshold: o.pack, PackLinger: o.packLinger, CatalogShare: o.catalogShare, FilesInFlight: o.filesInFlight},
		Restore:     o.restore,
		Maintenance: maintenance.Config{Now: e.now, Grace: 2 * time.Second, Replica: "test"},
		Server:      server.Config{MaxConnectionIdle: o.maxIdle},
		Hooks:       app.Hooks{WrapServiceStore: o.wrapStore},
	}
	if o.conns != nil {
		cfg.Server.Conns = *o.conns
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.catalog, e.reg, e.budget, e.ing, e.rst, e.mnt, e.streams = a.Catalog, a.Registry, a.Budget, a.Ingest, a.Restore, a.Maintenance, a.Streams
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(lis)
	t.Cleanup(func() { a.Close() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.conn = conn
	e.client = pb.NewStorageServiceClient(conn)
	e.backups = pb.NewBackupServiceClient(conn)
	e.restore = pb.NewRestoreServiceClient(conn)
	e.maint = pb.NewMaintenanceServiceClient(conn)
	t.Cleanup(e.assertNoSecretLeaked)
	return e
}

// now is the test clock: real time plus an offset the test controls.
func (e *env) now() time.Time {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	return time.Now().Add(e.offset)
}

// setClock makes the test clock read t now.
func (e *env) setClock(t time.Time) {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.offset = time.Until(t)
}

func as(tok string) context.Context {
	return grpcmd.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// register builds a request against the test gateway with the given credentials.
func (e *env) req(name, bucket, key, secret string) *pb.RegisterStorageRequest {
	e.secrets = append(e.secrets, secret)
	return &pb.RegisterStorageRequest{Name: name, Region: "us-east-1", Bucket: bucket, AccessKeyId: key,
		SecretAccessKey: secret, Endpoint: e.gw.Endpoint, PathStyle: true}
}

// newUser creates a gateway user allowed actions on bucket by bucket policy.
func (e *env) newUser(bucket string, actions []string) (key, secret string) {
	key = "user" + randHex(6)
	secret = "usersecret" + randHex(12)
	e.gw.CreateUser(e.t, key, secret)
	e.gw.PutBucketPolicy(e.t, bucket, testenv.BucketPolicy(bucket, key, actions))
	e.secrets = append(e.secrets, secret)
	return key, secret
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// assertNoSecretLeaked greps the logs and every catalog table for every secret the test sent.
func (e *env) assertNoSecretLeaked() {
	t := e.t
	logs := e.logs.String()
	dump := e.dumpCatalog()
	for _, s := range e.secrets {
		if strings.Contains(logs, s) {
			t.Errorf("secret %q appears in the logs", s)
		}
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("secret %q appears in plaintext in the catalog", s)
		}
	}
}

func (e *env) dumpCatalog() []byte {
	t := e.t
	q := "SELECT name FROM sqlite_master WHERE type='table'"
	if e.driver == "mysql" {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
	}
	rows, err := e.db.Query(q)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("catalog has no tables")
	}
	var out bytes.Buffer
	for _, tb := range tables {
		rows, err := e.db.Query("SELECT * FROM " + tb)
		if err != nil {
			t.Fatalf("dump %s: %v", tb, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			for _, v := range vals {
				fmt.Fprintf(&out, "%s|", v)
			}
			out.WriteByte('\n')
		}
		rows.Close()
	}
	return out.Bytes()
}

// noSecretIn fails if any secret appears in a response or error.
func (e *env) noSecretIn(what string, msgs ...any) {
	e.t.Helper()
	var text strings.Builder
	for _, m := range msgs {
		switch v := m.(type) {
		case proto.Message:
			text.WriteString(protojson.Format(v))
		case error:
			text.WriteString(v.Error())
			if st, ok := status.FromError(v); ok {
				text.WriteString(protojson.Format(st.Proto()))
			}
		}
	}
	for _, s := range e.secrets {
		if strings.Contains(text.String(), s) {
			e.t.Errorf("%s: secret %q leaked", what, s)
		}
	}
}

func wantCode(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v (%v), want %v", st.Code(), err, code)
	}
	if reason != "" {
		var got string
		for _, d := range st.Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				got = ei.Reason
			}
		}
		if got != reason {
			t.Fatalf("ErrorInfo reason %q, want %q (%v)", got, reason, err)
		}
	}
	return st
}

func reportOf(st *status.Status) *pb.ValidationReport {
	for _, d := range st.Details() {
		if r, ok := d.(*pb.ValidationReport); ok {
			return r
		}
	}
	return nil
}

func probe(r *pb.ValidationReport, api string) *pb.ProbeResult {
	for _, p := range r.GetProbes() {
		if p.Api == api {
			return p
		}
	}
	return nil
}

func (e *env) count(tok string) int {
	e.t.Helper()
	resp, err := e.client.ListStorages(as(tok), &pb.ListStoragesRequest{PageSize: 1000})
	if err != nil {
		e.t.Fatalf("ListStorages: %v", err)
	}
	return len(resp.Storages)
}

func forEachCatalog(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) { fn(t, newEnv(t, driver)) })
	}
}

func TestRegisterGetListSecretsNeverLeak(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		bucket := e.gw.NewBucket(t)
		req := e.req("prod", bucket, e.gw.RootKey, e.gw.RootSecret)
		resp, err := e.client.RegisterStorage(as(tokenA), req)
		if err != nil {
			t.Fatalf("RegisterStorage: %v", err)
		}
		e.noSecretIn("RegisterStorage response", resp)
		if !resp.Report.Ok {
			t.Fatalf("report not ok: %v", resp.Report)
		}
		wantAPIs := []string{"GetBucketLocation", "ListObjectsV2", "PutObject", "GetObject", "DeleteObject", "MultipartUpload", "AbortMultipartUpload"}
		if len(resp.Report.Probes) != len(wantAPIs) {
			t.Fatalf("probes %v, want %v", resp.Report.Probes, wantAPIs)
		}
		for i, api := range wantAPIs {
			if p := resp.Report.Probes[i]; p.Api != api || p.Outcome != pb.ProbeOutcome_PROBE_OUTCOME_OK {
				t.Errorf("probe %d = %v, want %s OK", i, p, api)
			}
		}
		st := resp.Storage
		if st.Id == "" || st.Name != "prod" || st.Bucket != bucket || st.AccessKeyId != e.gw.RootKey ||
			st.Status != pb.StorageStatus_STORAGE_STATUS_AVAILABLE || !st.Capabilities.GetAbortMultipartUpload() {
			t.Fatalf("storage = %v", st)
		}
		// The probe objects are gone again.
		out, err := e.gw.RootClient().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		if err != nil || len(out.Contents) != 0 {
			t.Fatalf("bucket not empty after validation: %v %v", out, err)
		}
		got, err := e.client.GetStorage(as(tokenA), &pb.GetStorageRequest{Id: st.Id})
		if err != nil || got.Storage.Name != "prod" || got.Storage.LastReport == nil {
			t.Fatalf("GetStorage = %v, %v", got, err)
		}
		e.noSecretIn("GetStorage", got)
		list, err := e.client.ListStorages(as(tokenA), &pb.ListStoragesRequest{})
		if err != nil || len(list.Storages) != 1 || list.Storages[0].Id != st.Id {
			t.Fatalf("ListStorages = %v, %v", list, err)
		}
		e.noSecretIn("ListStorages", list)
		// Same name again: AlreadyExists, even though the credentials are fine.
		_, err = e.client.RegisterStorage(as(tokenA), e.req("prod", bucket, e.gw.RootKey, e.gw.RootSecret))
		wantCode(t, err, codes.AlreadyExists, "STORAGE_NAME_TAKEN")
		// The same bucket again where its keys would overlap the first storage's
		// (garbage collection of one would take the other's objects): refused.
		for _, prefix := range []string{"", "acme"} {
			r := e.req("other", bucket, e.gw.RootKey, e.gw.RootSecret)
			r.Prefix = prefix
			_, err = e.client.RegisterStorage(as(tokenA), r)
			wantCode(t, err, codes.AlreadyExists, "STORAGE_OVERLAPS")
		}
		// Names are case-sensitive; another prefix of the same bucket is fine.
		prod2 := e.req("Prod", bucket, e.gw.RootKey, e.gw.RootSecret)
		prod2.Prefix = "p2"
		if _, err := e.client.RegisterStorage(as(tokenA), prod2); err != nil {
			t.Fatalf("register Prod: %v", err)
		}
		// The other tenant may use the same name (and bucket: its keys live under its own tenant id).
		if _, err := e.client.RegisterStorage(as(tokenB), e.req("prod", bucket, e.gw.RootKey, e.gw.RootSecret)); err != nil {
			t.Fatalf("register as globex: %v", err)
		}
		if n := e.count(tokenA); n != 2 {
			t.Fatalf("acme has %d storages, want 2", n)
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		bucket := e.gw.NewBucket(t)
		regionGW := testenv.VersityGWRegion(t, "eu-west-1")
		regionBucket := regionGW.NewBucket(t)
		unanswering := silentListener(t)
		noDelKey, noDelSecret := e.newUser(bucket, []string{"s3:GetBucketLocation", "s3:ListBucket", "s3:PutObject", "s3:GetObject"})

		good := func(mod func(r *pb.RegisterStorageRequest)) *pb.RegisterStorageRequest {
			r := e.req("s1", bucket, e.gw.RootKey, e.gw.RootSecret)
			mod(r)
			return r
		}
		tests := []struct {
			name     string
			req      *pb.RegisterStorageRequest
			code     codes.Code
			reason   string
			field    string // BadRequest field, for InvalidArgument
			msg      string // substring of the message
			api      string // report line that must fail, for FailedPrecondition
			awsCode  string
			maxDelay time.Duration
		}{
			{name: "empty", req: &pb.RegisterStorageRequest{}, code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", field: "bucket", msg: "name: required"},
			{name: "missing secret", req: good(func(r *pb.RegisterStorageRequest) { r.SecretAccessKey = "" }), code: codes.InvalidArgument, field: "secret_access_key"},
			{name: "region display name", req: good(func(r *pb.RegisterStorageRequest) { r.Region = "US East (N. Virginia) us-east-1" }),
				code: codes.InvalidArgument, field: "region", msg: "did you mean us-east-1"},
			{name: "bucket naming", req: good(func(r *pb.RegisterStorageRequest) { r.Bucket = "My_Bucket" }), code: codes.InvalidArgument, field: "bucket", msg: "naming rules"},
			{name: "bucket ip", req: good(func(r *pb.RegisterStorageRequest) { r.Bucket = "192.168.1.1" }), code: codes.InvalidArgument, field: "bucket"},
			{name: "endpoint path", req: good(func(r *pb.RegisterStorageRequest) { r.Endpoint = "ftp://x/y" }), code: codes.InvalidArgument, field: "endpoint"},
			{name: "prefix dotdot", req: good(func(r *pb.RegisterStorageRequest) { r.Prefix = "a/../b" }), code: codes.InvalidArgument, field: "prefix"},
			{name: "wrong secret", req: good(func(r *pb.RegisterStorageRequest) {
				r.SecretAccessKey = "not-the-secret-" + randHex(4)
				e.secrets = append(e.secrets, r.SecretAccessKey)
			}),
				code: codes.FailedPrecondition, reason: "STORAGE_VALIDATION_FAILED", api: "GetBucketLocation", awsCode: "SignatureDoesNotMatch"},
			{name: "unknown key", req: good(func(r *pb.RegisterStorageRequest) { r.AccessKeyId = "AKIANOSUCHKEY" + randHex(3) }),
				code: codes.FailedPrecondition, api: "GetBucketLocation", awsCode: "InvalidAccessKeyId"},
			{name: "missing bucket", req: good(func(r *pb.RegisterStorageRequest) { r.Bucket = "no-such-bucket-" + randHex(4) }),
				code: codes.FailedPrecondition, api: "GetBucketLocation", awsCode: "NoSuchBucket"},
			{name: "region mismatch", req: good(func(r *pb.RegisterStorageRequest) {
				r.Endpoint, r.Bucket, r.AccessKeyId, r.SecretAccessKey = regionGW.Endpoint, regionBucket, regionGW.RootKey, regionGW.RootSecret
				e.secrets = append(e.secrets, regionGW.RootSecret)
			}), code: codes.FailedPrecondition, api: "GetBucketLocation", awsCode: "AuthorizationHeaderMalformed"},
			{name: "lacks DeleteObject", req: good(func(r *pb.RegisterStorageRequest) { r.AccessKeyId, r.SecretAccessKey = noDelKey, noDelSecret }),
				code: codes.FailedPrecondition, api: "DeleteObject", awsCode: "AccessDenied", msg: "s3:DeleteObject"},
			{name: "endpoint does not answer", req: good(func(r *pb.RegisterStorageRequest) { r.Endpoint = "http://" + unanswering }),
				code: codes.Unavailable, reason: "STORAGE_UNREACHABLE", maxDelay: 8 * time.Second},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				_, err := e.client.RegisterStorage(as(tokenA), tc.req)
				st := wantCode(t, err, tc.code, tc.reason)
				e.noSecretIn("error", err)
				if tc.maxDelay > 0 && time.Since(start) > tc.maxDelay {
					t.Errorf("took %v, want < %v", time.Since(start), tc.maxDelay)
				}
				if tc.msg != "" && !strings.Contains(st.Message(), tc.msg) {
					t.Errorf("message %q lacks %q", st.Message(), tc.msg)
				}
				if tc.field != "" {
					found := false
					for _, d := range st.Details() {
						if br, ok := d.(*errdetails.BadRequest); ok {
							for _, v := range br.FieldViolations {
								found = found || v.Field == tc.field
							}
						}
					}
					if !found {
						t.Errorf("no BadRequest violation for %s in %v", tc.field, st.Details())
					}
				}
				if tc.api != "" {
					rep := reportOf(st)
					p := probe(rep, tc.api)
					if p == nil || p.Outcome != pb.ProbeOutcome_PROBE_OUTCOME_FAILED || p.ErrorCode != tc.awsCode || p.Hint == "" {
						t.Fatalf("probe %s = %v, want FAILED %s with a hint; report %v", tc.api, p, tc.awsCode, rep)
					}
					if !strings.Contains(st.Message(), tc.awsCode) {
						t.Errorf("message lacks %s: %q", tc.awsCode, st.Message())
					}
				}
			})
		}
		if n := e.count(tokenA); n != 0 {
			t.Fatalf("bad input stored %d storages", n)
		}
		// The server keeps serving.
		if _, err := e.client.RegisterStorage(as(tokenA), good(func(*pb.RegisterStorageRequest) {})); err != nil {
			t.Fatalf("register after bad input: %v", err)
		}
	})
}

// silentListener accepts TCP connections and never answers.
func silentListener(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return lis.Addr().String()
}

func TestSeedPolicyAbortDeniedIsAWarning(t *testing.T) {
	e := newEnv(t, "sqlite")
	bucket := e.gw.NewBucket(t)
	key, secret := e.newUser(bucket, testenv.SeedActions())
	resp, err := e.client.RegisterStorage(as(tokenA), e.req("seed", bucket, key, secret))
	if err != nil {
		t.Fatalf("RegisterStorage with the seed policy: %v", err)
	}
	p := probe(resp.Report, "AbortMultipartUpload")
	if p.GetOutcome() != pb.ProbeOutcome_PROBE_OUTCOME_WARNING || p.ErrorCode != "AccessDenied" || !strings.Contains(p.Hint, "lifecycle") {
		t.Fatalf("abort probe = %v", p)
	}
	if resp.Storage.Capabilities.GetAbortMultipartUpload() || !resp.Report.Ok {
		t.Fatalf("capabilities %v, report ok %v", resp.Storage.Capabilities, resp.Report.Ok)
	}
	// Nothing is left behind, not even the probe's multipart upload.
	out, err := e.gw.RootClient().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("objects left: %v %v", out, err)
	}
	mp, err := e.gw.RootClient().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil || len(mp.Uploads) != 0 {
		t.Fatalf("multipart uploads left: %v %v", mp, err)
	}
}

func TestTenantIsolationAndAuth(t *testing.T) {
	e := newEnv(t, "mysql")
	bucket := e.gw.NewBucket(t)
	resp, err := e.client.RegisterStorage(as(tokenA), e.req("a", bucket, e.gw.RootKey, e.gw.RootSecret))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Storage.Id
	ctxB := as(tokenB)
	calls := map[string]func() error{
		"Get":      func() error { _, err := e.client.GetStorage(ctxB, &pb.GetStorageRequest{Id: id}); return err },
		"Validate": func() error { _, err := e.client.ValidateStorage(ctxB, &pb.ValidateStorageRequest{Id: id}); return err },
		"Rotate": func() error {
			_, err := e.client.UpdateStorageCredentials(ctxB, &pb.UpdateStorageCredentialsRequest{Id: id, AccessKeyId: e.gw.RootKey, SecretAccessKey: e.gw.RootSecret})
			return err
		},
		"SetDefault": func() error {
			_, err := e.client.SetDefaultStorage(ctxB, &pb.SetDefaultStorageRequest{Id: id})
			return err
		},
		"Delete": func() error { _, err := e.client.DeleteStorage(ctxB, &pb.DeleteStorageRequest{Id: id}); return err },
		"Policy": func() error {
			_, err := e.client.GetIamPolicy(ctxB, &pb.GetIamPolicyRequest{StorageId: id})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.NotFound, "STORAGE_NOT_FOUND") })
	}
	// Unknown id: the same answer as another tenant's.
	_, err = e.client.GetStorage(as(tokenA), &pb.GetStorageRequest{Id: "stg-does-not-exist"})
	wantCode(t, err, codes.NotFound, "STORAGE_NOT_FOUND")
	if n := e.count(tokenB); n != 0 {
		t.Fatalf("globex sees %d storages", n)
	}
	if _, err := e.client.GetStorage(as(tokenA), &pb.GetStorageRequest{Id: id}); err != nil {
		t.Fatalf("owner lost its storage: %v", err)
	}
	_, err = e.client.ListStorages(context.Background(), &pb.ListStoragesRequest{})
	wantCode(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
	_, err = e.client.ListStorages(as("wrong-token"), &pb.ListStoragesRequest{})
	wantCode(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
	// Health answers without a token.
	h, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
}

func TestRotateDefaultDeleteValidate(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, e *env) {
		ctx := as(tokenA)
		bucket := e.gw.NewBucket(t)
		key1, secret1 := e.newUser(bucket, testenv.SeedActions())
		a, err := e.client.RegisterStorage(ctx, e.req("a", bucket, key1, secret1))
		if err != nil {
			t.Fatal(err)
		}
		id := a.Storage.Id
		c1, _, err := e.reg.Client(context.Background(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}

		// Rotation to a wrong secret is refused and the old credentials stay.
		bad := "wrong-" + randHex(8)
		e.secrets = append(e.secrets, bad)
		_, err = e.client.UpdateStorageCredentials(ctx, &pb.UpdateStorageCredentialsRequest{Id: id, AccessKeyId: key1, SecretAccessKey: bad})
		st := wantCode(t, err, codes.FailedPrecondition, "STORAGE_VALIDATION_FAILED")
		if p := probe(reportOf(st), "GetBucketLocation"); p.GetErrorCode() != "SignatureDoesNotMatch" {
			t.Fatalf("rotate report: %v", reportOf(st))
		}
		v, err := e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: id})
		if err != nil || !v.Report.Ok {
			t.Fatalf("old credentials broken after refused rotation: %v %v", v, err)
		}
		c1again, _, _ := e.reg.Client(context.Background(), "acme", id)
		if c1again != c1 {
			t.Fatal("refused rotation replaced the cached client")
		}

		// A real rotation replaces the credentials and the cached client.
		key2 := "user" + randHex(6)
		secret2 := "usersecret" + randHex(12)
		e.gw.CreateUser(t, key2, secret2)
		e.secrets = append(e.secrets, secret2)
		pol := testenv.BucketPolicy(bucket, key1, testenv.SeedActions())
		pol2 := strings.Replace(pol, `"AWS":["`+key1+`"]`, `"AWS":["`+key1+`","`+key2+`"]`, 1)
		e.gw.PutBucketPolicy(t, bucket, pol2)
		r, err := e.client.UpdateStorageCredentials(ctx, &pb.UpdateStorageCredentialsRequest{Id: id, AccessKeyId: key2, SecretAccessKey: secret2})
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		e.noSecretIn("rotate", r)
		if r.Storage.AccessKeyId != key2 {
			t.Fatalf("access key id %q after rotation", r.Storage.AccessKeyId)
		}
		c2, _, err := e.reg.Client(context.Background(), "acme", id)
		if err != nil || c2 == c1 {
			t.Fatalf("cached client not replaced after rotation (err %v)", err)
		}
		// The new client really uses the new key: revoke key1 and it still works.
		e.gw.PutBucketPolicy(t, bucket, testenv.BucketPolicy(bucket, key2, testenv.SeedActions()))
		if v, err := e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: id}); err != nil || !v.Report.Ok {
			t.Fatalf("validate with rotated credentials: %v %v", v, err)
		}

		// Default: exactly one.
		breq := e.req("b", bucket, e.gw.RootKey, e.gw.RootSecret)
		breq.Prefix = "b"
		b, err := e.client.RegisterStorage(ctx, breq)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{id, b.Storage.Id} {
			if _, err := e.client.SetDefaultStorage(ctx, &pb.SetDefaultStorageRequest{Id: want}); err != nil {
				t.Fatal(err)
			}
			list, _ := e.client.ListStorages(ctx, &pb.ListStoragesRequest{})
			for _, s := range list.Storages {
				if s.IsDefault != (s.Id == want) {
					t.Fatalf("after SetDefault(%s): %s is_default=%v", want, s.Id, s.IsDefault)
				}
			}
		}

		// A storage referenced by a backup cannot be deleted.
		if err := e.catalog.EnsureTenant(context.Background(), "acme"); err != nil {
			t.Fatal(err)
		}
		if err := e.catalog.CreateBackupStub(context.Background(), "acme", "bkp-1", "00D000000000001", id); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.DeleteStorage(ctx, &pb.DeleteStorageRequest{Id: id})
		wantCode(t, err, codes.FailedPrecondition, "STORAGE_IN_USE")
		if _, err := e.client.GetStorage(ctx, &pb.GetStorageRequest{Id: id}); err != nil {
			t.Fatalf("referenced storage gone: %v", err)
		}
		if _, err := e.client.DeleteStorage(ctx, &pb.DeleteStorageRequest{Id: b.Storage.Id}); err != nil {
			t.Fatalf("delete unreferenced: %v", err)
		}
		_, err = e.client.GetStorage(ctx, &pb.GetStorageRequest{Id: b.Storage.Id})
		wantCode(t, err, codes.NotFound, "STORAGE_NOT_FOUND")

		// Several failed validations in a row (not one) mark the storage unavailable;
		// the periodic pass (RevalidateAll) counts like an on-demand one.
		e.gw.PutBucketPolicy(t, bucket, testenv.BucketPolicy(bucket, key2, []string{"s3:GetBucketLocation"}))
		for i, want := range []pb.StorageStatus{pb.StorageStatus_STORAGE_STATUS_AVAILABLE, pb.StorageStatus_STORAGE_STATUS_AVAILABLE, pb.StorageStatus_STORAGE_STATUS_UNAVAILABLE} {
			if i == 1 {
				if err := e.reg.RevalidateAll(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else if v, err := e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: id}); err != nil || v.Report.Ok {
				t.Fatalf("validation %d: %v, %v (want a failing report, no RPC error)", i+1, v, err)
			}
			g, _ := e.client.GetStorage(ctx, &pb.GetStorageRequest{Id: id})
			if g.Storage.Status != want || g.Storage.ConsecutiveFailures != int32(i+1) || g.Storage.ValidateTime == nil {
				t.Fatalf("after %d failures: status %v failures %d", i+1, g.Storage.Status, g.Storage.ConsecutiveFailures)
			}
			if p := probe(g.Storage.LastReport, "ListObjectsV2"); p.GetErrorCode() != "AccessDenied" {
				t.Fatalf("last report: %v", g.Storage.LastReport)
			}
		}
		e.gw.PutBucketPolicy(t, bucket, testenv.BucketPolicy(bucket, key2, testenv.SeedActions()))
		v, err = e.client.ValidateStorage(ctx, &pb.ValidateStorageRequest{Id: id})
		if err != nil || !v.Report.Ok || v.Storage.Status != pb.StorageStatus_STORAGE_STATUS_AVAILABLE || v.Storage.ConsecutiveFailures != 0 {
			t.Fatalf("recovery: %v %v", v, err)
		}
	})
}

func TestIamPolicy(t *testing.T) {
	e := newEnv(t, "sqlite")
	arn := "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	resp, err := e.client.GetIamPolicy(as(tokenA), &pb.GetIamPolicyRequest{Bucket: "acme-backups", KmsKeyArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Action   []string
			Resource []string
		}
	}
	if err := json.Unmarshal([]byte(resp.PolicyJson), &doc); err != nil {
		t.Fatalf("policy is not JSON: %v", err)
	}
	got := map[string]string{}
	for _, s := range doc.Statement {
		for _, a := range s.Action {
			got[a] = strings.Join(s.Resource, ",")
		}
	}
	want := map[string]string{
		"s3:GetBucketLocation": "arn:aws:s3:::acme-backups", "s3:ListBucket": "arn:aws:s3:::acme-backups",
		"s3:PutObject": "arn:aws:s3:::acme-backups/*", "s3:GetObject": "arn:aws:s3:::acme-backups/*", "s3:DeleteObject": "arn:aws:s3:::acme-backups/*",
		"kms:GenerateDataKey": arn, "kms:Decrypt": arn,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("policy actions\n got %v\nwant %v", got, want)
	}
	advice := strings.Join(resp.Advice, "\n")
	if !strings.Contains(advice, "s3:AbortMultipartUpload") || !strings.Contains(advice, "AbortIncompleteMultipartUpload") ||
		!strings.Contains(resp.LifecycleJson, "AbortIncompleteMultipartUpload") {
		t.Fatalf("advice %q lifecycle %q", advice, resp.LifecycleJson)
	}
	_, err = e.client.GetIamPolicy(as(tokenA), &pb.GetIamPolicyRequest{Bucket: "Bad_Bucket"})
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	_, err = e.client.GetIamPolicy(as(tokenA), &pb.GetIamPolicyRequest{Bucket: "ok-bucket", KmsKeyArn: "alias/foo"})
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
}
