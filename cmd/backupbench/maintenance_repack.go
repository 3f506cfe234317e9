package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	pb "backupstore/proto/backupstore/v1"
	"backupstore/storage"
)

// repack runs stage 3: backup A stores --repack-files small files (packed, UploadFiles), backup
// B shares every tenth body (deduplicated: the same blobs), A is deleted — its packs are left a
// tenth live — and one RunCleanup repacks them. The baseline is what a script compacting the
// same packs would at least do: GetObject of each whole source pack, one after the other, and
// PutObject of as many bytes as were live. The moved files are then read back and compared.
func (b *maintBench) repack(ctx context.Context) error {
	n, size := b.c.repackFiles, int(b.c.repackSize)
	fs := newFileSet(n, size)
	a, err := createBackup(ctx, b.d, "repack-a")
	if err != nil {
		return err
	}
	if _, err := uploadFilesBatched(ctx, b.d, a, fs, b.c.streams, "repack-a"); err != nil {
		return err
	}
	if err := commitBackup(ctx, b.d, a); err != nil {
		return err
	}
	var keep fileSet
	for i := 0; i < n; i += 10 {
		keep.bodies, keep.sums = append(keep.bodies, fs.bodies[i]), append(keep.sums, fs.sums[i])
	}
	bb, err := createBackup(ctx, b.d, "repack-b")
	if err != nil {
		return err
	}
	out, err := uploadFilesBatched(ctx, b.d, bb, keep, b.c.streams, "repack-b")
	if err != nil {
		return err
	}
	if out.deduplicated != int64(len(keep.bodies)) {
		return fmt.Errorf("backup B: %d of %d files deduplicated", out.deduplicated, len(keep.bodies))
	}
	if err := commitBackup(ctx, b.d, bb); err != nil {
		return err
	}
	if _, err := b.d.maint.DeleteBackup(ctx, &pb.DeleteBackupRequest{BackupId: a}); err != nil {
		return fmt.Errorf("DeleteBackup: %w", err)
	}
	packPrefix := "dev/" + benchOrg + "/packs/"
	listPacks := func() ([]storage.ObjectInfo, error) {
		var l []storage.ObjectInfo
		err := b.direct.List(ctx, packPrefix, func(o storage.ObjectInfo) error { l = append(l, o); return nil })
		return l, err
	}
	sources, err := listPacks()
	if err != nil {
		return err
	}
	var srcBytes int64
	for _, o := range sources {
		srcBytes += o.Size
	}
	live := int64(len(keep.bodies) * size)
	b.logf("repack: %d packs of %s hold %s live of B's %d files", len(sources), fmtBytes(srcBytes), fmtBytes(live), len(keep.bodies))

	mark := b.proxy.mark()
	s0 := b.cpu.snap()
	start := time.Now()
	resp, err := b.d.maint.RunCleanup(ctx, &pb.RunCleanupRequest{})
	dur := time.Since(start)
	if err != nil {
		return fmt.Errorf("RunCleanup: %w", err)
	}
	u := b.cpu.snap().since(s0, nil)
	reqs := b.proxy.since(mark)
	if err := failed(reqs); err != nil {
		return err
	}
	var written []string
	for _, it := range resp.GetItems() {
		switch {
		case it.GetAction() == "repack":
			written = append(written, it.GetKey())
		case it.GetAction() == "skip":
			return fmt.Errorf("RunCleanup skipped %s: %s", it.GetKey(), it.GetReason())
		}
	}
	if len(written) == 0 {
		return fmt.Errorf("RunCleanup repacked nothing: %v", resp.GetItems())
	}
	after, err := listPacks()
	if err != nil {
		return err
	}
	if len(after) != len(sources)+len(written) {
		return fmt.Errorf("after the repack the bucket holds %d packs, want the %d sources (their grace) and %d new", len(after), len(sources), len(written))
	}

	// Baseline: read the same sources whole, sequentially, and write their live bytes once.
	base := func() (time.Duration, error) {
		start := time.Now()
		for _, o := range sources {
			rc, err := b.direct.Get(ctx, o.Key, 0, o.Size)
			if err != nil {
				return 0, err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return 0, err
			}
		}
		if _, err := b.direct.Put(ctx, "baseline/repack", bytes.NewReader(make([]byte, live))); err != nil {
			return 0, err
		}
		d := time.Since(start)
		return d, b.direct.DeleteObject(ctx, "baseline/repack")
	}
	bdur, err := base()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	// The moved files read back as they were stored (every 20th of B's).
	list, err := b.d.restores.ListBackupContents(ctx, &pb.ListBackupContentsRequest{BackupId: bb, PageSize: 1000})
	if err != nil {
		return err
	}
	want := map[string][]byte{}
	for i, body := range keep.bodies {
		want[fmt.Sprintf("repack-b/ContentVersion/%05d.bin", i)] = body
	}
	checked := 0
	for i, f := range list.GetFiles() {
		if i%20 != 0 {
			continue
		}
		got, err := readWholeFile(ctx, b.d, bb, f.GetFileId())
		if err != nil {
			return err
		}
		if w, ok := want[f.GetPath()]; !ok || !bytes.Equal(got, w) {
			return fmt.Errorf("file %s (%s) reads back %d bytes that are not what was stored", f.GetFileId(), f.GetPath(), len(got))
		}
		checked++
	}
	rate, brate := float64(srcBytes)/mb/dur.Seconds(), float64(srcBytes)/mb/bdur.Seconds()
	b.rep.Runs["repack_source_MBps"] = []float64{rate}
	b.rep.CPU["repack"] = u
	what := fmt.Sprintf("RunCleanup repacking %d packs (%s, a tenth live: %d bodies of %s) into %d: source MB per second", len(sources),
		fmtBytes(srcBytes), len(keep.bodies), b.c.repackSize.String(), len(written))
	b.rep.addValue("3", what, rate, "MB/s", "", fmt.Sprintf("%s; S3: %s; %d moved files read back and compared", u, byOp(reqs), checked))
	b.rep.addValue("3", "baseline: GetObject of each source pack whole, one after the other, and one PutObject of the live bytes (direct to the gateway)", brate, "MB/s", "", "")
	b.rep.addRatio("3", "information: repack ÷ that baseline", rate, "MB/s", div(rate, brate), "", "")
	b.logf("repack: %d packs in %s (%.1f MB/s of sources; baseline %.1f MB/s), %s", len(sources), dur.Round(time.Millisecond), rate, brate, byOp(reqs))
	return nil
}

// readWholeFile reads one file whole through ReadFile.
func readWholeFile(ctx context.Context, d *daemon, backupID, fileID string) ([]byte, error) {
	stream, err := d.restores.ReadFile(ctx, &pb.ReadFileRequest{BackupId: backupID, Selector: &pb.ReadFileRequest_FileId{FileId: fileID}})
	if err != nil {
		return nil, fmt.Errorf("ReadFile %s: %w", fileID, err)
	}
	var got []byte
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("ReadFile %s: %w", fileID, err)
		}
		if m.GetSummary() != nil {
			return got, nil
		}
		got = append(got, m.GetData()...)
	}
}
