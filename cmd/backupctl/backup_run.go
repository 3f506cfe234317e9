package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"backupstore/client"
	"backupstore/internal/bytesize"
	pb "backupstore/proto/backupstore/v1"
)

const runHelp = `Run backs up a whole export directory in one go: it checks the layout, opens
a backup, uploads every record set and file with --concurrency workers, and
commits the backup. DIR holds

  <sObject>.csv    one record set per sObject, named by its API name
                   (Account.csv, Invoice__c.csv)
  references.csv   optional; header sobject,field,target, one reference
                   column to index per row (e.g. Contact,AccountId,Account);
                   both sObjects must be in the export
  files/           file bodies, any names, subdirectories allowed
  files.csv        required with files/; header path,parent_id,name,
                   content_type (path relative to files/, with "/"); it
                   must list every body, and every body it lists must exist

Names are matched case-insensitively, as Salesforce does; entries starting
with a dot are ignored at the top level. Any other entry, a CSV whose name is
not an sObject API name, or a malformed record set is a usage error (exit 2)
reported before anything is sent.

Each record set is split at row boundaries into chunks of at most
--chunk-size bytes (a single larger row gets a chunk of its own), each
beginning with the header row; each file is hashed first and its SHA-256 and
size declared, so a body the service already stores is not sent again.

Resuming: the backup is created with an idempotency key derived from the
org, the storage, DIR's absolute path, the chunk size and a fingerprint of
the directory listing (every file's path, size and modification time), and
upload ids are derived from the backup id and what they carry. Run the same
command again after an interruption (Ctrl-C, a crash, exit 5) and it finds
the same OPEN backup, skips committed uploads, resumes pending files at the
service's committed size and restarts the rest. Once the backup is committed,
running it again prints "already committed: ID" and exits 0; a changed
directory makes a new backup. --idempotency-key replaces the derived key.

Progress goes to stderr: a bar on a terminal, else a line per upload; then a
summary. The backup id goes to stdout (with -o json, the
CommitBackupResponse). Files whose parent record is in no record set are a
warning (an error with --require-parents).`

// parseSize parses a byte count: 1048576, 64KiB, 512MiB, 1GiB (also K, M, G).
func parseSize(s string) (int64, error) {
	n, err := bytesize.Parse(s)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: want a positive byte count such as 1048576, 512MiB or 1GiB", s)
	}
	return n, nil
}

func backupRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var org string
	o := client.BackupDirOptions{ChunkSize: client.MaxChunkSize}
	labels := &pairList{what: "label"}
	fs.StringVar(&org, "org", "", "Salesforce org `id`, 15 or 18 characters (required)")
	fs.StringVar(&o.StorageID, "storage", "", "storage `id`; default: the tenant's default storage")
	fs.IntVar(&o.Concurrency, "concurrency", client.DefaultConcurrency, "uploads in flight at once")
	fs.Func("chunk-size", "largest record chunk in `bytes` (suffixes KiB, MiB, GiB), at most 1GiB (default 1GiB)", func(s string) error {
		n, err := parseSize(s)
		if err != nil {
			return err
		}
		o.ChunkSize = n
		return nil
	})
	fs.Var(labels, "label", "`key=value` label of the backup, repeatable")
	fs.BoolVar(&o.RequireParents, "require-parents", false, "fail the commit when a file's parent record is in no record set")
	fs.StringVar(&o.IdempotencyKey, "idempotency-key", "", "use this `key` instead of the one derived from the directory")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef(cmd.path(), "missing DIR")
	case len(pos) > 1:
		return usagef(cmd.path(), "want one DIR, got %d arguments", len(pos))
	}
	if err := required(cmd, [2]string{"org", org}); err != nil {
		return err
	}
	if o.Concurrency < 1 || o.Concurrency > 64 {
		return usagef(cmd.path(), "--concurrency %d: want 1 to 64", o.Concurrency)
	}
	if o.ChunkSize > client.MaxChunkSize {
		return usagef(cmd.path(), "--chunk-size %d: at most %d (1GiB)", o.ChunkSize, client.MaxChunkSize)
	}
	o.Labels = labels.labels()

	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	started := time.Now()
	var backup *pb.Backup
	var prog *progress
	o.OnScan = func(n int, bytes int64) {
		fmt.Fprintf(c.stderr, "Scanning %d record sets (%s) for row boundaries.\n", n, humanBytes(bytes))
	}
	o.OnOpen = func(b *pb.Backup, created bool) {
		backup = b
		switch {
		case b.GetStatus() == pb.BackupStatus_BACKUP_STATUS_COMMITTED:
			fmt.Fprintf(c.stderr, "already committed: %s\n", clean(b.GetId()))
		case !created:
			fmt.Fprintf(c.stderr, "Resuming backup %s (started %s).\n", clean(b.GetId()), timeOrDash(b.GetStartTime()))
		default:
			fmt.Fprintf(c.stderr, "Created backup %s.\n", clean(b.GetId()))
		}
	}
	o.OnPlan = func(p client.BackupPlan) {
		prog = newProgress(c.stderr, isTerminal(c.stderr), p.Total, p.Done, p.Uploads, "uploads")
		if p.ChunksEarlier+p.FilesEarlier > 0 {
			prog.printf("Skipping %d record chunks and %d files committed by an earlier run.\n", p.ChunksEarlier, p.FilesEarlier)
		}
	}
	o.Progress = func(delta int64) { prog.add(delta) }
	o.OnUpload = func(u client.Uploaded) { prog.completed(clean(uploadedLine(u))) }
	res, err := cl.BackupDir(ctx, org, pos[0], o)
	if prog != nil {
		prog.close()
	}
	var layout *client.LayoutError
	var scan *client.ScanError
	var path *client.PathError
	switch {
	case errors.As(err, &layout), errors.As(err, &scan), errors.As(err, &path):
		return usagef(cmd.path(), "%v", err)
	case err != nil && backup != nil:
		return stillOpen(c, backup.GetId(), err)
	case err != nil:
		return err
	}
	if !res.AlreadyCommitted {
		resp := res.Commit
		if n := len(resp.GetOrphanFiles()); n > 0 {
			fmt.Fprintf(c.stderr, "warning: %d files have no parent record in this backup:\n", n)
			for i, o := range resp.GetOrphanFiles() {
				if i == maxProblems {
					fmt.Fprintf(c.stderr, "  ... and %d more (see -o json)\n", n-maxProblems)
					break
				}
				fmt.Fprintf(c.stderr, "  %s (parent %s)\n", clean(o.GetPath()), clean(o.GetParentId()))
			}
		}
		backupSummary(c.stderr, res, time.Since(started))
	}
	if c.json() {
		return printJSON(c.stdout, res.Commit)
	}
	_, err = fmt.Fprintln(c.stdout, clean(res.Commit.GetBackup().GetId()))
	return err
}

// maxProblems is how many orphan files backup run lists.
const maxProblems = 20

// uploadedLine describes a finished upload for the plain progress form.
func uploadedLine(u client.Uploaded) string {
	if u.Kind == pb.UploadKind_UPLOAD_KIND_RECORDS {
		return fmt.Sprintf("records %s #%d: %d records, %s", u.SObject, u.Sequence, u.Result.GetRecords(), humanBytes(u.Size))
	}
	how := "sent"
	switch {
	case u.Result.GetDeduplicated():
		how = "deduplicated"
	case u.ResumedAt > 0:
		how = fmt.Sprintf("resumed at %s", humanBytes(u.ResumedAt))
	case u.Already:
		how = "committed earlier"
	}
	return fmt.Sprintf("file %s: %s, %s", u.Path, humanBytes(u.Size), how)
}

// stillOpen adds how to go on to a failure after the backup was opened.
func stillOpen(c *cli, id string, err error) error {
	id = clean(id)
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		fmt.Fprintf(c.stderr, "Interrupted: backup %s stays open; run the same command again to resume.\n", id)
		return err
	}
	fmt.Fprintf(c.stderr, "Backup %s stays open: run the same command again to resume, or 'backupctl backup abort %s'.\n", id, id)
	return err
}

// backupSummary prints what the backup holds and what this run did.
func backupSummary(w io.Writer, t *client.BackupResult, took time.Duration) {
	fmt.Fprintf(w, "Backup %s committed in %s.\n", clean(t.Commit.GetBackup().GetId()), shortDuration(took))
	fmt.Fprintf(w, "  records:      %d in %d chunks of %d sObjects\n", t.Records, t.Chunks, t.RecordSets)
	fmt.Fprintf(w, "  files:        %d (%d sent, %d deduplicated)\n", t.Files, t.Files-t.FilesDeduplicated, t.FilesDeduplicated)
	fmt.Fprintf(w, "  bytes in:     %s\n", humanBytes(t.BytesIn))
	fmt.Fprintf(w, "  bytes stored: %s\n", humanBytes(t.BytesStored))
	if t.ChunksEarlier+t.FilesEarlier > 0 {
		fmt.Fprintf(w, "  resumed:      %d record chunks and %d files were committed by an earlier run\n", t.ChunksEarlier, t.FilesEarlier)
	}
}
