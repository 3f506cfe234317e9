package server

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"backupstore/fault"
	"backupstore/ingest"
	pb "backupstore/proto/backupstore/v1"
)

// UploadFiles window: how many files, and bytes of their bodies, a stream
// may have read and not yet answered. The server stops reading beyond.
const (
	uploadFilesWindow      = 1024
	uploadFilesWindowBytes = 16 << 20
	// uploadFilesFileCost is charged to the tenant's share of the memory
	// budget for each file in flight, beside its body, until it is
	// answered: its goroutine, header, catalog rows and result. Uncharged,
	// 64 streams with full windows of 512-byte files (65,536 files in
	// flight) took backupd to 766 MiB of RSS on a 512 MiB budget (the scale
	// benchmark at 1,000,000 files); charged, the budget bounds how many
	// files wait at once.
	uploadFilesFileCost = 16 << 10
)

// UploadFiles implements pb.BackupServiceServer: many small files on one
// stream, each handed to ingest as its own upload (UploadFile's path, so
// packing, dedup, resends and the promise are the same) on its own
// goroutine, answered as each becomes durable. Files in flight are what
// fill a pack: with 16 single-file streams a pack holds about 16 bodies,
// with a window of them it holds as many as arrive within the linger.
func (s *Server) UploadFiles(stream pb.BackupService_UploadFilesServer) error {
	ctx := stream.Context()
	in, first, leave, err := openUpload(s, ctx, "UploadFiles", stream.Recv, (*pb.UploadFilesRequest).GetHeader)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer leave()
	tenant := TenantFrom(ctx)
	maxBody := max(s.ing.PackThreshold(), 1<<20)

	// One goroutine sends the answers; the window bounds what waits.
	answers := make(chan *pb.UploadFilesResponse, uploadFilesWindow)
	sendErr := make(chan error, 1)
	go func() {
		var err error
		for a := range answers {
			if err == nil {
				err = stream.Send(a)
			}
		}
		sendErr <- err
	}()
	var (
		mu        sync.Mutex
		cond      = sync.NewCond(&mu)
		files     int
		bodyBytes int64
		wg        sync.WaitGroup
	)
	answer := func(id string, res *ingest.Result, err error, size int64) {
		a := &pb.UploadFilesResponse{UploadId: id}
		if err != nil {
			a.Error = fileError(toStatus(ctx, s.log, err))
		} else {
			a.Result = resultToProto(res)
		}
		answers <- a
		mu.Lock()
		files--
		bodyBytes -= size
		mu.Unlock()
		cond.Broadcast()
	}
	// backups are those the stream sent files for, each counted as sending
	// more into its open pack until the stream ends or waits for answers.
	backups := map[string]*ingest.Expectation{}
	defer func() {
		for _, e := range backups {
			e.Release()
		}
	}()
	// finish waits for the files in flight and their answers.
	finish := func(err error) error {
		for _, e := range backups {
			e.Release() // nothing more comes: no pack waits for this stream
		}
		wg.Wait()
		close(answers)
		if serr := <-sendErr; err == nil {
			err = serr
		}
		return err
	}

	m := first
	for {
		h := m.GetHeader()
		if h == nil {
			return finish(toStatus(ctx, s.log, fault.New(fault.InvalidArgument, "MISSING_HEADER",
				"UploadFiles: a data message must follow its file's header directly")))
		}
		hdr := ingest.FileHeader{BackupID: h.GetBackupId(), ParentID: h.GetParentId(), Path: h.GetPath(), Name: h.GetName(),
			ContentType: h.GetContentType(), UploadID: h.GetUploadId(), DeclaredSize: -1, DeclaredSHA256: h.GetDeclaredSha256()}
		var bad error
		switch {
		case hdr.UploadID == "":
			bad = fault.Invalid(fault.Violation{Field: "header.upload_id", Description: "required on UploadFiles: it names the file in the answers"})
		case h.DeclaredSize == nil || h.GetDeclaredSize() < 0:
			bad = fault.Invalid(fault.Violation{Field: "header.declared_size", Description: "required on UploadFiles (≥ 0)"})
		case h.GetDeclaredSize() > maxBody:
			bad = fault.Invalid(fault.Violation{Field: "header.declared_size",
				Description: "larger than UploadFiles takes; send this file with UploadFile"})
		case h.GetWriteOffset() != 0:
			bad = fault.Invalid(fault.Violation{Field: "header.write_offset", Description: "UploadFiles sends whole bodies: must be 0"})
		}
		if bad != nil {
			// The stream cannot tell where this file's data ends: refuse it whole.
			return finish(toStatus(ctx, s.log, bad))
		}
		hdr.DeclaredSize = h.GetDeclaredSize()
		m, err = in.Recv()
		if err != nil {
			return finish(toStatus(ctx, s.log, recvErr(err)))
		}
		d := m.GetData()
		switch {
		case d == nil:
			return finish(toStatus(ctx, s.log, fault.New(fault.InvalidArgument, "MISSING_DATA",
				"UploadFiles: the header of %s must be followed by its data message", hdr.UploadID)))
		case d.GetUploadId() != hdr.UploadID:
			return finish(toStatus(ctx, s.log, fault.Invalid(fault.Violation{Field: "data.upload_id",
				Description: "names " + d.GetUploadId() + ", but the header before it " + hdr.UploadID})))
		}
		// The body outlives this message (the file's goroutine reads it): a
		// copy, whatever the codec does with received bytes, charged to the
		// tenant's share of the memory budget (waiting, as an upload's base
		// does); the upload takes the charge over. The file's own cost is
		// charged until it is answered.
		size := int64(len(d.GetData()))
		leave, gerr := s.ing.EnterFile(ctx, tenant) // the tenant's files in flight, all streams
		if gerr != nil {
			return finish(toStatus(ctx, s.log, gerr))
		}
		releaseCost, rerr := s.ing.ReserveBody(ctx, tenant, uploadFilesFileCost)
		releaseFile := leave
		if rerr == nil {
			releaseFile = func() { releaseCost(); leave() }
		} else {
			leave()
		}
		releaseBody := releaseFile
		if rerr == nil {
			if releaseBody, rerr = s.ing.ReserveBody(ctx, tenant, size); rerr != nil {
				releaseFile()
			}
		}
		if rerr != nil {
			answers <- &pb.UploadFilesResponse{UploadId: hdr.UploadID, Error: fileError(toStatus(ctx, s.log, rerr))}
			m, err = in.Recv()
			if errors.Is(err, io.EOF) {
				return finish(nil)
			}
			if err != nil {
				return finish(toStatus(ctx, s.log, recvErr(err)))
			}
			continue
		}
		body := bytes.Clone(d.GetData())
		if body == nil {
			body = []byte{}
		}
		// A full window waits for answers until half of it is free again.
		// Meanwhile the stream sends nothing into its backups' open packs:
		// those seal once the files read so far have joined them (each
		// counted on its own, Expectation.Add), not after the linger; the
		// next file counts the stream again. Half, not one: resuming at the
		// first answer would make the next file fill the window again and
		// seal a pack of one file, and so on.
		mu.Lock()
		full := files > 0 && (files >= uploadFilesWindow || bodyBytes+size > uploadFilesWindowBytes)
		mu.Unlock()
		if full {
			for id, e := range backups {
				e.Release()
				delete(backups, id)
			}
		}
		mu.Lock()
		for full && files > 0 && (files > uploadFilesWindow/2 || bodyBytes+size > uploadFilesWindowBytes/2) && ctx.Err() == nil {
			cond.Wait()
		}
		files++
		bodyBytes += size
		mu.Unlock()
		if ctx.Err() != nil {
			mu.Lock()
			files--
			bodyBytes -= size
			mu.Unlock()
			releaseBody()
			releaseFile()
			return finish(toStatus(ctx, s.log, ctx.Err()))
		}
		exp, ok := backups[hdr.BackupID]
		if !ok {
			exp = s.ing.ExpectFiles(ctx, tenant, hdr.BackupID) // nil: nothing to count
			backups[hdr.BackupID] = exp
		}
		exp.Add(&hdr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res *ingest.Result
			src := &oneBody{data: body, reserved: size}
			err := fault.Catch(func() error {
				var err error
				res, err = s.ing.UploadFile(ctx, tenant, hdr, src)
				return err
			})
			if n := src.TakeReservation(); n > 0 {
				releaseBody() // not taken over (deduplicated before the body, or refused)
			}
			answer(hdr.UploadID, res, err, size)
			releaseFile()
		}()
		m, err = in.Recv()
		if errors.Is(err, io.EOF) {
			// Nothing more comes on this stream: finish stops counting it as
			// on its way to its backups' open packs, so the last of its files
			// to join one seals it (no linger, and no wait for packs other
			// streams sealed).
			return finish(nil)
		}
		if err != nil {
			return finish(toStatus(ctx, s.log, recvErr(err)))
		}
	}
}

// oneBody is an ingest.Source of one whole body, then its finish, whose
// bytes are charged to the tenant already (ingest.ReservedSource).
type oneBody struct {
	data     []byte
	sent     bool
	reserved int64
}

func (b *oneBody) TakeReservation() int64 {
	n := b.reserved
	b.reserved = 0
	return n
}

func (b *oneBody) Next() ([]byte, bool, error) {
	if b.sent {
		return nil, true, nil
	}
	b.sent = true
	return b.data, false, nil
}

// fileError is a file's failure as an UploadFiles answer says it.
func fileError(err error) *pb.FileError {
	st := status.Convert(err)
	fe := &pb.FileError{Code: int32(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			fe.Reason = info.GetReason()
		}
	}
	return fe
}
