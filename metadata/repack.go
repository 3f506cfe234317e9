package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// switchBatch is how many blobs of one source one UPDATE of SwitchPack moves.
const switchBatch = 200

// PackRetired is the state of a pack whose live bodies a repack moved into a new pack
// (SwitchPack): it holds no blob row any more, and its object stays in the bucket for the repack
// grace — a reader may hold its location from before the switch — then RetiredPacks finds it
// and it is deleted, object first, then row (DeletePackRows).
const PackRetired = "RETIRED"

// PackLive is a pack and what of it is still live: the bytes and count of its blob rows (a blob
// row is deleted with the last file referencing it).
type PackLive struct {
	Pack      *Pack
	LiveBytes int64
	LiveCount int
}

// PackFraming is what a pack takes beside its bodies: Fixed bytes (header, trailer) and PerBody
// bytes a body (its index entry).
type PackFraming struct{ Fixed, PerBody int64 }

// PrunablePacks returns up to limit of the tenant's SEALED, undamaged packs on the storage (""
// = the service default) whose live part — a pack of only its live bodies (blob rows), framed
// as f says — is less than maxLive of the pack's size (0 < maxLive ≤ 1), but not empty (an empty
// pack is the purge's, EmptyPacks), after pack id after in byte order of id (paging: pass the
// last id returned). Measured so, a pack a repack wrote is wholly live however small its bodies
// (its framing is not dead space), so it is not repacked again until some of them die. One
// grouped query over the tenant's blobs of that storage: packs are few (one per ~8 MiB of small
// bodies).
func (c catalog) PrunablePacks(ctx context.Context, tenantID, storageID string, maxLive float64, f PackFraming, after string, limit int) ([]*PackLive, error) {
	const op = "PrunablePacks"
	if limit <= 0 || limit > 1000 || !(maxLive > 0 && maxLive <= 1) || f.Fixed < 0 || f.PerBody < 0 {
		return nil, c.fail(op, fmt.Errorf("%w: limit %d (want 1 to 1000), live fraction %g (want (0, 1]), framing %+v", ErrInvalid, limit, maxLive, f), nil)
	}
	q := "SELECT " + colsAs("p", packCols) + `, SUM(bl.size), COUNT(*) FROM packs p
 JOIN blobs bl ON bl.tenant_id = p.tenant_id AND bl.pack_id = p.id
 WHERE p.tenant_id = ? AND p.state = ? AND p.damaged = ? AND p.id > ?`
	args := []any{tenantID, PackSealed, false, after}
	if storageID == "" {
		q += " AND p.storage_id IS NULL"
	} else {
		q += " AND p.storage_id = ?"
		args = append(args, storageID)
	}
	// The fraction is compared in integers scaled by 1e6 so that both dialects agree on it.
	q += " GROUP BY " + colsAs("p", packCols) + " HAVING (? + SUM(bl.size) + COUNT(*) * ?) * 1000000 < p.size * ? ORDER BY p.id LIMIT ?"
	args = append(args, f.Fixed, f.PerBody, int64(maxLive*1e6), limit)
	list, err := queryRows(c, ctx, func(r scanner) (*PackLive, error) {
		pl := &PackLive{Pack: &Pack{}}
		d, fin := packDest(pl.Pack)
		if err := r.Scan(append(d, &pl.LiveBytes, &pl.LiveCount)...); err != nil {
			return nil, err
		}
		fin()
		return pl, nil
	}, q, args...)
	return list, c.fail(op, err, nil)
}

// BlobMove is one body a repack copied: blob BlobID, which was in pack From, is now at Offset
// of the new pack.
type BlobMove struct {
	BlobID, From string
	Offset       int64
}

// SwitchPack records a repack in one transaction: it inserts p (written to the bucket already)
// SEALED, moves each blob of moves whose row still names its From pack to p at its Offset (a
// blob the purge deleted since is not there to move: its bytes in p are dead), and retires the
// sources, stamping retired_at with at. Files name blobs, not packs, so no file row changes; a
// read that located a body before the switch still finds the retired pack's object until the
// grace has passed. It returns how many blobs moved. ErrConflict: a source is not SEALED (another
// repack retired it), or p's id or key exists; ErrInvalid: a source still holds a blob that moves
// did not move (the copy missed a live body).
func (c catalog) SwitchPack(ctx context.Context, p *Pack, moves []BlobMove, sources []string, at time.Time) (moved int, err error) {
	const op = "SwitchPack"
	if err := notEmpty("tenant id", p.TenantID, "pack id", p.ID, "org id", p.OrgID, "pack key", p.Key); err != nil {
		return 0, c.fail(op, err, nil)
	}
	if err := checkSHA256("pack index", p.IndexSHA256); err != nil {
		return 0, c.fail(op, err, nil)
	}
	if len(sources) == 0 || len(sources) > purgeBatch {
		return 0, c.fail(op, fmt.Errorf("%w: %d source packs (want 1 to %d)", ErrInvalid, len(sources), purgeBatch), nil)
	}
	err = c.inTx(ctx, func(c catalog) error {
		moved = 0
		p.State, p.BackupID = PackSealed, ""
		t := micros(at)
		if p.CreatedAt.IsZero() {
			p.CreatedAt = t
		}
		p.CreatedAt, p.SealedAt = micros(p.CreatedAt), t
		// The sources first, fenced on SEALED: a second switch of the same sources changes
		// nothing and fails here.
		in, args := inList(p.TenantID, sources)
		res, err := c.q.ExecContext(ctx, "UPDATE packs SET state = ?, retired_at = ? WHERE tenant_id = ? AND id IN ("+in+") AND state = ?",
			append(append([]any{PackRetired, toMicros(t)}, args...), PackSealed)...)
		if err != nil {
			return fmt.Errorf("packs: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != int64(len(sources)) {
			return fmt.Errorf("%w: %d of the %d source packs are SEALED", ErrConflict, n, len(sources))
		}
		if _, err := c.q.ExecContext(ctx, insertSQL("packs", packCols), p.TenantID, p.ID, p.OrgID,
			optString(p.StorageID), nil, p.Key, p.State, p.Size, p.BodyCount, p.IndexOffset,
			nonNil(p.IndexSHA256), p.KeyID, p.Damaged, toMicros(p.CreatedAt), toMicros(p.SealedAt)); err != nil {
			return fmt.Errorf("packs: %w", err)
		}
		// One statement per source and batch of blobs (a CASE gives each its offset). ms is
		// this attempt's own: inTx runs the function again after a deadlock.
		for ms := moves; len(ms) > 0; {
			from := ms[0].From
			n := 1
			for n < len(ms) && n < switchBatch && ms[n].From == from {
				n++
			}
			batch := ms[:n]
			ms = ms[n:]
			q := "UPDATE blobs SET pack_id = ?, pack_offset = CASE id"
			args := []any{p.ID}
			for _, m := range batch {
				q += " WHEN ? THEN ?"
				args = append(args, m.BlobID, m.Offset)
			}
			q += " END WHERE tenant_id = ? AND pack_id = ? AND id IN (?" + strings.Repeat(", ?", len(batch)-1) + ")"
			args = append(args, p.TenantID, from)
			for _, m := range batch {
				args = append(args, m.BlobID)
			}
			res, err := c.q.ExecContext(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("blobs: %w", err)
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			moved += int(k)
		}
		var left string
		err = c.q.QueryRowContext(ctx, "SELECT id FROM blobs WHERE tenant_id = ? AND pack_id IN ("+in+") LIMIT 1", args...).Scan(&left)
		switch {
		case err == nil:
			return fmt.Errorf("%w: blob %s is still in a source pack: the repack did not copy it", ErrInvalid, left)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		return nil
	})
	if err != nil {
		moved = 0
	}
	return moved, c.fail(op, err, ErrNotFound)
}

// BlobLocation returns blob blobID and the pack it is in now (a repack moves blobs between
// packs), or ErrNotFound.
func (c catalog) BlobLocation(ctx context.Context, tenantID, blobID string) (*Blob, *Pack, error) {
	bl, p, err := c.blobAndPack(ctx, tenantID, blobID)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("%w: blob %s", ErrNotFound, blobID)
	}
	return bl, p, c.fail("BlobLocation", err, nil)
}

// RetiredPacks returns up to limit of the tenant's RETIRED packs on the storage ("" = the
// service default) retired at or before before, in byte order of id: their objects are deleted
// from the bucket, then their rows (DeletePackRows).
func (c catalog) RetiredPacks(ctx context.Context, tenantID, storageID string, before time.Time, limit int) ([]*Pack, error) {
	const op = "RetiredPacks"
	if limit <= 0 || limit > 1000 {
		return nil, c.fail(op, fmt.Errorf("%w: limit %d (want 1 to 1000)", ErrInvalid, limit), nil)
	}
	q := "SELECT " + colsAs("p", packCols) + " FROM packs p WHERE p.tenant_id = ? AND p.state = ? AND p.retired_at <= ?"
	args := []any{tenantID, PackRetired, toMicros(before)}
	if storageID == "" {
		q += " AND p.storage_id IS NULL"
	} else {
		q += " AND p.storage_id = ?"
		args = append(args, storageID)
	}
	list, err := c.queryPacks(ctx, q+" ORDER BY p.id LIMIT ?", append(args, limit)...)
	return list, c.fail(op, err, nil)
}
