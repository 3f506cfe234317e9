package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"backupstore/ingest"
	"backupstore/pack"
	pb "backupstore/proto/backupstore/v1"
)

// packedBody is file i's body: small, distinct per i (and seed).
func packedBody(seed uint64, i int) []byte {
	b := make([]byte, 1000+i*37)
	rand.NewChaCha8([32]byte{byte(seed), byte(i), byte(i >> 8)}).Read(b)
	return b
}

func packedHeader(backupID, uid string, i int, body []byte) *pb.FileHeader {
	sum := sha256.Sum256(body)
	size := int64(len(body))
	return &pb.FileHeader{BackupId: backupID, ParentId: sfid18("001", i%5+1), Path: fmt.Sprintf("Attachment/%d.bin", i),
		UploadId: uid, DeclaredSize: &size, DeclaredSha256: hex.EncodeToString(sum[:])}
}

// uploadPacked sends files concurrently (16 streams) and returns their responses by index.
func (e *env) uploadPacked(t *testing.T, backupID string, uids []string, bodies [][]byte) ([]*pb.UploadFileResponse, []error) {
	t.Helper()
	res := make([]*pb.UploadFileResponse, len(bodies))
	errs := make([]error, len(bodies))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				res[i], errs[i] = e.sendFile(as(tokenA), packedHeader(backupID, uids[i], i, bodies[i]), bodies[i], 1<<20)
			}
		})
	}
	wg.Wait()
	return res, errs
}

// TestPackedFilesEndToEnd: small files with a declared size share packs (few PUTs), every
// answer is committed (status, resend), each reads back whole and ranged, the pack's index is
// well-formed and each body matches its entry, CommitBackup counts them, dedup within and
// across packs stores nothing twice, and deleting the backups deletes the packs.
func TestPackedFilesEndToEnd(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			// One-file streams fill a pack with what is on its way to it when
			// it seals, which the machine's scheduling decides: the first
			// wave is held at the pack's door until all 16 streams' first
			// files are there, so that those 16 (at least) share a pack
			// however loaded the machine is (unheld, a loaded run made 34
			// packs of 120 files). No linger either: a pack seals when nothing
			// more is on its way to it (or at its target).
			var held atomic.Int32
			door := make(chan struct{})
			hooks := &ingest.Hooks{BeforePackAdd: func(ingest.FileHeader) {
				switch n := held.Add(1); {
				case n < 16:
					<-door
				case n == 16:
					close(door)
				}
			}}
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack, o.packLinger, o.ingestHooks = ingest.DefaultPackThreshold, time.Hour, hooks
			})
			ctx := as(tokenA)
			sid, bucket := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			const n = 120
			bodies := make([][]byte, n)
			uids := make([]string, n)
			for i := range bodies {
				bodies[i] = packedBody(1, i)
				uids[i] = uuid.NewString()
			}
			copy(bodies[n-3], bodies[0]) // a duplicate body: stored once
			bodies[n-3] = bodies[n-3][:len(bodies[0])]
			res, errs := e.uploadPacked(t, b.Id, uids, bodies)
			packKeys := map[string]bool{}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("file %d: %v", i, err)
				}
				if !strings.Contains(res[i].Result.DataKey, "/packs/pck-") {
					t.Fatalf("file %d stored at %s, not in a pack", i, res[i].Result.DataKey)
				}
				packKeys[res[i].Result.DataKey] = true
			}
			// The first wave (files 0 to 15, one per stream) shares one pack.
			for i := 1; i < 16; i++ {
				if res[i].Result.DataKey != res[0].Result.DataKey {
					t.Errorf("files 0 and %d, on their way together, went to packs %s and %s", i, res[0].Result.DataKey, res[i].Result.DataKey)
				}
			}
			t.Logf("%d files in %d packs", n, len(packKeys))
			var inBucket []string
			for _, k := range e.keys(t, bucket) {
				if strings.Contains(k, "/files/") {
					t.Errorf("a small file was stored as an object of its own: %s", k)
				}
				if strings.Contains(k, "/packs/") {
					inBucket = append(inBucket, k)
				}
			}
			if len(inBucket) != len(packKeys) {
				t.Errorf("bucket holds %d packs, answers name %d", len(inBucket), len(packKeys))
			}
			// Each pack parses, and each answered body is an entry of it.
			entries := map[string]bool{}
			for k := range packKeys {
				p := e.get(t, bucket, k)
				x, err := pack.Parse(p, pack.Limits{})
				if err != nil {
					t.Fatalf("pack %s: %v", k, err)
				}
				if bad, err := x.CheckBodies(p); err != nil || len(bad) > 0 {
					t.Fatalf("pack %s: bad bodies %v, %v", k, bad, err)
				}
				for _, en := range x.Entries {
					entries[hex.EncodeToString(en.SHA256[:])] = true
				}
			}
			for i, r := range res {
				if !entries[r.Result.Sha256] {
					t.Errorf("file %d's body is in no pack's index", i)
				}
			}
			// Status and resend answer the stored result.
			q, err := e.backups.QueryUploadStatus(ctx, &pb.QueryUploadStatusRequest{BackupId: b.Id, UploadId: uids[7]})
			if err != nil || q.Upload.State != pb.UploadState_UPLOAD_STATE_COMMITTED {
				t.Fatalf("QueryUploadStatus of a packed file: %v, %v", q, err)
			}
			again, err := e.sendFile(ctx, packedHeader(b.Id, uids[7], 7, bodies[7]), bodies[7], 1<<20)
			if err != nil || again.Result.FileId != res[7].Result.FileId {
				t.Fatalf("resend of a packed upload: %v, %v; want file %s", again, err, res[7].Result.FileId)
			}
			// Dedup across packs: a later upload of a stored body sends nothing.
			dup := packedBody(1, 3)
			r, err := e.sendFile(ctx, packedHeader(b.Id, uuid.NewString(), 3, dup), nil, 1<<20)
			if err != nil || !r.Result.Deduplicated {
				t.Fatalf("upload of a packed body again: %v, %v; want deduplicated", r, err)
			}
			c := e.commit(t, b.Id)
			if c.FileCount != n+1 {
				t.Errorf("committed backup counts %d files, want %d", c.FileCount, n+1)
			}
			// Reads (of the committed backup): whole, ranged.
			for _, i := range []int{0, 1, 50, n - 1, n - 3} {
				e.mustReadFile(t, b.Id, res[i].Result.FileId, bodies[i])
			}
			got, _, err := e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: res[9].Result.FileId},
				ReadOffset: 100, ReadLimit: 200})
			if err != nil || !bytes.Equal(got, bodies[9][100:300]) {
				t.Fatalf("ranged read of a packed file: %d bytes, %v", len(got), err)
			}
			e.mustReadFile(t, b.Id, r.Result.FileId, dup)
			list, err := e.restore.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.Id, PageSize: 1000})
			if err != nil || len(list.Files) != n+1 {
				t.Fatalf("ListBackupContents: %d files, %v", len(list.Files), err)
			}
			e.verifyIntact(t, b.Id)

			// A second backup shares a body of the first; deleting the first keeps that pack.
			b2 := e.newBackup(t, sid)
			r2, err := e.sendFile(ctx, packedHeader(b2.Id, uuid.NewString(), 5, bodies[5]), nil, 1<<20)
			if err != nil || !r2.Result.Deduplicated {
				t.Fatalf("second backup's shared body: %v, %v", r2, err)
			}
			e.commit(t, b2.Id)
			if _, err := e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b.Id}); err != nil {
				t.Fatalf("DeleteBackup: %v", err)
			}
			var left []string
			for _, k := range e.keys(t, bucket) {
				if strings.Contains(k, "/packs/") {
					left = append(left, k)
				}
			}
			if len(left) != 1 || left[0] != res[5].Result.DataKey {
				t.Errorf("packs left after deleting the first backup: %v, want only %s", left, res[5].Result.DataKey)
			}
			e.mustReadFile(t, b2.Id, r2.Result.FileId, bodies[5])
			if _, err := e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b2.Id}); err != nil {
				t.Fatalf("DeleteBackup: %v", err)
			}
			for _, k := range e.keys(t, bucket) {
				if strings.Contains(k, "/packs/") {
					t.Errorf("pack %s left after deleting every backup", k)
				}
			}
		})
	}
}

// TestPackCrashBeforeCommit: the pack is in the bucket when backupd "dies" before its
// transaction (the hook panics the pack's writer at that step): no upload is answered OK,
// nothing is in the catalog, a resend of the same upload ids commits them in a new pack, and
// garbage collection deletes the orphan after its grace period — nothing answered is lost.
func TestPackCrashBeforeCommit(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			var crashed atomic.Pointer[string]
			hooks := &ingest.Hooks{BeforePackCommit: func(key string) {
				if crashed.CompareAndSwap(nil, &key) {
					panic("test: backupd dies between the pack's PUT and its transaction")
				}
			}}
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack, o.packLinger, o.ingestHooks = ingest.DefaultPackThreshold, time.Hour, hooks
			})
			ctx := as(tokenA)
			sid, bucket := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			const n = 8
			bodies := make([][]byte, n)
			uids := make([]string, n)
			for i := range bodies {
				bodies[i] = packedBody(2, i)
				uids[i] = uuid.NewString()
			}
			res, errs := e.uploadPacked(t, b.Id, uids, bodies)
			if crashed.Load() == nil {
				t.Fatal("the hook never ran")
			}
			orphan := *crashed.Load()
			failed := 0
			for i, err := range errs {
				if err != nil {
					failed++
					continue
				}
				if res[i].Result.DataKey == orphan {
					t.Fatalf("file %d answered OK in the pack that never committed", i)
				}
			}
			if failed == 0 {
				t.Fatal("no upload saw the crash")
			}
			if !slices.Contains(e.keys(t, bucket), orphan) {
				t.Fatalf("the orphan pack %s is not in the bucket", orphan)
			}
			// The client resends what was not answered, with the same upload ids.
			res2, errs2 := e.uploadPacked(t, b.Id, uids, bodies)
			for i, err := range errs2 {
				if err != nil {
					t.Fatalf("resend %d: %v", i, err)
				}
				if errs[i] == nil && res2[i].Result.FileId != res[i].Result.FileId {
					t.Errorf("resend of answered file %d made a new file", i)
				}
			}
			e.setClock(e.now().Add(10 * 60e9))
			rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
			if err != nil || rep.GarbageDeleted < 1 {
				t.Fatalf("cleanup: %v, %v; want the orphan pack collected", rep, err)
			}
			if slices.Contains(e.keys(t, bucket), orphan) {
				t.Errorf("the orphan pack %s survived garbage collection", orphan)
			}
			c := e.commit(t, b.Id)
			if c.FileCount != n {
				t.Errorf("committed %d files, want %d", c.FileCount, n)
			}
			for i := range bodies {
				e.mustReadFile(t, b.Id, res2[i].Result.FileId, bodies[i])
			}
		})
	}
}

// TestPackRaceSameUploadID: two streams upload the same upload id while the first one's pack
// is parked between its PUT and its transaction: both get the same file, and the backup has it
// once.
func TestPackRaceSameUploadID(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			parked, release := make(chan string, 1), make(chan struct{})
			var once sync.Once
			hooks := &ingest.Hooks{BeforePackCommit: func(key string) {
				first := false
				once.Do(func() { first = true })
				if first {
					parked <- key
					<-release
				}
			}}
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack, o.packLinger, o.ingestHooks = ingest.DefaultPackThreshold, time.Hour, hooks
			})
			ctx := as(tokenA)
			sid, _ := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			body := packedBody(3, 1)
			uid := uuid.NewString()
			type out struct {
				r   *pb.UploadFileResponse
				err error
			}
			first := make(chan out, 1)
			go func() {
				r, err := e.sendFile(ctx, packedHeader(b.Id, uid, 1, body), body, 1<<20)
				first <- out{r, err}
			}()
			<-parked // the first pack is in the bucket, its rows not yet committed
			second := make(chan out, 1)
			go func() {
				r, err := e.sendFile(ctx, packedHeader(b.Id, uid, 1, body), body, 1<<20)
				second <- out{r, err}
			}()
			// The second stream's pack commits first (the hook parks only the first).
			o2 := <-second
			close(release)
			o1 := <-first
			if o1.err != nil || o2.err != nil {
				t.Fatalf("uploads: %v / %v", o1.err, o2.err)
			}
			if o1.r.Result.FileId != o2.r.Result.FileId {
				t.Errorf("two answers for one upload id: files %s and %s", o1.r.Result.FileId, o2.r.Result.FileId)
			}
			e.commit(t, b.Id)
			list, err := e.restore.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: b.Id})
			if err != nil || len(list.Files) != 1 {
				t.Fatalf("ListBackupContents: %d files, %v; want 1", len(list.Files), err)
			}
			e.mustReadFile(t, b.Id, o1.r.Result.FileId, body)
		})
	}
}

// TestPackVerifyAndDamage: Verify reads a pack whole (index MAC, every body); a body changed in
// the bucket fails its whole read with DataLoss naming the pack, and Verify reports the pack; an
// index re-signed by anyone without the master key (here: the MAC bytes changed) is reported as
// forged.
func TestPackVerifyAndDamage(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			e := newEnv(t, driver, func(o *envOptions) { o.pack = ingest.DefaultPackThreshold })
			ctx := as(tokenA)
			sid, bucket := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			bodies := make([][]byte, 4)
			uids := make([]string, 4)
			for i := range bodies {
				bodies[i] = packedBody(4, i)
				uids[i] = uuid.NewString()
			}
			// One stream, one after the other within the linger: one pack.
			var res []*pb.UploadFileResponse
			for i := range bodies {
				r, err := e.sendFile(ctx, packedHeader(b.Id, uids[i], i, bodies[i]), bodies[i], 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				res = append(res, r)
			}
			e.commit(t, b.Id)
			e.verifyIntact(t, b.Id)
			key := res[2].Result.DataKey
			orig := e.get(t, bucket, key)
			x, err := pack.Parse(orig, pack.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			put := func(data []byte) {
				t.Helper()
				if _, err := e.gw.RootClient().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
					Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
					t.Fatal(err)
				}
			}
			// The MAC changed: the index is no longer the service's.
			forged := bytes.Clone(orig)
			forged[len(forged)-9] ^= 1
			put(forged)
			v, err := e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 100})
			if err != nil || len(v.Problems) != 1 || v.Problems[0].Key != key || v.Problems[0].Problem != "forged" {
				t.Fatalf("VerifyBackup of a pack with a changed MAC: %v, %v", v.GetProblems(), err)
			}
			// A body changed in place: its read fails naming the pack, Verify reports the pack.
			changed := bytes.Clone(orig)
			var at int64 = -1
			for _, en := range x.Entries {
				if hex.EncodeToString(en.SHA256[:]) == res[2].Result.Sha256 {
					at = en.Offset
				}
			}
			changed[at+10] ^= 0xff
			put(changed)
			_, _, err = e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b.Id, Selector: &pb.ReadFileRequest_FileId{FileId: res[2].Result.FileId}})
			st := wantCode(t, err, codes.DataLoss, "DATA_LOSS")
			if !strings.Contains(st.Message(), key) {
				t.Errorf("DataLoss does not name the pack: %s", st.Message())
			}
			e.mustReadFile(t, b.Id, res[1].Result.FileId, bodies[1]) // its neighbours are intact
			v, err = e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 100})
			if err != nil || len(v.Problems) != 1 || v.Problems[0].Key != key || v.Problems[0].Problem != "corrupt" || !v.Backup.Damaged {
				t.Fatalf("VerifyBackup of a pack with a changed body: %v, %v", v.GetProblems(), err)
			}
			// A truncated pack fails its HEAD check.
			put(orig[:len(orig)-1])
			v, err = e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b.Id, ReadPercent: 0})
			if err != nil || len(v.Problems) != 1 || v.Problems[0].Problem != "size" {
				t.Fatalf("VerifyBackup of a truncated pack: %v, %v", v.GetProblems(), err)
			}
		})
	}
}

// TestPackSealsWhenNothingMoreIsComing: with a linger far longer than the test may run, a
// pack seals as soon as no upload of its backup is still on its way to it. (1) File B is
// parked before it joins, and file A joins after that: A's pack waits for B (both are
// answered in the one pack, which seals when B joins). (2) 16 one-file streams sending 200 files complete:
// each round of files seals its pack when the last one joins, never waiting out the linger.
func TestPackSealsWhenNothingMoreIsComing(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			const pathB = "docs/b.bin"
			parkB, releaseB := make(chan struct{}), make(chan struct{})
			aJoined := make(chan struct{})
			hooks := &ingest.Hooks{
				BeforePackAdd: func(h ingest.FileHeader) {
					switch h.Path {
					case pathB:
						close(parkB)
						<-releaseB
					case "docs/a.bin":
						<-parkB // B is on its way (counted) before A joins
					}
				},
				PackAdded: func(h ingest.FileHeader) {
					if h.Path == "docs/a.bin" {
						close(aJoined)
					}
				},
			}
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack = ingest.DefaultPackThreshold
				o.packLinger = time.Hour
				o.ingestHooks = hooks
			})
			sid, bucket := e.registerRoot(t, "prod")
			b := e.newBackup(t, sid)
			within := func(what string, f func()) {
				t.Helper()
				done := make(chan struct{})
				go func() { defer close(done); f() }()
				select {
				case <-done:
				case <-time.After(2 * time.Minute): // a guard: the linger is an hour
					t.Fatalf("%s: still waiting after 2 minutes (waiting out the linger?)", what)
				}
			}

			bodyA, bodyB := packedBody(3, 1), packedBody(3, 2)
			var resA, resB *pb.UploadFileResponse
			var errA, errB error
			var wg sync.WaitGroup
			wg.Go(func() {
				h := packedHeader(b.Id, uuid.NewString(), 1, bodyA)
				h.Path = "docs/a.bin"
				resA, errA = e.sendFile(as(tokenA), h, bodyA, 1<<20)
			})
			wg.Go(func() {
				h := packedHeader(b.Id, uuid.NewString(), 2, bodyB)
				h.Path = pathB
				resB, errB = e.sendFile(as(tokenA), h, bodyB, 1<<20)
			})
			within("B parked and A joined", func() { <-parkB; <-aJoined })
			close(releaseB)
			within("A and B answered", wg.Wait)
			if errA != nil || errB != nil {
				t.Fatalf("A: %v, B: %v", errA, errB)
			}
			if ka, kb := resA.GetResult().GetDataKey(), resB.GetResult().GetDataKey(); ka != kb || !strings.Contains(ka, "/packs/") {
				t.Fatalf("A in %s, B in %s: A's pack sealed while B was still coming", ka, kb)
			}

			const n = 200
			uids, bodies := make([]string, n), make([][]byte, n)
			for i := range n {
				uids[i], bodies[i] = uuid.NewString(), packedBody(1, 100+i)
			}
			var errs []error
			within("200 files on 16 one-file streams", func() { _, errs = e.uploadPacked(t, b.Id, uids, bodies) })
			for i, err := range errs {
				if err != nil {
					t.Fatalf("file %d: %v", i, err)
				}
			}
			packs := 0
			for _, k := range e.keys(t, bucket) {
				if strings.Contains(k, "/packs/") {
					packs++
				}
			}
			// At most one pack per file (each round of up to 16 shares one);
			// the point is that they finished at all.
			if packs < 2 || packs > n+1 {
				t.Errorf("%d packs for 1 + %d files", packs, n)
			}
			t.Logf("%d packs for %d one-file streams' %d files", packs, 16, n)
		})
	}
}

// TestFlushWaitsForItsOwnPacks: an UploadFiles stream that ends waits for the packs of its
// backup sealed so far, not for packs other streams seal meanwhile. Stream A's pack is parked
// between its PUT and its transaction while A's end waits for it; stream B then ends and its
// pack is parked too; when A's pack goes on, A is answered although B's is still parked.
// (The flush used a WaitGroup: it waited for B's pack as well, and a seal racing a flush's
// Wait could panic "WaitGroup is reused before previous Wait has returned".)
func TestFlushWaitsForItsOwnPacks(t *testing.T) {
	parked := make(chan string, 2)
	release := map[string]chan struct{}{}
	var mu sync.Mutex
	gate := func(key string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[key] == nil {
			release[key] = make(chan struct{})
		}
		return release[key]
	}
	hooks := &ingest.Hooks{BeforePackCommit: func(key string) {
		parked <- key
		<-gate(key)
	}}
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.pack = ingest.DefaultPackThreshold
		o.packLinger = time.Hour
		o.ingestHooks = hooks
	})
	b := e.newBackup(t, "")
	guard := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(time.Minute): // a guard: every step here is parked by the hook
			t.Fatalf("%s: not after a minute", what)
		}
	}
	stream := func(i int) (chan struct{}, *error) {
		done, errp := make(chan struct{}), new(error)
		body := packedBody(9, i)
		go func() {
			defer close(done)
			got, err := e.uploadFiles(t, []*pb.FileHeader{packedHeader(b.Id, uuid.NewString(), i, body)}, [][]byte{body})
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("%d answers", len(got))
			}
			for _, a := range got {
				if a.GetError() != nil {
					err = fmt.Errorf("file error %v", a.GetError())
				}
			}
			*errp = err
		}()
		return done, errp
	}
	nextParked := func(what string) string {
		t.Helper()
		select {
		case k := <-parked:
			return k
		case <-time.After(time.Minute):
			t.Fatalf("%s: no pack parked before its commit after a minute", what)
			return ""
		}
	}
	doneA, errA := stream(1)
	keyA := nextParked("stream A")
	doneB, errB := stream(2)
	keyB := nextParked("stream B (sealed while A's end waits)")
	if keyA == keyB {
		t.Fatalf("A and B share pack %s", keyA)
	}
	close(gate(keyA))
	guard("stream A answered while B's pack is parked", doneA)
	if *errA != nil {
		t.Fatalf("stream A: %v", *errA)
	}
	select {
	case <-doneB:
		t.Fatal("stream B answered before its pack was committed")
	default:
	}
	close(gate(keyB))
	guard("stream B answered", doneB)
	if *errB != nil {
		t.Fatalf("stream B: %v", *errB)
	}
}
