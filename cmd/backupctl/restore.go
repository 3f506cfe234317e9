package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

func restoreGroup() *group {
	return &group{
		name:    "restore",
		summary: "read committed backups back: contents, records, files, plans, whole exports",
		commands: []*command{
			{
				name:    "run",
				args:    "[--concurrency N] [--resume] BACKUP_ID OUT_DIR",
				summary: "write a whole backup back as an export directory",
				help:    restoreRunHelp,
				run:     restoreRun,
			},
			{
				name:    "contents",
				args:    "BACKUP_ID",
				summary: "list a backup's record sets and files",
				help: `Contents prints the backup, its record sets (sObject, chunks, records, bytes
and indexed reference fields) and its files (every page). With -o json it
prints one ListBackupContentsResponse holding every file.`,
				run: restoreContents,
			},
			{
				name:    "find",
				args:    "--org ORG [--at RFC3339]",
				summary: "find the backup of an org that covers a point in time",
				help: `Find prints the latest COMMITTED backup of an org that started at or before
--at (default: now). Exit 3 when there is none, e.g. for a time before the
org's first backup.`,
				run: restoreFind,
			},
			{
				name:    "records",
				args:    "--backup ID --sobject NAME [--ids ID,ID,... | --ids-file F] [-O FILE]",
				summary: "print a record set, or some of its records, as CSV",
				help: `Records prints an sObject's record set as CSV, exactly as it was backed up:
the header row once, then every chunk's rows in order. With --ids (comma
separated) or --ids-file (ids separated by commas, spaces or newlines; "-"
reads stdin; a leading "Id" header is skipped) only those records are
printed, in backup order, header first; at most 10,000 ids.

The CSV goes to stdout, or with -O to FILE, written to a temporary file that
is renamed to FILE only once the whole stream, summary included, arrived:
a stream cut short leaves no FILE (on stdout the output is incomplete and
the command fails). Requested ids that are not in the backup are listed on
stderr; that is not an error (exit 0). With -O and -o json the stream's
summary (ReadRecordsSummary) is printed on stdout.`,
				run: restoreRecords,
			},
			{
				name:    "file",
				args:    "--backup ID (--file-id ID | --parent ID) [--offset N] [--limit N] [-O PATH]",
				summary: "print one file's body, or every file of a record",
				help: `File reads one file (--file-id) or every file attached to a record
(--parent). With --file-id the body goes to stdout, or with -O to the file
PATH (written to a temporary file and renamed once complete); --offset and
--limit read a byte range. A whole read is checked against the file's
SHA-256 (by the service and again here). With --parent, -O names a directory
and each file is written under it at its stored path; without -O the bodies
go to stdout one after the other. Each file read is described on stderr.
With -O and -o json the stream's summary (ReadFileSummary) is printed on
stdout.`,
				run: restoreFile,
			},
			{
				name:    "plan",
				args:    "--backup ID --root SObject=ID,ID,... [--root ...] [--depth N]",
				summary: "plan a parent-first restore of some records",
				help: `Plan asks for the steps that restore root records (--root, repeatable), the
parents they need and their children down to --depth levels (0 to 5), then
their files: INSERT steps (reference fields to leave empty for now listed as
"omit"), UPDATE steps that set them once their targets exist, and FILES
steps. The table shows each step's record count; -o json prints the whole
PlanRestoreResponse, ids included. Root ids not in the backup are listed on
stderr.`,
				run: restorePlan,
			},
		},
	}
}

// maxIDs is how many ids one ReadRecords or PlanRestore request may name.
const maxIDs = 10_000

// outBufSize is the buffer of data written to stdout or a file: one data
// message.
const outBufSize = 1 << 20

func restoreContents(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneBackupID)
	if err != nil {
		return err
	}
	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	out, err := cl.Contents(ctx, id)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, out)
	}
	return printContents(c.stdout, out)
}

func restoreFind(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.FindBackupRequest{}
	fs.StringVar(&req.OrgId, "org", "", "Salesforce org `id`, 15 or 18 characters (required)")
	timeFlag(fs, "at", "point in `time` (RFC 3339); default: now", &req.At)
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"org", req.OrgId}); err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Restore, pb.RestoreServiceClient.FindBackup, req,
		func(resp *pb.FindBackupResponse) error {
			return printBackup(c.stdout, resp.GetBackup())
		})
}

// maxIDsFile bounds an --ids-file: 10,000 ids of 18 characters and their
// separators, with room for CRLF and spaces.
const maxIDsFile = 1 << 20

// parseIDs splits a list of record ids at commas and white space, checks
// each, drops repeats and skips a leading "Id" (a one-column CSV header).
func parseIDs(cmd *command, flagName, s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	if len(fields) > 0 && strings.EqualFold(strings.Trim(strings.TrimPrefix(fields[0], "\uFEFF"), `"`), "Id") {
		fields = fields[1:]
	}
	var ids []string
	seen := map[string]bool{}
	for _, f := range fields {
		if !client.ValidRecordID(f) {
			return nil, usagef(cmd.path(), "%s: %q is not a 15- or 18-character Salesforce id", flagName, f)
		}
		if !seen[f] {
			seen[f] = true
			ids = append(ids, f)
		}
	}
	if len(ids) == 0 {
		return nil, usagef(cmd.path(), "%s: no ids", flagName)
	}
	if len(ids) > maxIDs {
		return nil, usagef(cmd.path(), "%s: %d ids, at most %d per request", flagName, len(ids), maxIDs)
	}
	return ids, nil
}

// readIDsFile reads an --ids-file ("-" for stdin).
func readIDsFile(c *cli, cmd *command, name string) (string, error) {
	var r io.Reader
	if name == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", usagef(cmd.path(), "--ids-file: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxIDsFile+1))
	if err != nil {
		return "", usagef(cmd.path(), "--ids-file: %v", err)
	}
	if len(b) > maxIDsFile {
		return "", usagef(cmd.path(), "--ids-file %s: larger than %d bytes", name, maxIDsFile)
	}
	return string(b), nil
}

// atomicFile is an output file written under a temporary name in the same
// directory and renamed into place by commit; abort removes it.
type atomicFile struct {
	f     *os.File
	final string
}

func createAtomic(final string) (*atomicFile, error) {
	dir, base := filepath.Split(final)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{f: f, final: final}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) { return a.f.Write(p) }

func (a *atomicFile) commit() error {
	if err := a.f.Chmod(0o644); err != nil {
		a.abort()
		return err
	}
	if err := a.f.Sync(); err != nil {
		a.abort()
		return err
	}
	if err := a.f.Close(); err != nil {
		_ = os.Remove(a.f.Name())
		return err
	}
	if err := os.Rename(a.f.Name(), a.final); err != nil {
		_ = os.Remove(a.f.Name())
		return err
	}
	return nil
}

func (a *atomicFile) abort() {
	_ = a.f.Close()
	_ = os.Remove(a.f.Name())
}

func restoreRecords(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.ReadRecordsRequest{}
	var idList, idsFile, outFile string
	fs.StringVar(&req.BackupId, "backup", "", "backup `id` (required)")
	fs.StringVar(&req.Sobject, "sobject", "", "sObject API `name`, e.g. Account (required)")
	fs.StringVar(&idList, "ids", "", "only these record `ids`, comma separated (15 or 18 characters)")
	fs.StringVar(&idsFile, "ids-file", "", "only the record ids in `file` (separated by commas, spaces or newlines; - for stdin)")
	fs.StringVar(&outFile, "O", "", "write the CSV to `file` instead of stdout")
	err := c.parseNoArgs(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := required(cmd, [2]string{"backup", req.BackupId}, [2]string{"sobject", req.Sobject}); err != nil {
		return err
	}
	if !client.ValidSObjectName(req.Sobject) {
		return usagef(cmd.path(), "--sobject %q: not an sObject API name ([A-Za-z][A-Za-z0-9_]{0,79})", req.Sobject)
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })
	switch {
	case setFlags["ids"] && setFlags["ids-file"]:
		return usagef(cmd.path(), "--ids and --ids-file are mutually exclusive")
	case setFlags["ids"]:
		if req.Ids, err = parseIDs(cmd, "--ids", idList); err != nil {
			return err
		}
	case setFlags["ids-file"]:
		s, err := readIDsFile(c, cmd, idsFile)
		if err != nil {
			return err
		}
		if req.Ids, err = parseIDs(cmd, "--ids-file", s); err != nil {
			return err
		}
	}
	if setFlags["O"] && outFile == "" {
		return usagef(cmd.path(), "-O: empty file name")
	}

	if len(req.Ids) == 0 {
		// A whole read takes the stored frames and decodes them here
		// (passthrough): a quarter of the bytes on the wire, the same CSV.
		req.AcceptEncoding = client.AcceptZstd
	}
	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()

	var sum *pb.ReadRecordsSummary
	rows := &client.RowCounter{}
	if outFile == "" {
		w := bufio.NewWriterSize(c.stdout, outBufSize)
		sum, err = cl.ReadRecordsTo(ctx, req, io.MultiWriter(w, rows))
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			fmt.Fprintln(c.stderr, "backupctl: the CSV on stdout is incomplete")
			return err
		}
	} else {
		out, err := createAtomic(outFile)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(out, outBufSize)
		sum, err = cl.ReadRecordsTo(ctx, req, io.MultiWriter(w, rows))
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = out.commit()
		} else {
			out.abort()
		}
		if err != nil {
			return err
		}
	}
	if n := len(sum.GetMissingIds()); n > 0 {
		fmt.Fprintf(c.stderr, "backupctl: %d of %d requested ids are not in the backup:\n", n, len(req.Ids))
		for _, id := range sum.GetMissingIds() {
			fmt.Fprintf(c.stderr, "  %s\n", clean(id))
		}
	}
	if outFile != "" {
		if c.json() {
			return printJSON(c.stdout, sum)
		}
		fmt.Fprintf(c.stderr, "Wrote %d records (%s) to %s.\n", rows.Records(), humanBytes(sum.GetBytes()), outFile)
	}
	return nil
}

func restoreFile(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.ReadFileRequest{}
	var fileID, parentID, out string
	fs.StringVar(&req.BackupId, "backup", "", "backup `id` (required)")
	fs.StringVar(&fileID, "file-id", "", "the file's `id` (see restore contents)")
	fs.StringVar(&parentID, "parent", "", "every file of the record with this `id`")
	fs.Int64Var(&req.ReadOffset, "offset", 0, "start at this byte `offset` (--file-id only)")
	fs.Int64Var(&req.ReadLimit, "limit", 0, "read at most this many `bytes`; 0 to the end (--file-id only)")
	fs.StringVar(&out, "O", "", "write to `path` instead of stdout: a file with --file-id, a directory with --parent")
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"backup", req.BackupId}); err != nil {
		return err
	}
	switch {
	case fileID != "" && parentID != "":
		return usagef(cmd.path(), "--file-id and --parent are mutually exclusive")
	case fileID != "":
		req.Selector = &pb.ReadFileRequest_FileId{FileId: fileID}
	case parentID != "":
		if !client.ValidRecordID(parentID) {
			return usagef(cmd.path(), "--parent %q: not a 15- or 18-character Salesforce id", parentID)
		}
		req.Selector = &pb.ReadFileRequest_ParentId{ParentId: parentID}
		if req.ReadOffset != 0 || req.ReadLimit != 0 {
			return usagef(cmd.path(), "--offset and --limit apply to --file-id reads only")
		}
	default:
		return usagef(cmd.path(), "missing --file-id or --parent")
	}
	if req.ReadOffset < 0 || req.ReadLimit < 0 {
		return usagef(cmd.path(), "--offset and --limit must not be negative")
	}
	if parentID != "" && out != "" {
		if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
			return usagef(cmd.path(), "-O %s: not a directory (with --parent, -O names a directory)", out)
		}
	}

	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()

	var stdout *bufio.Writer
	if out == "" {
		stdout = bufio.NewWriterSize(c.stdout, outBufSize)
	}
	var cur *atomicFile // the file being written, with -O
	var infos []*pb.FileInfo
	sink := client.FileSink{
		Begin: func(info *pb.FileInfo) (io.Writer, error) {
			if fileID != "" && (info.GetFileId() != fileID || len(infos) > 0) {
				return nil, fmt.Errorf("ReadFile %s: the stream sent file %q", fileID, info.GetFileId())
			}
			infos = append(infos, info)
			desc := fmt.Sprintf("file %s: %s, %s, parent %s", info.GetFileId(), info.GetPath(), humanBytes(info.GetSize()), info.GetParentId())
			if req.ReadOffset != 0 || req.ReadLimit != 0 {
				desc += fmt.Sprintf(", bytes %d to %d", req.ReadOffset, req.ReadOffset+client.WantBytes(info, req))
			}
			fmt.Fprintln(c.stderr, clean(desc))
			if req.ReadOffset > info.GetSize() {
				return nil, status.Errorf(codes.OutOfRange, "--offset %d is past the end of file %s (%d bytes)", req.ReadOffset, info.GetFileId(), info.GetSize())
			}
			var w io.Writer = stdout
			if out != "" {
				target := out
				if parentID != "" {
					if !client.LocalFilePath(info.GetPath()) {
						return nil, fmt.Errorf("file %s: stored path %q cannot be written under a directory", info.GetFileId(), info.GetPath())
					}
					target = filepath.Join(out, filepath.FromSlash(info.GetPath()))
					if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
						return nil, err
					}
				}
				var err error
				if cur, err = createAtomic(target); err != nil {
					return nil, err
				}
				w = cur
			}
			return w, nil
		},
		End: func(*pb.FileInfo, int64) error {
			if cur == nil {
				return nil
			}
			err := cur.commit()
			cur = nil
			return err
		},
	}
	sum, err := cl.ReadFiles(ctx, req, sink)
	if cur != nil {
		cur.abort()
	}
	if stdout != nil {
		if ferr := stdout.Flush(); err == nil {
			err = ferr
		}
		if err != nil && len(infos) > 0 {
			fmt.Fprintln(c.stderr, "backupctl: the data on stdout is incomplete")
		}
	}
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		fmt.Fprintln(c.stderr, "No files.")
	}
	if out != "" && c.json() {
		return printJSON(c.stdout, sum)
	}
	return nil
}

// rootList is the repeatable --root SObject=ID,ID flag; a repeated sObject
// adds to its ids.
type rootList struct {
	roots []*pb.RootRecords
}

func (l *rootList) String() string {
	var s []string
	for _, r := range l.roots {
		s = append(s, r.GetSobject()+"="+strings.Join(r.GetIds(), ","))
	}
	return strings.Join(s, " ")
}

func (l *rootList) Set(s string) error {
	obj, list, ok := strings.Cut(s, "=")
	obj = strings.TrimSpace(obj)
	if !ok || obj == "" {
		return fmt.Errorf("%q: want SObject=ID,ID,...", s)
	}
	if !client.ValidSObjectName(obj) {
		return fmt.Errorf("%q: %q is not an sObject API name", s, obj)
	}
	var ids []string
	for f := range strings.SplitSeq(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !client.ValidRecordID(f) {
			return fmt.Errorf("%q: %q is not a 15- or 18-character Salesforce id", s, f)
		}
		ids = append(ids, f)
	}
	if len(ids) == 0 {
		return fmt.Errorf("%q: no ids", s)
	}
	for _, r := range l.roots {
		if r.Sobject == obj {
			r.Ids = append(r.Ids, ids...)
			return nil
		}
	}
	l.roots = append(l.roots, &pb.RootRecords{Sobject: obj, Ids: ids})
	return nil
}

func restorePlan(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.PlanRestoreRequest{}
	roots := &rootList{}
	var depth int
	fs.StringVar(&req.BackupId, "backup", "", "backup `id` (required)")
	fs.Var(roots, "root", "root records, `SObject=ID,ID,...` (15 or 18 characters); repeatable (required)")
	fs.IntVar(&depth, "depth", 0, "child `levels` to follow below the roots: 0 to 5")
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"backup", req.BackupId}, [2]string{"root", roots.String()}); err != nil {
		return err
	}
	if depth < 0 || depth > 5 {
		return usagef(cmd.path(), "--depth %d: want 0 to 5", depth)
	}
	n := 0
	for _, r := range roots.roots {
		n += len(r.Ids)
	}
	if n > maxIDs {
		return usagef(cmd.path(), "--root: %d ids, at most %d", n, maxIDs)
	}
	req.Roots, req.Depth = roots.roots, int32(depth)

	resp, err := call(ctx, c, (*client.Client).Restore, pb.RestoreServiceClient.PlanRestore, req)
	if err != nil {
		return err
	}
	if n := len(resp.GetMissingIds()); n > 0 {
		fmt.Fprintf(c.stderr, "backupctl: %d root ids are not in the backup: %s\n", n, clean(strings.Join(resp.GetMissingIds(), ", ")))
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	if err := printPlan(c.stdout, resp.GetSteps()); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "\n%d steps: %s records, %s files.\n", len(resp.GetSteps()),
		strconv.FormatInt(resp.GetRecordCount(), 10), strconv.FormatInt(resp.GetFileCount(), 10))
	return err
}
