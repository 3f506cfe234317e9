package maintenance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/google/uuid"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/pack"
	"backupstore/storage"
)

// Repack defaults (docs/FORMAT.md §2.8, prune).
const (
	// DefaultRepackBelow: a SEALED pack that a pack of only its live bodies would fill less
	// than half of is repacked by cleanup.
	DefaultRepackBelow = 0.5
	// DefaultRepackGrace is how long a RETIRED pack's object outlives its switch: longer than
	// any read that located a body in it before (a ReadFile of one small body takes
	// milliseconds; a stalled one is cut by the stream timeouts).
	DefaultRepackGrace = time.Hour
	// DefaultRepackBytes bounds the source pack bytes one cleanup run repacks, so that a
	// tenant's run stays short; the next run goes on.
	DefaultRepackBytes = 1 << 30
	// repackTarget is a new pack's size: the ingest part size packs are sealed at.
	repackTarget = storage.DefaultPartSize
	// repackGap is the most dead bytes between two live bodies that one ranged GET reads
	// through rather than making two requests.
	repackGap = 1 << 20
)

// packFraming is a pack's bytes beside its bodies (package pack's layout).
var packFraming = metadata.PackFraming{Fixed: pack.HeaderSize + pack.TrailerSize, PerBody: pack.EntrySize}

// Report item actions of the repack step.
const (
	ActionRepack        = "repack"
	ActionDeleteRetired = "delete-retired-pack"
)

// repackOut is a new pack being filled with the live bodies of sources of one org.
type repackOut struct {
	org     string
	id, key string
	w       *pack.Writer
	moves   []metadata.BlobMove
	sources []*metadata.Pack
	live    int64
}

// repack is cleanup's pack step, per storage of the tenant: RETIRED packs past the grace are
// deleted (object, then row); then SEALED packs whose live bodies fill less than RepackBelow of
// them are pruned as restic's prune does: their live bodies, each checked against its blob's
// SHA-256 and its source's MAC-checked index, are copied into new packs of one org (PutObject),
// and one transaction per new pack moves the blobs and retires the sources (SwitchPack). Files
// name blobs, so no file row changes. Under the tenant's maintenance lock nothing else deletes
// or repacks; ingest may only add references to the blobs, which follow the blob rows.
//
// A crash after a new pack's PUT leaves an object without a row (garbage collection's, after
// its grace); after the switch, RETIRED sources that the next run deletes when due.
func (s *Service) repack(ctx context.Context, tenant string, rep *Report) error {
	if s.cfg.RepackBelow < 0 || s.cfg.PackKey == nil {
		return nil
	}
	storages, _, err := s.tenantStorages(ctx, tenant)
	if err != nil {
		return err
	}
	left := s.cfg.RepackBytes
	for _, sid := range storages {
		st, err := s.storeOrSkip(ctx, tenant, sid, rep)
		if err != nil {
			return err
		}
		if st == nil {
			continue
		}
		if err := s.deleteRetired(ctx, tenant, sid, st, rep); err != nil {
			return err
		}
		if left <= 0 {
			continue
		}
		if left, err = s.prune(ctx, tenant, sid, st, left, rep); err != nil {
			return err
		}
	}
	return nil
}

// tenantStorages is "" (the service default) and the tenant's registered storages, with
// their rows by id.
func (s *Service) tenantStorages(ctx context.Context, tenant string) ([]string, map[string]*metadata.Storage, error) {
	ids := []string{""}
	rows := map[string]*metadata.Storage{}
	tok := ""
	for {
		page, next, err := s.cfg.Catalog.ListStorages(ctx, tenant, 1000, tok)
		if err != nil {
			return nil, nil, err
		}
		for _, st := range page {
			ids = append(ids, st.ID)
			rows[st.ID] = st
		}
		if next == "" {
			return ids, rows, nil
		}
		tok = next
	}
}

// deleteRetired deletes the RETIRED packs of the storage whose grace has passed: objects
// first, then rows (a crash in between finds them again).
func (s *Service) deleteRetired(ctx context.Context, tenant, sid string, st storage.Store, rep *Report) error {
	before := s.cfg.Now().Add(-s.cfg.RepackGrace)
	for {
		due, err := s.cfg.Catalog.RetiredPacks(ctx, tenant, sid, before, purgePage)
		if err != nil || len(due) == 0 {
			return err
		}
		var keys, ids []string
		for _, p := range due {
			keys, ids = append(keys, p.Key), append(ids, p.ID)
			rep.Items = append(rep.Items, Item{Action: ActionDeleteRetired, Key: p.Key, Bytes: p.Size,
				Reason: "its live bodies were repacked, and the grace for reads that located them here has passed"})
		}
		if rep.DryRun {
			return nil
		}
		if err := st.Delete(ctx, keys...); err != nil {
			return deleteFault(err)
		}
		s.crash("after-retired-objects")
		if err := s.cfg.Catalog.DeletePackRows(ctx, tenant, ids); err != nil {
			return err
		}
		for _, p := range due {
			rep.ObjectsDeleted++
			rep.BytesFreed += p.Size
		}
	}
}

// prune repacks the storage's packs below RepackBelow live, reading at most left bytes of
// sources, and returns what is left of that. What it holds (the new packs being filled, one
// source's bodies) is charged to the tenant's share of the memory budget; when that is full the
// rest waits for the next run.
func (s *Service) prune(ctx context.Context, tenant, sid string, st storage.Store, left int64, rep *Report) (int64, error) {
	outs := map[string]*repackOut{} // by org
	var held int64                  // reserved from the budget
	hold := func(n int64) bool {
		switch b := s.cfg.Budget; {
		case b == nil:
		case n > held:
			if !b.TryAcquireFor(tenant, n-held) {
				return false
			}
		case n < held:
			b.ReleaseFor(tenant, held-n)
		}
		held = n
		return true
	}
	defer hold(0)
	filling := func() int64 { // what the outputs hold now
		var n int64
		for _, o := range outs {
			n += int64(o.w.Size())
		}
		return n
	}
	after := ""
	for left > 0 {
		page, err := s.cfg.Catalog.PrunablePacks(ctx, tenant, sid, s.cfg.RepackBelow, packFraming, after, 100)
		if err != nil {
			return left, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Pack.ID
		for _, pl := range page {
			if left <= 0 {
				break
			}
			p := pl.Pack
			if rep.DryRun {
				rep.Items = append(rep.Items, Item{Action: ActionRepack, Key: p.Key, Bytes: pl.LiveBytes,
					Reason: fmt.Sprintf("%d of its %d bytes are live bodies (%d): a pack of them alone would be below %.0f%% of it", pl.LiveBytes, p.Size, pl.LiveCount, 100*s.cfg.RepackBelow)})
				left -= p.Size
				continue
			}
			out := outs[p.OrgID]
			if out != nil && out.live+pl.LiveBytes > repackTarget && len(out.sources) > 0 {
				if err := s.writeRepack(ctx, tenant, sid, st, out, rep); err != nil {
					return left, err
				}
				delete(outs, p.OrgID)
				out = nil
			}
			// The outputs, this source's reads (its live bodies and the gaps read through, at
			// most the pack) and their copy, its index.
			if !hold(filling() + p.Size + pl.LiveBytes + pack.HeaderSize + int64(p.BodyCount)*pack.EntrySize + pack.TrailerSize) {
				rep.Items = append(rep.Items, Item{Action: "skip", Key: p.Key,
					Reason: "not repacked in this run: your share of the memory budget is in use; the next cleanup goes on"})
				left = 0
				break
			}
			if out == nil {
				id := "pck-" + uuid.NewString()
				w, err := pack.NewWriter(make([]byte, 0, pack.HeaderSize+min(repackTarget, pl.LiveBytes)), id)
				if err != nil {
					return left, err
				}
				out = &repackOut{org: p.OrgID, id: id, key: tenant + "/" + p.OrgID + "/packs/" + id, w: w}
				outs[p.OrgID] = out
			}
			ok, err := s.copyLive(ctx, tenant, st, p, out, rep)
			if err != nil {
				return left, err
			}
			left -= p.Size
			if ok {
				out.sources = append(out.sources, p)
			}
		}
	}
	orgs := make([]string, 0, len(outs))
	for org := range outs {
		orgs = append(orgs, org)
	}
	slices.Sort(orgs)
	for _, org := range orgs {
		if out := outs[org]; len(out.sources) > 0 {
			if err := s.writeRepack(ctx, tenant, sid, st, out, rep); err != nil {
				return left, err
			}
		}
	}
	return left, nil
}

// copyLive appends source p's live bodies to out, each checked: p's index (its header and
// tail, ranged GETs) must parse, carry the catalog's SHA-256 and key id and authenticate under
// the tenant's key for p's org, and each body must match its blob row and its index entry. A
// pack that does not is left as it is, flagged damaged through its blob (Verify reports it; the
// bytes stay for the operator), and false is returned; out is then unchanged.
func (s *Service) copyLive(ctx context.Context, tenant string, st storage.Store, p *metadata.Pack, out *repackOut, rep *Report) (bool, error) {
	blobs, err := s.cfg.Catalog.PackBlobs(ctx, tenant, p.ID)
	if err != nil || len(blobs) == 0 {
		return false, err
	}
	// flag is the blob flagged damaged (which flags its pack): the one whose body is wrong, or
	// the first when the pack as a whole does not check out.
	flag := blobs[0]
	damaged := func(format string, args ...any) (bool, error) {
		msg := fmt.Sprintf(format, args...)
		s.cfg.Logger.ErrorContext(ctx, "repack: source pack does not check out; left as it is", "tenant", tenant, "pack", p.Key, "problem", msg)
		rep.Items = append(rep.Items, Item{Action: "skip", Key: p.Key, Reason: "not repacked: " + msg})
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return false, s.cfg.Catalog.SetBlobDamaged(dctx, tenant, flag.ID)
	}
	if p.BodyCount < 1 || p.BodyCount > pack.MaxEntries || p.IndexOffset < pack.HeaderSize ||
		p.Size-p.IndexOffset != int64(p.BodyCount)*pack.EntrySize+pack.TrailerSize {
		return damaged("the catalog's size %d, index offset %d and %d bodies do not fit a pack", p.Size, p.IndexOffset, p.BodyCount)
	}
	read := func(off, n int64) ([]byte, error) {
		rc, err := st.Get(ctx, p.Key, off, n)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b := make([]byte, n)
		if _, err := io.ReadFull(storage.ExactBody(p.Key, rc, n), b); err != nil {
			return nil, err
		}
		return b, nil
	}
	header, err := read(0, pack.HeaderSize)
	if err != nil {
		return s.readFailed(ctx, p, err, damaged)
	}
	tail, err := read(p.IndexOffset, p.Size-p.IndexOffset)
	if err != nil {
		return s.readFailed(ctx, p, err, damaged)
	}
	x, err := pack.ParseIndex(header, tail, p.Size, pack.Limits{})
	if err != nil {
		return damaged("%v", err)
	}
	if sum := sha256.Sum256(tail); !bytes.Equal(sum[:], p.IndexSHA256) || x.PackID != p.ID || x.Trailer.KeyID != p.KeyID {
		return damaged("its index is not the one the catalog recorded")
	}
	if s.cfg.PackKeyWith == nil {
		return false, errors.New("maintenance: PackKeyWith is not configured")
	}
	key, err := s.cfg.PackKeyWith(p.KeyID, tenant)
	if err != nil {
		return damaged("its index MAC names master key %s, which this server does not hold", p.KeyID)
	}
	if err := x.Verify(key, tenant, p.OrgID); err != nil {
		return damaged("%v", err)
	}
	at := make(map[int64]pack.Entry, len(x.Entries))
	for _, e := range x.Entries {
		at[e.Offset] = e
	}
	// The live bodies, read in runs whose gaps (dead bodies) are at most repackGap: one GET
	// per run. A pack's live bodies are scattered among dead ones; a request costs an object
	// store far more than the bytes of a small gap, so a pack a tenth live is read in one GET,
	// not one per body.
	type body struct {
		bl   *metadata.Blob
		data []byte
	}
	var got []body
	for i := 0; i < len(blobs); {
		j := i + 1
		for j < len(blobs) && blobs[j].Offset-(blobs[j-1].Offset+blobs[j-1].Size) <= repackGap {
			j++
		}
		start, end := blobs[i].Offset, blobs[j-1].Offset+blobs[j-1].Size
		for _, bl := range blobs[i:j] {
			e, ok := at[bl.Offset]
			if !ok || e.Length != bl.Size || !bytes.Equal(e.SHA256[:], bl.SHA256) {
				flag = bl
				return damaged("blob %s (%d bytes at %d) is not an entry of its index", bl.ID, bl.Size, bl.Offset)
			}
		}
		run, err := read(start, end-start)
		if err != nil {
			return s.readFailed(ctx, p, err, damaged)
		}
		for _, bl := range blobs[i:j] {
			b := run[bl.Offset-start : bl.Offset-start+bl.Size]
			if sum := sha256.Sum256(b); !bytes.Equal(sum[:], bl.SHA256) {
				flag = bl
				return damaged("the body of blob %s (%d bytes at %d) does not match its SHA-256", bl.ID, bl.Size, bl.Offset)
			}
			got = append(got, body{bl, b})
		}
		i = j
	}
	for _, g := range got {
		off, err := out.w.Add(g.data, [32]byte(g.bl.SHA256))
		if err != nil {
			return false, err
		}
		out.moves = append(out.moves, metadata.BlobMove{BlobID: g.bl.ID, From: p.ID, Offset: off})
		out.live += g.bl.Size
	}
	return true, nil
}

// readFailed answers a failed read of a source: a missing or short object is damage (flagged
// through damaged); anything else is the storage's, retried by the next run.
func (s *Service) readFailed(ctx context.Context, p *metadata.Pack, err error, damaged func(string, ...any) (bool, error)) (bool, error) {
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidRange) {
		return damaged("reading it: %v", err)
	}
	return false, fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "reading pack %s to repack it failed; the next cleanup retries", p.Key)
}

// writeRepack finishes out, PUTs it, and switches its sources to it in one transaction.
func (s *Service) writeRepack(ctx context.Context, tenant, sid string, st storage.Store, out *repackOut, rep *Report) error {
	keyID, macKey, err := s.cfg.PackKey(tenant)
	if err != nil {
		return err
	}
	count := out.w.Count()
	data, indexOffset, err := out.w.Finish(macKey, keyID, tenant, out.org)
	if err != nil {
		return err
	}
	if _, err := st.Put(ctx, out.key, bytes.NewReader(data)); err != nil {
		return fault.Wrap(err, fault.Unavailable, "STORAGE_UNAVAILABLE", "writing a repacked pack failed; the next cleanup retries")
	}
	s.crash("after-repack-put")
	isum := sha256.Sum256(data[indexOffset:])
	p := &metadata.Pack{TenantID: tenant, ID: out.id, OrgID: out.org, StorageID: sid, Key: out.key, Size: int64(len(data)),
		BodyCount: count, IndexOffset: indexOffset, IndexSHA256: isum[:], KeyID: keyID}
	ids := make([]string, len(out.sources))
	var srcBytes int64
	for i, src := range out.sources {
		ids[i] = src.ID
		srcBytes += src.Size
	}
	moved, err := s.cfg.Catalog.SwitchPack(ctx, p, out.moves, ids, s.cfg.Now().UTC())
	if err != nil {
		return err
	}
	s.crash("after-repack-switch")
	rep.PacksRepacked += int64(len(out.sources))
	rep.PacksWritten++
	rep.Items = append(rep.Items, Item{Action: ActionRepack, Key: out.key, Bytes: p.Size,
		Reason: fmt.Sprintf("%d live bodies (%d moved) of %d packs (%d bytes) below %.0f%% live; those are retired and deleted after the grace",
			count, moved, len(out.sources), srcBytes, 100*s.cfg.RepackBelow)})
	return nil
}
