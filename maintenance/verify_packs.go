package maintenance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/pack"
	"backupstore/storage"
)

// maxPackRead bounds the pack Verify reads whole: packs are written at
// about the part size (phase 1); anything much larger is not one of ours.
const maxPackRead = 256 << 20

// verifyPacks checks the packs holding the backup's packed files: each with
// HeadObject (size); a sampled one is read whole and checked as a rebuild
// would: header, trailer and index (bounded before allocation), the
// catalog's index SHA-256 and key id, the index MAC under the tenant's
// derived key (so a forged or moved index fails), every body against its
// entry's SHA-256, and every blob row against its entry. A problem names
// the pack key and flags the pack damaged.
func (s *Service) verifyPacks(ctx context.Context, b *metadata.Backup, st storage.Store, readPercent int, rep *VerifyReport) error {
	packs, err := s.cfg.Catalog.BackupPacks(ctx, b.TenantID, b.ID)
	if err != nil {
		return err
	}
	for _, p := range packs {
		var prob *Problem
		var read, bytesRead int64
		for attempt := 0; ; attempt++ {
			prob, read, bytesRead, err = s.checkPack(ctx, b, st, p, readPercent)
			var fe *fault.Error
			if err == nil || attempt == 2 || !errors.As(err, &fe) || fe.Kind != fault.Unavailable {
				break
			}
			select {
			case <-time.After(time.Duration(250<<attempt) * time.Millisecond):
			case <-ctx.Done():
				return err
			}
		}
		if err != nil {
			return err
		}
		if prob != nil && prob.Problem == "missing" && s.repackedSince(ctx, b.TenantID, p.ID) {
			continue // its bodies moved to another pack after the listing (Verify runs beside cleanup)
		}
		rep.Checked++
		rep.Read += read
		rep.BytesRead += bytesRead
		if prob == nil {
			continue
		}
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, *prob)
		} else {
			rep.MoreProblems++
		}
		blobs, err := s.cfg.Catalog.PackBlobs(ctx, b.TenantID, p.ID)
		if err == nil && len(blobs) > 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_ = s.cfg.Catalog.SetBlobDamaged(dctx, b.TenantID, blobs[0].ID) // flags the pack
			cancel()
		}
	}
	return nil
}

// repackedSince reports whether pack id was retired by a repack (or its row deleted after one)
// since the backup's packs were listed: a missing object is then no loss.
func (s *Service) repackedSince(ctx context.Context, tenant, id string) bool {
	p, err := s.cfg.Catalog.GetPack(ctx, tenant, id)
	return errors.Is(err, metadata.ErrNotFound) || (err == nil && p.State == metadata.PackRetired)
}

func (s *Service) checkPack(ctx context.Context, b *metadata.Backup, st storage.Store, p *metadata.Pack, readPercent int) (prob *Problem, read, n int64, err error) {
	bad := func(what, format string, args ...any) (*Problem, int64, int64, error) {
		return &Problem{Key: p.Key, Problem: what, Detail: fmt.Sprintf(format, args...)}, read, n, nil
	}
	info, err := st.Head(ctx, p.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return bad("missing", "HeadObject: no such key")
	}
	if err != nil {
		return nil, 0, 0, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "HeadObject %s failed; retry", p.Key)
	}
	if info.Size != p.Size {
		return bad("size", "HeadObject: %d bytes, the catalog says %d", info.Size, p.Size)
	}
	if !sampled(p.ID, readPercent) {
		return nil, 0, 0, nil
	}
	if p.Size > maxPackRead || p.Size < pack.HeaderSize+pack.TrailerSize {
		return bad("size", "a pack of %d bytes is out of bounds", p.Size)
	}
	rc, err := st.Get(ctx, p.Key, 0, p.Size)
	if errors.Is(err, storage.ErrNotFound) {
		return bad("missing", "GetObject: no such key")
	}
	if err != nil {
		return nil, 0, 0, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "GetObject %s failed; retry", p.Key)
	}
	data := make([]byte, p.Size)
	_, err = io.ReadFull(storage.ExactBody(p.Key, rc, p.Size), data)
	rc.Close()
	if err != nil {
		return nil, 0, 0, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "GetObject %s failed; retry", p.Key)
	}
	read, n = 1, p.Size
	x, err := pack.Parse(data, pack.Limits{})
	if err != nil {
		return bad("corrupt", "%v", err)
	}
	if x.PackID != p.ID || x.Trailer.KeyID != p.KeyID || x.Trailer.IndexOffset != p.IndexOffset {
		return bad("corrupt", "the pack names id %s, key %s, index at %d; the catalog says %s, %s, %d",
			x.PackID, x.Trailer.KeyID, x.Trailer.IndexOffset, p.ID, p.KeyID, p.IndexOffset)
	}
	if s.cfg.PackKeyWith == nil {
		return nil, 0, 0, errors.New("maintenance: PackKeyWith is not configured")
	}
	key, err := s.cfg.PackKeyWith(p.KeyID, b.TenantID)
	if err != nil {
		return bad("unverifiable", "the index MAC names master key %s, which this server does not hold", p.KeyID)
	}
	if err := x.Verify(key, b.TenantID, p.OrgID); err != nil {
		return bad("forged", "%v", err)
	}
	if sum := sha256.Sum256(data[p.IndexOffset:]); !bytes.Equal(sum[:], p.IndexSHA256) {
		return bad("corrupt", "index and trailer do not match the catalog's SHA-256")
	}
	badBodies, err := x.CheckBodies(data)
	if err != nil {
		return bad("corrupt", "%v", err)
	}
	if len(badBodies) > 0 {
		return bad("corrupt", "%d bodies do not match their SHA-256 (first at %d)", len(badBodies), x.Entries[badBodies[0]].Offset)
	}
	blobs, err := s.cfg.Catalog.PackBlobs(ctx, b.TenantID, p.ID)
	if err != nil {
		return nil, 0, 0, err
	}
	at := make(map[int64]pack.Entry, len(x.Entries))
	for _, e := range x.Entries {
		at[e.Offset] = e
	}
	for _, bl := range blobs {
		e, ok := at[bl.Offset]
		if !ok || e.Length != bl.Size || !bytes.Equal(e.SHA256[:], bl.SHA256) {
			return bad("corrupt", "blob %s (%d bytes at %d) is not an entry of the index", bl.ID, bl.Size, bl.Offset)
		}
	}
	return nil, read, n, nil
}
