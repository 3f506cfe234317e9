package main

import (
	"context"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

var (
	uuidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// uploadIDFlag checks an --upload-id value; "" leaves the choice of a
// random one to the client.
func uploadIDFlag(cmd *command, v string) (string, error) {
	if v != "" && !uuidPattern.MatchString(v) {
		return "", usagef(cmd.path(), "--upload-id %q: want a UUID", v)
	}
	return strings.ToLower(v), nil
}

func backupUploadRecords(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	refs := &pairList{what: "reference"}
	var backupID, sobject, uploadID string
	var seq int
	fs.StringVar(&backupID, "backup", "", "backup `id` (required)")
	fs.StringVar(&sobject, "sobject", "", "sObject API `name`, e.g. Account (required)")
	fs.IntVar(&seq, "sequence", 0, "the chunk's `number` within the record set: 0, 1, 2, ...")
	fs.Var(refs, "ref", "reference column to index, `Field=Target`, e.g. AccountId=Account; repeatable")
	fs.StringVar(&uploadID, "upload-id", "", "client-chosen `uuid`; default: a random one")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing FILE (or - for stdin)")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one FILE, got %d arguments", len(pos))
	}
	if err := required(cmd, [2]string{"backup", backupID}, [2]string{"sobject", sobject}); err != nil {
		return err
	}
	if !client.ValidSObjectName(sobject) {
		return usagef(cmd.path(), "--sobject %q: not an sObject API name ([A-Za-z][A-Za-z0-9_]{0,79})", sobject)
	}
	if seq < 0 || seq > 1<<31-1 {
		return usagef(cmd.path(), "--sequence %d: want 0 or more", seq)
	}
	o := client.RecordsOptions{Sequence: int32(seq)}
	if o.References, err = refs.references(cmd); err != nil {
		return err
	}
	if o.UploadID, err = uploadIDFlag(cmd, uploadID); err != nil {
		return err
	}
	// A regular file is retried from its start; stdin, a pipe or a device
	// is read once (hiding Seek tells the client so).
	var in io.Reader = struct{ io.Reader }{c.stdin}
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return usagef(cmd.path(), "%v", err)
		}
		defer f.Close()
		in = f
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			in = struct{ io.Reader }{f}
		}
	}

	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.UploadRecords(ctx, backupID, sobject, in, o)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, &pb.UploadRecordsResponse{Result: res})
	}
	return printUploadResult(c.stdout, res)
}

func backupUploadFile(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var f client.File
	var backupID, uploadID, sum string
	var hash bool
	fs.StringVar(&backupID, "backup", "", "backup `id` (required)")
	fs.StringVar(&f.ParentID, "parent", "", "`id` of the record the file belongs to (required)")
	fs.StringVar(&f.Path, "path", "", "the worker's `path` for the file; default: FILE as given")
	fs.StringVar(&f.Name, "name", "", "display `name`; default: FILE's base name")
	fs.StringVar(&f.ContentType, "content-type", "", "content `type`; default: guessed from the extension")
	fs.StringVar(&sum, "sha256", "", "declare the body's SHA-256 (lowercase `hex`), enabling deduplication")
	fs.BoolVar(&hash, "hash", false, "compute and declare the body's SHA-256 first, enabling deduplication")
	fs.StringVar(&uploadID, "upload-id", "", "client-chosen `uuid`; an existing pending upload resumes; default: a random one")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing FILE")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one FILE, got %d arguments", len(pos))
	}
	local := pos[0]
	if err := required(cmd, [2]string{"backup", backupID}, [2]string{"parent", f.ParentID}); err != nil {
		return err
	}
	if sum != "" && hash {
		return usagef(cmd.path(), "--sha256 and --hash are mutually exclusive")
	}
	if sum != "" && !sha256Pattern.MatchString(sum) {
		return usagef(cmd.path(), "--sha256 %q: want 64 hex digits", sum)
	}
	if f.UploadID, err = uploadIDFlag(cmd, uploadID); err != nil {
		return err
	}
	body, err := os.Open(local)
	if err != nil {
		return usagef(cmd.path(), "%v", err)
	}
	defer body.Close()
	fi, err := body.Stat()
	if err != nil {
		return usagef(cmd.path(), "%v", err)
	}
	if !fi.Mode().IsRegular() {
		return usagef(cmd.path(), "%s: not a regular file (uploads resume by seeking)", local)
	}
	size := fi.Size()
	if hash {
		if sum, size, err = client.HashSHA256(ctx, body); err != nil {
			return fmt.Errorf("hash %s: %w", local, err)
		}
	}
	f.SHA256 = strings.ToLower(sum)
	if f.Path == "" {
		f.Path = filepath.ToSlash(local)
	}
	if f.Name == "" {
		f.Name = filepath.Base(local)
	}
	if f.ContentType == "" {
		f.ContentType = contentTypeOf(local)
	}

	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	out, err := cl.UploadFile(ctx, backupID, f, body, size)
	if err != nil {
		return err
	}
	switch {
	case out.Already:
		fmt.Fprintf(c.stderr, "backupctl: upload %s had already committed\n", f.UploadID)
	case out.ResumedAt > 0:
		fmt.Fprintf(c.stderr, "backupctl: resumed at byte %d of %d\n", out.ResumedAt, size)
	}
	if c.json() {
		return printJSON(c.stdout, &pb.UploadFileResponse{Result: out.Result})
	}
	return printUploadResult(c.stdout, out.Result)
}

// contentTypeOf guesses a content type from a file name's extension; "" when
// unknown, leaving the choice to the service.
func contentTypeOf(name string) string {
	return mime.TypeByExtension(strings.ToLower(filepath.Ext(name)))
}
