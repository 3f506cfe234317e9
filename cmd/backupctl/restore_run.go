package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

const restoreRunHelp = `Run writes a whole committed backup back as the export directory 'backup run'
reads, so that backing up OUT_DIR again, or diff -r against the directory
that was backed up, finds the same data:

  <sObject>.csv    one per record set: the header row once, then every
                   chunk's rows in order, byte for byte as backed up
  references.csv   sobject,field,target: the record sets' indexed reference
                   fields; only if there are any
  files/<path>     every file body at its stored path
  files.csv        path,parent_id,name,content_type; only if there are files

references.csv and files.csv are written last, once everything else is in
place. files.csv's rows come in path order (byte order, as LC_ALL=C sort
sorts), references.csv's by sObject name then in the order declared; their
spelling is the service's, which may differ from the original export's:
sObject and field names as the record sets spell them, parent ids in their
18-character form, and the name and content type the file was stored with
(backup run fills in the file's base name and a type guessed from its
extension when files.csv left them empty). An export written that way diffs
clean against its restore.

Every file is written under a temporary name and renamed into place once
complete; each file body's size and SHA-256 are checked against the backup
before the rename. OUT_DIR must be empty or not exist, unless --resume is
given: then record sets are read again whole, files already in place with
the right SHA-256 are kept, and a file interrupted earlier (left as
files/<path>.partial) continues where it stopped. Unavailable, Aborted and
ResourceExhausted are retried with backoff, a file from the bytes it has.
Stored paths that are not clean relative paths (possible with upload-file),
or that collide, are an error before anything is written.

--concurrency record sets and files are read at once. Progress goes to
stderr: a bar on a terminal, else a line per record set or file; then a
summary. OUT_DIR goes to stdout (with -o json, the ListBackupContentsResponse
of everything restored).`

// partialSuffix names a file restore run is writing (see restoreRunHelp).
const partialSuffix = client.PartialSuffix

func restoreRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var o client.RestoreDirOptions
	fs.IntVar(&o.Concurrency, "concurrency", client.DefaultConcurrency, "record sets and files read at once")
	fs.BoolVar(&o.Resume, "resume", false, "continue an interrupted restore into a non-empty OUT_DIR")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) < 2:
		return usagef(cmd.path(), "want BACKUP_ID and OUT_DIR")
	case len(pos) > 2:
		return usagef(cmd.path(), "want BACKUP_ID and OUT_DIR, got %d arguments", len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return usagef(cmd.path(), "empty backup ID")
	case pos[1] == "":
		return usagef(cmd.path(), "empty OUT_DIR")
	}
	if o.Concurrency < 1 || o.Concurrency > 64 {
		return usagef(cmd.path(), "--concurrency %d: want 1 to 64", o.Concurrency)
	}
	id, dir := pos[0], pos[1]

	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	started := time.Now()
	var prog *progress
	o.OnContents = func(contents *pb.ListBackupContentsResponse) {
		if contents.GetBackup().GetDamaged() {
			fmt.Fprintf(c.stderr, "warning: backup %s is marked damaged: some of it may not be readable\n", clean(id))
		}
	}
	o.OnPlan = func(total, done int64, n int) {
		prog = newProgress(c.stderr, isTerminal(c.stderr), total, done, n, "downloads")
	}
	o.Progress = func(delta int64) { prog.add(delta) }
	o.OnRestore = func(r client.Restored) { prog.completed(clean(restoredLine(r))) }
	res, err := cl.RestoreDir(ctx, id, dir, o)
	if prog != nil {
		prog.close()
	}
	var path *client.PathError
	switch {
	case errors.Is(err, client.ErrDirNotEmpty):
		return usagef(cmd.path(), "%s is not empty: restore into a new directory, or pass --resume to continue an interrupted restore", dir)
	case errors.As(err, &path):
		return usagef(cmd.path(), "%v", err)
	case err != nil && prog != nil:
		if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
			fmt.Fprintf(c.stderr, "Interrupted: %s is incomplete; run the same command with --resume to continue.\n", dir)
		} else {
			fmt.Fprintf(c.stderr, "%s is incomplete: run the same command with --resume to continue.\n", dir)
		}
		return err
	case err != nil:
		return err
	}
	restoreSummary(c.stderr, id, dir, res, time.Since(started))
	if c.json() {
		return printJSON(c.stdout, res.Contents)
	}
	_, err = fmt.Fprintln(c.stdout, dir)
	return err
}

// restoredLine describes a record set or file written, for the plain
// progress form.
func restoredLine(r client.Restored) string {
	if r.File == nil {
		return fmt.Sprintf("records %s.csv: %d records, %s", r.SObject, r.Records, humanBytes(r.Bytes))
	}
	line := fmt.Sprintf("file files/%s: %s", r.File.GetPath(), humanBytes(r.File.GetSize()))
	switch {
	case r.Present:
		line += ", already in place"
	case r.ResumedAt > 0:
		line += ", resumed at " + humanBytes(r.ResumedAt)
	}
	return line
}

// restoreSummary prints what the run restored.
func restoreSummary(w io.Writer, id, dir string, t *client.RestoreResult, took time.Duration) {
	fmt.Fprintf(w, "Restored backup %s into %s in %s.\n", clean(id), dir, shortDuration(took))
	fmt.Fprintf(w, "  record sets: %d (%d records)\n", t.RecordSets, t.Records)
	fmt.Fprintf(w, "  files:       %d", t.Files)
	if t.FilesResumed+t.FilesPresent > 0 {
		fmt.Fprintf(w, " (%d resumed, %d already in place)", t.FilesResumed, t.FilesPresent)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  bytes:       %s\n", humanBytes(t.Bytes))
}
