package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"backupstore/ingest"
	"backupstore/maintenance"
	"backupstore/metadata"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/server"
	"backupstore/storage"
)

// A handler that panics answers Internal with nothing of the panic in the
// answer, logs the stack, and the server goes on serving every tenant.
func TestHandlerPanicAnswersInternalAndServes(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.ingestHooks = &ingest.Hooks{BeforeAbortMark: func(string) { panic("handler bug: secret-ish detail") }}
	})
	b := e.newBackup(t, "")
	_, err := e.backups.AbortBackup(as(tokenA), &pb.AbortBackupRequest{BackupId: b.Id})
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "secret-ish") {
		t.Fatalf("AbortBackup with a panicking handler: %v, want Internal without the panic's text", err)
	}
	if !strings.Contains(e.logs.String(), "handler panicked") || !strings.Contains(e.logs.String(), "goroutine") {
		t.Fatal("the panic and its stack are not in the log")
	}
	for _, tok := range []string{tokenA, tokenB} {
		if _, err := e.backups.ListBackups(as(tok), &pb.ListBackupsRequest{}); err != nil {
			t.Fatalf("the server stopped serving after a panic: %v", err)
		}
	}
}

// Request headers are capped before auth: a call with 64 KiB of metadata is
// refused (gRPC's default would take 16 MiB per call), and the server serves
// the next call.
func TestHugeRequestHeadersAreRefused(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := grpcmd.AppendToOutgoingContext(as(tokenA), "x-padding", strings.Repeat("a", 64<<10))
	if _, err := e.backups.ListBackups(ctx, &pb.ListBackupsRequest{}); err == nil {
		t.Fatal("a call with 64 KiB of headers was served")
	} else {
		t.Logf("64 KiB of headers: %v", err)
	}
	// A client that ignores the server's SETTINGS gets the stream or the
	// connection closed, not served; a small call on the same path is.
	addr := e.conn.Target()
	if got := rawHeaders(t, addr, 100); !strings.HasPrefix(got, "HEADERS") {
		t.Fatalf("a small raw call: %s, want it taken", got)
	}
	for range 4 {
		if got := rawHeaders(t, addr, 1<<20); strings.HasPrefix(got, "HEADERS") {
			t.Fatalf("1 MiB of headers from a raw client: %s", got)
		} else {
			t.Logf("1 MiB of headers from a raw client: %s", got)
		}
	}
	if _, err := e.backups.ListBackups(as(tokenB), &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("after huge headers: %v", err)
	}
}

// rawHeaders opens a plain HTTP/2 connection that ignores the server's
// SETTINGS (as an attacker's client would) and sends one call whose headers
// hold padding bytes; it reports what the server answered.
func rawHeaders(t *testing.T, addr string, padding int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/backupstore.v1.BackupService/ListBackups"}, {Name: ":authority", Value: "x"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "x-padding", Value: strings.Repeat("a", padding)}} {
		enc.WriteField(f)
	}
	block := hb.Bytes()
	first := true
	for len(block) > 0 {
		n := min(len(block), 16<<10)
		frag := block[:n]
		block = block[n:]
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = fr.WriteContinuation(1, len(block) == 0, frag)
		}
		if err != nil {
			return "write refused: " + err.Error() // the server closed the connection mid-headers
		}
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil { // an empty request message
		return "write refused: " + err.Error()
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "connection closed: " + err.Error()
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.RSTStreamFrame:
			return "RST_STREAM " + f.ErrCode.String()
		case *http2.HeadersFrame:
			return "HEADERS (the call was taken)"
		}
	}
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits (at most 10 s, a deadlock guard) for the server to
// close c, reporting whether it did.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// Anonymous connections cannot hold the server: one address gets its share
// and no more, and a connection on which no call authenticates is closed
// after the first-call timeout; a tenant connecting meanwhile is served.
func TestAnonymousConnectionsCannotHoldTheServer(t *testing.T) {
	lim := server.ConnLimits{PerAddress: 4, FirstCall: time.Second}
	e := newEnv(t, "sqlite", func(o *envOptions) { o.conns = &lim })
	addr := e.conn.Target()
	var held []net.Conn
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	if over := dialFrom(t, "127.0.0.2", addr); !closedByServer(over) {
		t.Fatal("a fifth connection from one address was kept")
	}
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("tenant A while an address holds its share: %v", err)
	}
	for i, c := range held {
		if !closedByServer(c) {
			t.Fatalf("anonymous connection %d was not closed after the first-call timeout", i)
		}
	}
	// The address's share is free again, and the tenant's connection, which
	// authenticated a call, was not closed with the anonymous ones.
	c := dialFrom(t, "127.0.0.2", addr)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		_, err := c.Read(make([]byte, 4096)) // the server's SETTINGS, then nothing
		if err != nil {
			if !os.IsTimeout(err) {
				t.Fatalf("a new connection after the others were closed: %v", err)
			}
			break
		}
	}
	time.Sleep(2 * lim.FirstCall) // past the timeout, the authenticated connection stays
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("tenant A after the first-call timeout: %v", err)
	}
}

// A tenant at its share of connections gets ResourceExhausted on one more;
// another tenant is served; a closed connection frees the share.
func TestTenantConnectionShare(t *testing.T) {
	lim := server.ConnLimits{PerTenant: 2, FirstCall: time.Minute}
	e := newEnv(t, "sqlite", func(o *envOptions) { o.conns = &lim })
	dial := func() (*grpc.ClientConn, pb.BackupServiceClient) {
		conn, err := grpc.NewClient(e.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, pb.NewBackupServiceClient(conn)
	}
	var first *grpc.ClientConn
	for i := range 2 {
		conn, c := dial()
		if _, err := c.ListBackups(as(tokenB), &pb.ListBackupsRequest{}); err != nil {
			t.Fatalf("tenant B connection %d: %v", i+1, err)
		}
		if first == nil {
			first = conn
		}
	}
	_, third := dial()
	_, err := third.ListBackups(as(tokenB), &pb.ListBackupsRequest{})
	wantCode(t, err, codes.ResourceExhausted, "TOO_MANY_CONNECTIONS")
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("tenant A while B is at its share: %v", err)
	}
	first.Close()
	waitFor(t, "B's closed connection to free its share", func() bool {
		_, err := third.ListBackups(as(tokenB), &pb.ListBackupsRequest{})
		return err == nil
	})
}

// A connection with no call for MaxConnectionIdle is closed by the server
// (GOAWAY): idle connections do not hold slots of --max-connections.
func TestIdleConnectionIsClosed(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *envOptions) { o.maxIdle = 300 * time.Millisecond })
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a deadlock guard
	defer cancel()
	for s := e.conn.GetState(); s != connectivity.Idle; s = e.conn.GetState() {
		if !e.conn.WaitForStateChange(ctx, s) {
			t.Fatalf("the idle connection is still %v", s)
		}
	}
}

// Maintenance is locked per tenant: while a run of tenant acme holds its lock
// (a slow bucket), globex's cleanup runs; acme's second run is told its own
// maintenance is running, and nothing names another tenant.
func TestMaintenanceLockIsPerTenant(t *testing.T) {
	e := newEnv(t, "sqlite")
	release, ok, err := e.catalog.TryLock(context.Background(), maintenance.LockName+":acme")
	if err != nil || !ok {
		t.Fatalf("taking acme's lock: %v %v", ok, err)
	}
	defer release()
	if _, err := e.maint.RunCleanup(as(tokenB), &pb.RunCleanupRequest{}); err != nil {
		t.Fatalf("globex's cleanup while acme's maintenance runs: %v", err)
	}
	_, err = e.maint.RunCleanup(as(tokenA), &pb.RunCleanupRequest{})
	wantCode(t, err, codes.Aborted, "MAINTENANCE_RUNNING")
	if strings.Contains(status.Convert(err).Message(), "globex") {
		t.Fatalf("the answer names another tenant: %v", err)
	}
}

// A failed maintenance run's record, which the tenant reads back, holds a
// stable reason and our own words, never the remote's error text.
func TestMaintenanceRunRecordHoldsNoRemoteText(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.wrapStore = func(s storage.Store) storage.Store { return leakyList{s} }
	})
	if _, err := e.maint.RunCleanup(as(tokenA), &pb.RunCleanupRequest{}); err == nil {
		t.Fatal("cleanup with a failing bucket listing succeeded")
	}
	runs, err := e.maint.ListMaintenanceRuns(as(tokenA), &pb.ListMaintenanceRunsRequest{})
	if err != nil || len(runs.Runs) == 0 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	for _, r := range runs.Runs {
		if r.Outcome != "failed" || strings.Contains(r.Message, "10.0.0.7") || strings.Contains(r.Message, "StatusCode") {
			t.Fatalf("run record: %s %q", r.Outcome, r.Message)
		}
		t.Logf("run record: %s %q", r.Outcome, r.Message)
	}
	if !strings.Contains(e.logs.String(), "10.0.0.7") {
		t.Fatal("the detail is not in the server log")
	}
}

// leakyList fails listings with the text an internal service would answer
// (a fake: the point is the text, which no real server in the test produces).
type leakyList struct{ storage.Store }

func (l leakyList) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return fmt.Errorf("operation error S3: ListObjectsV2, https response error StatusCode: 0, request send failed, Get \"http://10.0.0.7/internal\": %w", storage.ErrUnavailable)
}

// A key space (service, bucket, prefix/tenant/) is claimed once across all
// tenants: globex cannot register a prefix that puts its keys inside acme's
// key space, however it spells the endpoint, and is not told whose it is.
// A claim made before this check existed is skipped by acme's garbage
// collection, which deletes only under its own key space.
func TestKeySpaceIsClaimedOnceAcrossTenants(t *testing.T) {
	e := newEnv(t, "sqlite")
	bucket := e.gw.NewBucket(t)
	acme := e.req("prod", bucket, e.gw.RootKey, e.gw.RootSecret)
	acme.Prefix = "p"
	reg, err := e.client.RegisterStorage(as(tokenA), acme)
	if err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{e.gw.Endpoint, e.gw.Endpoint + "/", strings.ToUpper(e.gw.Endpoint)} {
		r := e.req("inside", bucket, e.gw.RootKey, e.gw.RootSecret)
		r.Prefix, r.Endpoint = "p/acme", endpoint
		_, err := e.client.RegisterStorage(as(tokenB), r)
		wantCode(t, err, codes.AlreadyExists, "STORAGE_OVERLAPS")
		if msg := status.Convert(err).Message(); strings.Contains(msg, reg.Storage.Id) || strings.Contains(msg, "prod") {
			t.Fatalf("the refusal names acme's storage: %q", msg)
		}
	}
	// A claim from before: globex's storage row inside acme's key space.
	old := &metadata.Storage{ID: "stg-old", TenantID: "globex", Name: "old", Region: "us-east-1", Bucket: bucket,
		AccessKeyID: e.gw.RootKey, Endpoint: e.gw.Endpoint + "/", PathStyle: true, Prefix: "p/acme", SecretCiphertext: []byte("x"), SecretKeyID: "k"}
	if err := e.catalog.EnsureTenant(context.Background(), "globex"); err != nil {
		t.Fatal(err)
	}
	if err := e.catalog.CreateStorage(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	theirs, stray := "p/acme/globex/00D000000000001AAA/files/obj-1", "p/acme/00D000000000001AAA/files/stray"
	for _, k := range []string{theirs, stray} {
		if _, err := e.gw.RootClient().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	e.setClock(time.Now().Add(time.Hour)) // past the grace period
	if _, err := e.maint.RunCleanup(as(tokenA), &pb.RunCleanupRequest{}); err != nil {
		t.Fatal(err)
	}
	head := func(k string) error {
		_, err := e.gw.RootClient().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		return err
	}
	if err := head(theirs); err != nil {
		t.Fatalf("acme's cleanup deleted globex's key: %v", err)
	}
	if err := head(stray); err == nil {
		t.Fatal("acme's own stray key was not collected (the test proves nothing)")
	}
}

// rleBomb is a valid zstd frame header (no content size, a 1 MiB window) and
// RLE blocks that decode to n bytes of 'a' — a few bytes per 128 KiB.
func rleBomb(n int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((20 - 10) << 3)}
	const blk = 128 << 10
	for n > 0 {
		size := min(n, blk)
		n -= size
		last := 0
		if n == 0 {
			last = 1
		}
		h := uint32(size)<<3 | 1<<1 | uint32(last) // RLE block
		f = append(f, byte(h), byte(h>>8), byte(h>>16), 'a')
	}
	return f
}

// storedAccounts commits a backup of tenant A holding one Account chunk of n records (name
// gives record i's Name) on the local default storage, and returns the backup and the stored
// chunk's path and bytes: for tests that tamper with what the bucket holds.
func (e *env) storedAccounts(t *testing.T, n int, name func(i int) string) (b *pb.Backup, path string, stored []byte) {
	t.Helper()
	b = e.newBackup(t, "")
	var csv strings.Builder
	csv.WriteString("Id,Name\n")
	for i := 1; i <= n; i++ {
		csv.WriteString(sfid18("001", i) + "," + name(i) + "\n")
	}
	if _, err := e.sendRecords(as(tokenA), &pb.RecordsHeader{BackupId: b.Id, Sobject: "Account"}, []byte(csv.String()), 1<<20); err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	filepath.WalkDir(e.local, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".csv.zst") {
			path = p
		}
		return nil
	})
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, path, stored
}

// A decompression bomb planted by the tenant in its own bucket, in place of a
// stored chunk (same length, so only decoding can tell): a read by id and a
// whole read answer DataLoss naming the object, neither allocates more than
// a frame's bound, and the server serves the other tenant throughout.
func TestDecompressionBombInTheBucketIsDataLoss(t *testing.T) {
	e := newEnv(t, "sqlite")
	// Random names do not compress away: the chunk is long enough to hold a bomb.
	b, data, orig := e.storedAccounts(t, 2000, func(int) string { return hex.EncodeToString(randomBytes(20)) })
	bomb := rleBomb(200 << 20) // 200 MiB from ~6 KiB
	if len(bomb) > len(orig) {
		t.Fatalf("the chunk (%d bytes) is too small to plant a %d-byte bomb", len(orig), len(bomb))
	}
	planted := append(bomb, orig[len(bomb):]...)
	if err := os.WriteFile(data, planted, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]string{{sfid18("001", 1)}, nil} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, err := e.readRecords(t, as(tokenA), &pb.ReadRecordsRequest{BackupId: b.Id, Sobject: "Account", Ids: ids})
		runtime.ReadMemStats(&after)
		if status.Code(err) != codes.DataLoss || !strings.Contains(status.Convert(err).Message(), ".csv.zst") {
			t.Fatalf("read (ids %v) of a bomb: %v, want DataLoss naming the object", ids, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 { // the frame bound is 9 MiB
			t.Fatalf("read (ids %v) of a bomb allocated %d MiB", ids, grew>>20)
		} else {
			t.Logf("read (ids %v) of a 200 MiB bomb: %v; allocated %d MiB", ids, status.Code(err), grew>>20)
		}
		if _, err := e.backups.ListBackups(as(tokenB), &pb.ListBackupsRequest{}); err != nil {
			t.Fatalf("the other tenant after a bomb: %v", err)
		}
	}
}

// DeleteBackup while the tenant's maintenance runs (a cleanup stuck on a slow
// bucket) marks the backup DELETING, waits a while for the lock, and then
// answers with the deletion left to the next cleanup — rather than failing
// MAINTENANCE_RUNNING for as long as the cleanup runs (found by the torture
// run). The backup is out of restores at once; the cleanup purges it.
func TestDeleteBackupDuringMaintenanceIsFinishedByCleanup(t *testing.T) {
	e := newEnv(t, "sqlite")
	b := e.newBackup(t, "")
	rf, err := e.sendFile(as(tokenA), &pb.FileHeader{BackupId: b.Id, ParentId: sfid18("001", 1), Path: "x.bin", UploadId: uuid.NewString()}, []byte("body"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e.commit(t, b.Id)
	e.mustReadFile(t, b.Id, rf.Result.FileId, []byte("body"))
	release, ok, err := e.catalog.TryLock(context.Background(), maintenance.LockName+":acme")
	if err != nil || !ok {
		t.Fatalf("taking acme's lock: %v %v", ok, err)
	}
	var resp *pb.DeleteBackupResponse
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, derr = e.maint.DeleteBackup(as(tokenA), &pb.DeleteBackupRequest{BackupId: b.Id})
	}()
	waitFor(t, "the backup to be marked DELETING", func() bool {
		g, err := e.backups.GetBackup(as(tokenA), &pb.GetBackupRequest{Id: b.Id})
		return err == nil && g.Backup.Status == pb.BackupStatus_BACKUP_STATUS_DELETING
	})
	e.setClock(e.now().Add(maintenance.DeleteWait + time.Second)) // past the wait, without waiting
	<-done
	if derr != nil || resp.Backup.Status != pb.BackupStatus_BACKUP_STATUS_DELETING || resp.ObjectsDeleted != 0 {
		t.Fatalf("DeleteBackup while maintenance runs: %v %v", resp, derr)
	}
	if _, _, err := e.readFile(t, as(tokenA), &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: rf.Result.FileId}}); err == nil {
		t.Fatal("a DELETING backup is still readable")
	}
	release()
	if _, err := e.maint.RunCleanup(as(tokenA), &pb.RunCleanupRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.GetBackup(as(tokenA), &pb.GetBackupRequest{Id: b.Id}); status.Code(err) != codes.NotFound {
		t.Fatalf("after cleanup the backup is still there: %v", err)
	}
	e.assertNothingStored(t)
}

// At --max-connections, a new connection takes the place of the oldest
// anonymous one: anonymous clients from many addresses cannot keep a tenant
// from connecting. When every connection carries a tenant's calls, the new
// one is closed.
func TestAnonymousConnectionsGiveWayAtTheCap(t *testing.T) {
	lim := server.ConnLimits{Max: 4, FirstCall: time.Minute}
	e := newEnv(t, "sqlite", func(o *envOptions) { o.conns = &lim })
	addr := e.conn.Target()
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil { // slot 1: acme's
		t.Fatal(err)
	}
	var anon []net.Conn
	for i := range 3 { // slots 2-4, from three addresses
		anon = append(anon, dialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i), addr))
	}
	// A new tenant connection evicts the oldest anonymous one and is served.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(as(tokenB), 10*time.Second)
	defer cancel()
	if _, err := pb.NewBackupServiceClient(conn).ListBackups(ctx, &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("globex connecting at the cap: %v", err)
	}
	if !closedByServer(anon[0]) {
		t.Fatal("the oldest anonymous connection was not evicted")
	}
	// acme's first connection was not touched.
	if _, err := e.backups.ListBackups(as(tokenA), &pb.ListBackupsRequest{}); err != nil {
		t.Fatalf("acme's connection after the eviction: %v", err)
	}
}
