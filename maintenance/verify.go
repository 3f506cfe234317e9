package maintenance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// Problem is an object that failed verification.
type Problem struct{ Key, Problem, Detail string }

// Dangling counts references whose target record is not in the backup.
type Dangling struct {
	SObject, Field, Target string
	Count                  int64
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Checked, Read int64
	BytesRead     int64
	// Problems lists the first maxProblems (1000) problems; MoreProblems
	// counts the others.
	Problems     []Problem
	MoreProblems int64
	Dangling     []Dangling
}

// Verify checks every object of a committed backup with HeadObject, reads
// readPercent of them back and re-hashes them, and counts dangling references.
func (s *Service) Verify(ctx context.Context, tenant, id string, readPercent int) (*metadata.Backup, *VerifyReport, error) {
	if readPercent < 0 || readPercent > 100 {
		return nil, nil, fault.Invalid(fault.Violation{Field: "read_percent", Description: "must be between 0 and 100"})
	}
	b, st, err := s.cfg.Registry.CommittedBackup(ctx, tenant, id, "are verified")
	if err != nil {
		return nil, nil, err
	}
	run := &metadata.MaintenanceRun{TenantID: tenant, ID: "run-" + uuid.NewString(), Kind: "verify", Replica: s.cfg.Replica,
		StartedAt: s.cfg.Now().UTC(), Outcome: "running"}
	if err := s.cfg.Catalog.InsertMaintenanceRun(ctx, run); err != nil {
		return nil, nil, err
	}
	rep := &VerifyReport{}
	err = s.verify(ctx, b, st, readPercent, rep)
	outcome, msg := "ok", fmt.Sprintf("backup %s: %d objects checked, %d read, %d problems", id, rep.Checked, rep.Read, int64(len(rep.Problems))+rep.MoreProblems)
	if err != nil {
		outcome, msg = "failed", s.runMessage(ctx, run.ID, err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.cfg.Catalog.FinishMaintenanceRun(dctx, tenant, run.ID, outcome, msg, s.cfg.Now().UTC())
	if err != nil {
		return nil, nil, err
	}
	if len(rep.Problems) > 0 {
		if err := s.cfg.Catalog.SetBackupDamaged(dctx, tenant, id); err != nil {
			return nil, nil, err
		}
		b.Damaged = true
	}
	return b, rep, nil
}

// DefaultMaxFrameBytes is Config.MaxFrameBytes' default: ingest's default
// FrameSize (1 MiB) plus its default MaxRowBytes (8 MiB) — the largest frame
// any ingest writes or wrote (earlier versions added a whole row to a frame
// just under FrameSize). zstd frames larger than the encoder's window (8 MiB)
// declare that window, so this bounds the decoder's memory either way.
const DefaultMaxFrameBytes = 9 << 20

// maxProblems caps the problems a VerifyReport lists; MoreProblems counts the
// rest (every one is still flagged damaged in the catalog).
const maxProblems = 1000

// seenFiles caps the file objects Verify remembers to check an object shared
// by several files of the backup once; past it the set starts over, so an
// object may be checked again but memory stays bounded.
const seenFiles = 100000

// verifyWorkers is how many objects Verify checks at once: HeadObject and
// GetObject are round trips, so a large backup (or a slow bucket) is checked
// in a fraction of the time; each worker holds at most one zstd decoder
// bounded by MaxFrameBytes.
const verifyWorkers = 4

// verify checks the backup's objects as the catalog lists them, page by page
// (keyset pagination: one page of rows in memory, whatever the backup's size),
// verifyWorkers at a time.
func (s *Service) verify(ctx context.Context, b *metadata.Backup, st storage.Store, readPercent int, rep *VerifyReport) error {
	cat := s.cfg.Catalog
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		objs     = make(chan *metadata.Object)
	)
	for range verifyWorkers {
		wg.Go(func() {
			for o := range objs {
				var n objCounts
				var p *Problem
				err := fault.Catch(func() (err error) {
					if s.cfg.Hooks != nil && s.cfg.Hooks.BeforeCheckObject != nil {
						s.cfg.Hooks.BeforeCheckObject(o)
					}
					p, err = s.checkObjectRetrying(ctx, st, o, readPercent, &n)
					return err
				})
				mu.Lock()
				rep.Checked++
				rep.Read += n.read
				rep.BytesRead += n.bytes
				if err != nil && firstErr == nil {
					firstErr = err
					cancel(err)
				}
				if p != nil {
					if len(rep.Problems) < maxProblems {
						rep.Problems = append(rep.Problems, *p)
					} else {
						rep.MoreProblems++
					}
				}
				mu.Unlock()
				if p != nil {
					dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					_ = cat.SetObjectDamaged(dctx, b.TenantID, o.ID)
					dcancel()
				}
			}
		})
	}
	check := func(o *metadata.Object) error {
		select {
		case objs <- o:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	err := cat.ForEachChunkObjects(ctx, b.TenantID, b.ID, func(co *metadata.ChunkObjects) error {
		if err := check(co.Data); err != nil {
			return err
		}
		return check(co.Index)
	})
	if err == nil {
		seen := map[string]bool{}
		err = cat.ForEachFileObject(ctx, b.TenantID, b.ID, func(fo *metadata.FileObject) error {
			if seen[fo.Object.ID] {
				return nil
			}
			if len(seen) >= seenFiles {
				clear(seen)
			}
			seen[fo.Object.ID] = true
			return check(fo.Object)
		})
	}
	if err == nil && b.ManifestKey != "" {
		var o *metadata.Object
		o, err = cat.GetObject(ctx, b.TenantID, "obj-manifest-"+b.ID)
		if err == nil {
			err = check(o)
		} else if errors.Is(err, metadata.ErrNotFound) {
			err = nil
		}
	}
	close(objs)
	wg.Wait()
	if firstErr != nil {
		return firstErr // what the workers hit first, not the cancellation it caused
	}
	if err != nil {
		return err
	}
	if err := s.verifyPacks(ctx, b, st, readPercent, rep); err != nil {
		return err
	}
	return s.dangling(ctx, b, st, rep)
}

// objCounts is what checking one object read.
type objCounts struct{ read, bytes int64 }

// checkObjectRetrying is checkObject, tried again (up to 3 times in all, with
// a short backoff) when the store failed on the way: one dropped connection
// among thousands of requests is not worth failing a whole verify for.
func (s *Service) checkObjectRetrying(ctx context.Context, st storage.Store, o *metadata.Object, readPercent int, n *objCounts) (*Problem, error) {
	for attempt := 0; ; attempt++ {
		p, err := s.checkObject(ctx, st, o, readPercent, n)
		var fe *fault.Error
		if err == nil || attempt == 2 || !errors.As(err, &fe) || fe.Kind != fault.Unavailable {
			return p, err
		}
		select {
		case <-time.After(time.Duration(250<<attempt) * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// sampled picks objects to read back deterministically from their id.
func sampled(id string, percent int) bool {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32()%100) < percent
}

func (s *Service) checkObject(ctx context.Context, st storage.Store, o *metadata.Object, readPercent int, rep *objCounts) (*Problem, error) {
	info, err := st.Head(ctx, o.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return &Problem{Key: o.Key, Problem: "missing", Detail: "HeadObject: no such key"}, nil
	}
	if err != nil {
		return nil, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "HeadObject %s failed; retry", o.Key)
	}
	if info.Size != o.Size {
		return &Problem{Key: o.Key, Problem: "size", Detail: fmt.Sprintf("%d bytes in the bucket, %d in the catalog", info.Size, o.Size)}, nil
	}
	if !sampled(o.ID, readPercent) {
		return nil, nil
	}
	rc, err := st.Get(ctx, o.Key, 0, -1)
	if errors.Is(err, storage.ErrNotFound) {
		return &Problem{Key: o.Key, Problem: "missing", Detail: "GetObject: no such key"}, nil
	}
	if err != nil {
		return nil, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "GetObject %s failed; retry", o.Key)
	}
	defer rc.Close()
	rep.read++
	h := sha256.New()
	// The body is hostile input: never read more than the catalog's size of it.
	counted := &storage.CountingReader{R: storage.ExactBody("GetObject "+o.Key, rc, o.Size)}
	var src io.Reader = counted
	if o.Kind == metadata.ObjRecords {
		// Frames hold at most MaxFrameBytes of input: a frame that asks for a larger window
		// (or more memory) is corrupt, and is refused before anything is allocated for it.
		limit := uint64(max(s.cfg.MaxFrameBytes, zstd.MinWindowSize))
		dec, err := zstd.NewReader(counted, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(limit), zstd.WithDecoderMaxMemory(limit))
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		src = dec
	}
	_, err = io.Copy(h, src)
	rep.bytes += counted.N
	if err != nil {
		switch {
		case errors.Is(err, storage.ErrBadResponse):
			return &Problem{Key: o.Key, Problem: "size", Detail: "GetObject: " + err.Error()}, nil
		case counted.Err != nil && !errors.Is(counted.Err, storage.ErrBadResponse):
			return nil, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "reading %s failed; retry", o.Key)
		}
		return &Problem{Key: o.Key, Problem: "checksum", Detail: fmt.Sprintf("%s does not decode: %v", o.Key, err)}, nil
	}
	if !bytes.Equal(h.Sum(nil), o.SHA256) {
		return &Problem{Key: o.Key, Problem: "checksum", Detail: "SHA-256 differs from the catalog"}, nil
	}
	return nil, nil
}

type reference struct {
	Field  string `json:"field"`
	Target string `json:"target"`
}

// verifyBlockCacheBytes bounds the index blocks one Verify keeps for its
// dangling-reference check.
const verifyBlockCacheBytes = 2 << 20

// dangling counts, per declared reference, the parent ids that are in no
// record set of the target sObject in this backup.
func (s *Service) dangling(ctx context.Context, b *metadata.Backup, st storage.Store, rep *VerifyReport) error {
	readers := map[string][]*recindex.Reader{}
	refsOf := map[string][]reference{}
	// Parent ids come in ascending order and land in the same target blocks:
	// one GET per block, not one per reference (a verify that makes fewer
	// requests also finishes on a flaky network).
	blocks := recindex.NewBlockCache(verifyBlockCacheBytes)
	err := s.cfg.Catalog.ForEachChunkObjects(ctx, b.TenantID, b.ID, func(c *metadata.ChunkObjects) error {
		o := c.Index
		r, err := recindex.Open(blocks.ReaderAt(o.Key, storage.NewReaderAt(ctx, st, o.Key)), o.Size)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Only what the bucket holds is a problem of the backup; a read
			// that failed on the way (network, S3 5xx) is not damage.
			var p Problem
			switch {
			case errors.Is(err, storage.ErrNotFound):
				p = Problem{Key: o.Key, Problem: "missing", Detail: "record index: no such key"}
			case errors.Is(err, recindex.ErrCorrupt), errors.Is(err, recindex.ErrUnsupportedVersion), errors.Is(err, storage.ErrBadResponse):
				p = Problem{Key: o.Key, Problem: "checksum", Detail: "record index does not open: " + err.Error()}
			default:
				return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "reading record index %s failed; retry", o.Key)
			}
			if len(rep.Problems) < maxProblems {
				rep.Problems = append(rep.Problems, p)
			} else {
				rep.MoreProblems++
			}
			return nil
		}
		readers[c.SObject] = append(readers[c.SObject], r)
		if _, ok := refsOf[c.SObject]; !ok {
			var refs []reference
			_ = json.Unmarshal(c.References, &refs)
			refsOf[c.SObject] = refs
		}
		return nil
	})
	if err != nil {
		return err
	}
	for so, refs := range refsOf {
		for _, ref := range refs {
			d := Dangling{SObject: so, Field: ref.Field, Target: ref.Target}
			for _, r := range readers[so] {
				err := r.ForEachRef(ref.Field, func(parent, _ string) error {
					for _, t := range readers[ref.Target] {
						if !t.MayContain(parent) {
							continue
						}
						if _, ok, err := t.Lookup(parent); err != nil || ok {
							return err
						}
					}
					d.Count++
					return nil
				})
				if err != nil {
					return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "reading record indexes failed; retry")
				}
			}
			if d.Count > 0 {
				rep.Dangling = append(rep.Dangling, d)
			}
		}
	}
	return nil
}
