package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"backupstore/ingest"
	"backupstore/maintenance"
	"backupstore/pack"
	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// sharedPacks stores n small files in backup b1 (one UploadFiles stream: a few packs), then
// backup b2 references keep of those bodies without sending them (dedup: the same blobs), and
// deletes b1: its packs keep keep of n bodies live. It returns b2, its files' ids and bodies.
func (e *env) sharedPacks(t *testing.T, sid string, n, keep int) (b2 *pb.Backup, ids []string, bodies [][]byte) {
	t.Helper()
	ctx := as(tokenA)
	b1 := e.newBackup(t, sid)
	var hdrs []*pb.FileHeader
	var all [][]byte
	for i := range n {
		body := packedBody(11, i)
		hdrs = append(hdrs, packedHeader(b1.Id, uuid.NewString(), i, body))
		all = append(all, body)
	}
	got, err := e.uploadFiles(t, hdrs, all)
	if err != nil || len(got) != n {
		t.Fatalf("UploadFiles: %d answers, %v", len(got), err)
	}
	for _, h := range hdrs {
		if a := got[h.GetUploadId()]; a.GetResult() == nil || !strings.Contains(a.GetResult().GetDataKey(), "/packs/") {
			t.Fatalf("file %s: %v, want stored in a pack", h.GetUploadId(), a)
		}
	}
	e.commit(t, b1.Id)
	b2 = e.newBackup(t, sid)
	for i := 0; i < n && len(ids) < keep; i += n / keep {
		r, err := e.sendFile(ctx, packedHeader(b2.Id, uuid.NewString(), i, all[i]), nil, 1<<20)
		if err != nil || !r.Result.Deduplicated {
			t.Fatalf("b2's file %d: %v, %v; want deduplicated", i, r, err)
		}
		ids, bodies = append(ids, r.Result.FileId), append(bodies, all[i])
	}
	e.commit(t, b2.Id)
	if _, err := e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b1.Id}); err != nil {
		t.Fatalf("DeleteBackup(b1): %v", err)
	}
	return b2, ids, bodies
}

func packKeysIn(keys []string) []string {
	var out []string
	for _, k := range keys {
		if strings.Contains(k, "/packs/") {
			out = append(out, k)
		}
	}
	return out
}

func cleanupItems(rep *pb.RunCleanupResponse, action string) []*pb.CleanupItem {
	var out []*pb.CleanupItem
	for _, it := range rep.GetItems() {
		if it.GetAction() == action {
			out = append(out, it)
		}
	}
	return out
}

// TestRepackPrunesPacks: packs left mostly dead by a deleted backup are repacked by cleanup —
// the live bodies, checked, go into a new pack; the backup that shares them reads back byte for
// byte and verifies (the new pack's MAC and bodies); the old packs stay in the bucket for the
// grace (a read may hold their location), are deleted by the first cleanup after it, and the
// bucket then holds exactly the packs the catalog names. A dry run lists and changes nothing.
func TestRepackPrunesPacks(t *testing.T) {
	for _, driver := range []string{"sqlite", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			e := newEnv(t, driver, func(o *envOptions) {
				o.pack = ingest.DefaultPackThreshold
				o.packLinger = time.Hour
			})
			ctx := as(tokenA)
			sid, bucket := e.registerRoot(t, "prod")
			b2, ids, bodies := e.sharedPacks(t, sid, 60, 6)
			before := packKeysIn(e.keys(t, bucket))
			if len(before) == 0 {
				t.Fatal("no pack in the bucket after deleting b1: b2's bodies should keep theirs")
			}

			dry, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if planned := cleanupItems(dry, maintenance.ActionRepack); len(planned) != len(before) {
				t.Errorf("dry run lists %d packs to repack, the bucket holds %d mostly dead ones: %v", len(planned), len(before), planned)
			}
			if now := packKeysIn(e.keys(t, bucket)); !slices.Equal(now, before) {
				t.Fatalf("a dry run changed the bucket's packs: %v, was %v", now, before)
			}

			rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
			if err != nil {
				t.Fatal(err)
			}
			written := cleanupItems(rep, maintenance.ActionRepack)
			if len(written) != 1 {
				t.Fatalf("cleanup wrote %d repacked packs (%v), want 1 for %d live bodies", len(written), written, len(ids))
			}
			newKey := written[0].GetKey()
			after := packKeysIn(e.keys(t, bucket))
			if want := append(slices.Clone(before), newKey); !sameSet(after, want) {
				t.Fatalf("bucket packs after the repack = %v, want the old ones (grace) and %s", after, newKey)
			}
			// The new pack holds exactly b2's bodies, authenticated.
			p := e.get(t, bucket, newKey)
			x, err := pack.Parse(p, pack.Limits{})
			if err != nil {
				t.Fatalf("the repacked pack: %v", err)
			}
			if bad, err := x.CheckBodies(p); err != nil || len(bad) > 0 || len(x.Entries) != len(bodies) {
				t.Fatalf("the repacked pack: %d entries (want %d), bad %v, %v", len(x.Entries), len(bodies), bad, err)
			}
			for i, id := range ids {
				e.mustReadFile(t, b2.Id, id, bodies[i])
			}
			e.verifyIntact(t, b2.Id)

			// Within the grace nothing more happens; after it, the old packs go.
			again, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
			if err != nil || len(cleanupItems(again, maintenance.ActionRepack))+len(cleanupItems(again, maintenance.ActionDeleteRetired)) != 0 {
				t.Fatalf("cleanup within the grace: %v, %v; want nothing to repack or delete", again.GetItems(), err)
			}
			e.setClock(e.now().Add(maintenance.DefaultRepackGrace + time.Minute))
			late, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if del := cleanupItems(late, maintenance.ActionDeleteRetired); len(del) != len(before) {
				t.Errorf("cleanup after the grace deleted %d retired packs (%v), want %d", len(del), del, len(before))
			}
			if now := packKeysIn(e.keys(t, bucket)); !slices.Equal(now, []string{newKey}) {
				t.Fatalf("bucket packs after the grace = %v, want only %s", now, newKey)
			}
			for i, id := range ids {
				e.mustReadFile(t, b2.Id, id, bodies[i])
			}
			if g := cleanupItems(late, "garbage"); len(g) != 0 {
				t.Errorf("garbage collection found keys without rows: %v", g)
			}
			// The repacked pack is an ordinary one: deleting b2 deletes it.
			if _, err := e.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: b2.Id}); err != nil {
				t.Fatal(err)
			}
			if now := packKeysIn(e.keys(t, bucket)); len(now) != 0 {
				t.Errorf("packs left after deleting every backup: %v", now)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// parkedStore parks the first Get (or, with head, Head) of a pack key after arm until the
// parked call is released: a reader that located a body, or a deduplicating upload or a Verify
// that listed its pack, and is slow to reach the bucket.
type parkedStore struct {
	storage.Store
	head     bool
	mu       sync.Mutex
	armed    bool
	parked   chan string
	released chan struct{}
}

func (p *parkedStore) arm() {
	p.mu.Lock()
	p.armed = true
	p.mu.Unlock()
}

func (p *parkedStore) park(key string) {
	p.mu.Lock()
	park := p.armed && strings.Contains(key, "/packs/")
	if park {
		p.armed = false
	}
	p.mu.Unlock()
	if park {
		p.parked <- key
		<-p.released
	}
}

func (p *parkedStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if !p.head {
		p.park(key)
	}
	return p.Store.Get(ctx, key, off, n)
}

func (p *parkedStore) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if p.head {
		p.park(key)
	}
	return p.Store.Head(ctx, key)
}

// parkedEnv is an env on the default (local) storage, packing, wrapped in a parkedStore.
func parkedEnv(t *testing.T, head bool) (*env, *parkedStore) {
	ps := &parkedStore{head: head, parked: make(chan string), released: make(chan struct{})}
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.pack = ingest.DefaultPackThreshold
		o.packLinger = time.Hour
		o.wrapStore = func(s storage.Store) storage.Store { ps.Store = s; return ps }
	})
	return e, ps
}

// repackUnder runs call with ps armed until it parks on a pack; meanwhile cleanup repacks that
// pack and, past the grace, deletes it (the test fails unless it did: otherwise nothing raced);
// then the parked call goes on, and repackUnder returns when it has.
func (e *env) repackUnder(t *testing.T, ps *parkedStore, call func()) {
	t.Helper()
	ctx := as(tokenA)
	ps.arm()
	done := make(chan struct{})
	go func() { defer close(done); call() }()
	oldKey := <-ps.parked
	if _, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{}); err != nil {
		t.Fatal(err)
	}
	e.setClock(e.now().Add(maintenance.DefaultRepackGrace + time.Minute))
	late, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	for _, it := range cleanupItems(late, maintenance.ActionDeleteRetired) {
		deleted = deleted || it.GetKey() == oldKey
	}
	if !deleted {
		t.Fatalf("the parked call's pack %s was not deleted (items %v): the test did not race what it means to", oldKey, late.GetItems())
	}
	close(ps.released)
	<-done
}

// TestRepackMovesABodyUnderARead: a ReadFile located its body in a pack, then (parked before
// its GET) the pack was repacked and, past the grace, deleted. The read finds the body where
// its blob now is and returns it whole; nothing is flagged damaged.
func TestRepackMovesABodyUnderARead(t *testing.T) {
	e, ps := parkedEnv(t, false)
	ctx := as(tokenA)
	b2, ids, bodies := e.sharedPacks(t, "", 40, 4)
	var got []byte
	var err error
	e.repackUnder(t, ps, func() {
		got, _, err = e.readFile(t, ctx, &pb.ReadFileRequest{BackupId: b2.Id, Selector: &pb.ReadFileRequest_FileId{FileId: ids[1]}})
	})
	if err != nil || string(got) != string(bodies[1]) {
		t.Fatalf("the read whose pack was repacked and deleted under it: %d bytes, %v; want the body whole", len(got), err)
	}
	g, err := e.backups.GetBackup(ctx, &pb.GetBackupRequest{Id: b2.Id})
	if err != nil || g.Backup.Damaged {
		t.Fatalf("backup after the moved read: %v, %v; want not damaged", g, err)
	}
	e.verifyIntact(t, b2.Id)
	for i, id := range ids {
		e.mustReadFile(t, b2.Id, id, bodies[i])
	}
	if !strings.Contains(e.logs.String(), "moved by a repack") {
		t.Error("the log does not say the read followed a moved body")
	}
}

// TestRepackLeavesADamagedSourceAlone: a source pack whose live body no longer matches its
// SHA-256 (bucket content is hostile) is not repacked: nothing is copied from it, the run goes
// on, the item names the pack, the blob is flagged (Verify reports the pack), and the pack stays
// in the bucket — past the grace too — for the operator.
func TestRepackLeavesADamagedSourceAlone(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.pack = ingest.DefaultPackThreshold
		o.packLinger = time.Hour
	})
	ctx := as(tokenA)
	sid, bucket := e.registerRoot(t, "prod")
	b2, ids, bodies := e.sharedPacks(t, sid, 40, 4)
	// Find bodies[0] in its pack and flip one of its bytes.
	want := sha256.Sum256(bodies[0])
	var key string
	for _, k := range packKeysIn(e.keys(t, bucket)) {
		p := e.get(t, bucket, k)
		x, err := pack.Parse(p, pack.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range x.Entries {
			if en.SHA256 == want {
				key = k
				p[en.Offset+10] ^= 0xff
				if _, err := e.gw.RootClient().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: bytes.NewReader(p)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if key == "" {
		t.Fatal("bodies[0] is in no pack")
	}
	rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil {
		t.Fatalf("cleanup with a damaged source: %v", err)
	}
	var skipped bool
	for _, it := range cleanupItems(rep, "skip") {
		skipped = skipped || (it.GetKey() == key && strings.Contains(it.GetReason(), "does not match its SHA-256"))
	}
	if !skipped {
		t.Fatalf("cleanup items %v: want %s skipped for a body that does not match", rep.GetItems(), key)
	}
	for _, it := range cleanupItems(rep, maintenance.ActionRepack) {
		x, err := pack.Parse(e.get(t, bucket, it.GetKey()), pack.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range x.Entries {
			if en.SHA256 == want {
				t.Fatalf("the damaged body went into repacked pack %s", it.GetKey())
			}
		}
	}
	e.setClock(e.now().Add(maintenance.DefaultRepackGrace + time.Minute))
	if _, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(e.keys(t, bucket), key) {
		t.Fatalf("the damaged source %s was deleted", key)
	}
	v, err := e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b2.Id, ReadPercent: 100})
	if err != nil || len(v.Problems) == 0 || v.Problems[0].GetKey() != key {
		t.Fatalf("VerifyBackup = %v, %v; want the damaged pack %s reported", v, err, key)
	}
	for i, id := range ids[1:] {
		e.mustReadFile(t, b2.Id, id, bodies[i+1])
	}
}

// TestRepackMovesABodyUnderADedup: an upload found its body stored (dedup) and, parked before
// it checks the pack is in the bucket, the pack was repacked and deleted past the grace. The
// body is not flagged lost — it is where its blob now is — and the upload stores its own copy;
// the backups that share the moved body read back and verify.
func TestRepackMovesABodyUnderADedup(t *testing.T) {
	e, ps := parkedEnv(t, true)
	ctx := as(tokenA)
	b2, ids, bodies := e.sharedPacks(t, "", 40, 4)
	b3 := e.newBackup(t, "")
	var r *pb.UploadFileResponse
	var err error
	e.repackUnder(t, ps, func() {
		r, err = e.sendFile(ctx, packedHeader(b3.Id, uuid.NewString(), 0, bodies[2]), bodies[2], 1<<20)
	})
	if err != nil {
		t.Fatalf("the upload whose dedup pack was repacked under it: %v", err)
	}
	e.commit(t, b3.Id)
	e.mustReadFile(t, b3.Id, r.Result.FileId, bodies[2])
	for _, b := range []string{b2.Id, b3.Id} {
		g, err := e.backups.GetBackup(ctx, &pb.GetBackupRequest{Id: b})
		if err != nil || g.Backup.Damaged {
			t.Fatalf("backup %s: %v, %v; want not damaged", b, g, err)
		}
		e.verifyIntact(t, b)
	}
	for i, id := range ids {
		e.mustReadFile(t, b2.Id, id, bodies[i])
	}
	// Nothing was flagged: the moved bodies' new pack still serves dedup.
	b4 := e.newBackup(t, "")
	if r, err := e.sendFile(ctx, packedHeader(b4.Id, uuid.NewString(), 0, bodies[0]), nil, 1<<20); err != nil || !r.Result.Deduplicated {
		t.Fatalf("an upload of a moved body after the race: %v, %v; want deduplicated against its new pack", r, err)
	}
}

// TestRepackUnderAVerify: Verify listed a backup's packs and, parked before its HEAD of one, the
// pack was repacked and deleted past the grace (Verify runs beside cleanup). The missing pack is
// no problem — its bodies moved — and nothing is flagged.
func TestRepackUnderAVerify(t *testing.T) {
	e, ps := parkedEnv(t, true)
	ctx := as(tokenA)
	b2, ids, bodies := e.sharedPacks(t, "", 40, 4)
	var v *pb.VerifyBackupResponse
	var err error
	e.repackUnder(t, ps, func() {
		v, err = e.maint.VerifyBackup(ctx, &pb.VerifyBackupRequest{BackupId: b2.Id, ReadPercent: 100})
	})
	if err != nil || len(v.Problems) > 0 || v.Backup.Damaged {
		t.Fatalf("Verify across a repack: %v, %v; want no problem", v, err)
	}
	e.verifyIntact(t, b2.Id)
	for i, id := range ids {
		e.mustReadFile(t, b2.Id, id, bodies[i])
	}
	b4 := e.newBackup(t, "")
	if r, err := e.sendFile(ctx, packedHeader(b4.Id, uuid.NewString(), 0, bodies[0]), nil, 1<<20); err != nil || !r.Result.Deduplicated {
		t.Fatalf("an upload of a moved body after the race: %v, %v; want deduplicated (nothing flagged)", r, err)
	}
}

// TestRepackWaitsForTheTenantsMemory: with the tenant's share of the memory budget in use, a
// cleanup repacks nothing (the item says why) and takes nothing from the budget beyond it; once
// the share is free, the next cleanup repacks.
func TestRepackWaitsForTheTenantsMemory(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *envOptions) {
		o.pack = ingest.DefaultPackThreshold
		o.packLinger = time.Hour
	})
	ctx := as(tokenA)
	sid, _ := e.registerRoot(t, "prod")
	b2, ids, bodies := e.sharedPacks(t, sid, 40, 4)
	free := e.budget.TenantShare() - e.budget.UsedBy("acme")
	if !e.budget.TryAcquireFor("acme", free) {
		t.Fatal("could not take the tenant's free share")
	}
	rep, err := e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cleanupItems(rep, maintenance.ActionRepack)); n != 0 {
		t.Fatalf("cleanup repacked %d packs with the tenant's memory in use", n)
	}
	waited := false
	for _, it := range cleanupItems(rep, "skip") {
		waited = waited || strings.Contains(it.GetReason(), "memory budget")
	}
	if !waited {
		t.Fatalf("cleanup items %v: want a skip saying the memory budget is in use", rep.GetItems())
	}
	if used := e.budget.UsedBy("acme"); used != free {
		t.Fatalf("the tenant holds %d bytes after the cleanup, want the test's %d: the repack kept some", used, free)
	}
	e.budget.ReleaseFor("acme", free)
	rep, err = e.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	if err != nil || len(cleanupItems(rep, maintenance.ActionRepack)) != 1 {
		t.Fatalf("cleanup with the share free: %v, %v; want one repack", rep.GetItems(), err)
	}
	if used := e.budget.UsedBy("acme"); used != 0 {
		t.Fatalf("the tenant holds %d bytes after the repack", used)
	}
	for i, id := range ids {
		e.mustReadFile(t, b2.Id, id, bodies[i])
	}
}
