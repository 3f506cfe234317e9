package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

func backupGroup() *group {
	return &group{
		name:    "backup",
		summary: "open backups, upload record sets and files, commit them",
		commands: []*command{
			{
				name:    "run",
				args:    "--org ORG [--storage ID] [--concurrency N] [--chunk-size BYTES] [--label k=v ...] [--require-parents] [--idempotency-key K] DIR",
				summary: "back up a whole export directory: create, upload, commit",
				help:    runHelp,
				run:     backupRun,
			},
			{
				name:    "create",
				args:    "--org ORG [--storage ID] [--label k=v ...] [--idempotency-key K]",
				summary: "open a backup of one Salesforce org",
				help: `Create opens a backup (status OPEN) of one Salesforce org on the given
storage, else the tenant's default storage, else the service-managed default.
With --idempotency-key, a repeated create returns the backup the key created
the first time (and says so on stderr) instead of opening another.`,
				run: backupCreate,
			},
			{
				name:    "upload-records",
				args:    "--backup ID --sobject NAME [--sequence N] [--ref Field=Target ...] [--upload-id UUID] FILE|-",
				summary: "upload one chunk of an sObject's record set (CSV)",
				help: `Upload-records streams one chunk of one record set: a CSV file (RFC 4180,
UTF-8) whose first row is the header of field API names, with an Id column.
"-" reads the chunk from stdin. Chunks of one sObject carry sequence numbers
0, 1, 2, ... and each begins with the same header row. --ref declares a lookup
column to index (repeatable), e.g. --ref AccountId=Account.

A chunk read from a file is retried from the start (record chunks always
restart from 0) when the service answers Unavailable, Aborted or
ResourceExhausted; stdin is sent once. The upload id defaults to a random
UUID; pass --upload-id to make a retried command reopen the same upload.
Prints the upload's result.`,
				run: backupUploadRecords,
			},
			{
				name:    "upload-file",
				args:    "--backup ID --parent PARENT_ID [--path P] [--name N] [--content-type T] [--sha256 HEX | --hash] [--upload-id UUID] FILE",
				summary: "upload one file body attached to a record",
				help: `Upload-file streams one file (a regular file) attached to the record
PARENT_ID. --path defaults to FILE as given, --name to its base name,
--content-type to a guess from the extension.

With --hash the file is read once first to compute its SHA-256, and size and
hash are declared: if the service already stores that body for the org it
answers right after the header (deduplicated) and nothing is sent.

The upload resumes: when --upload-id names an upload that is still pending,
the file continues at the service's committed size. Unavailable, Aborted and
ResourceExhausted are retried with backoff a bounded number of times, each
retry resuming at the committed size. Prints the upload's result.`,
				run: backupUploadFile,
			},
			{
				name:    "commit",
				args:    "ID [--require-parents]",
				summary: "commit a backup once its uploads have finished",
				help: `Commit writes the manifest and flips the backup to COMMITTED. It fails (exit 4,
reason UPLOADS_PENDING) while uploads are pending, naming them. Files whose
parent record is in no record set of the backup are listed after the backup;
with --require-parents they make the commit fail instead (reason
ORPHAN_FILES). Committing twice is OK.`,
				run: backupCommit,
			},
			{
				name:    "abort",
				args:    "ID",
				summary: "abort an open backup and delete what only it references",
				help: `Abort marks an OPEN backup ABORTED and deletes the objects only it
references; deduplicated file bodies that other backups use stay.`,
				run: backupAbort,
			},
			{
				name:    "delete",
				args:    "ID",
				summary: "delete a committed or aborted backup and what only it references",
				help:    backupDeleteHelp,
				run:     backupDelete,
			},
			{
				name:    "get",
				args:    "ID",
				summary: "show one backup",
				help:    "Get prints one backup's fields.",
				run:     backupGet,
			},
			{
				name:    "list",
				args:    "[--org ORG] [--status S] [--from RFC3339] [--to RFC3339] [--page-size N] [--all=false [--page-token T]]",
				summary: "list backups, newest first",
				help: `List prints backups, newest first, following every page. --from and --to
select backups that started at or after --from and before --to. With
--all=false it prints one page; the token of the next page goes to stderr
(table) or is the response's nextPageToken (-o json).`,
				run: backupList,
			},
			{
				name:    "uploads",
				args:    "ID [--state pending|committed|failed|abandoned]",
				summary: "list a backup's uploads and their states",
				help: `Uploads lists a backup's uploads (every page): what is committed, what is
pending (with the committed size a file resumes at) and what failed.`,
				run: backupUploads,
			},
		},
	}
}

// pairList is a repeatable KEY=VALUE flag (--label, --ref), in the order
// given; a key may appear once.
type pairList struct {
	what  string // "label", "reference", for messages
	pairs [][2]string
}

func (l *pairList) String() string {
	var s []string
	for _, p := range l.pairs {
		s = append(s, p[0]+"="+p[1])
	}
	return strings.Join(s, ",")
}

func (l *pairList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%s %q: want KEY=VALUE", l.what, s)
	}
	for _, p := range l.pairs {
		if p[0] == k {
			return fmt.Errorf("%s %q given twice", l.what, k)
		}
	}
	l.pairs = append(l.pairs, [2]string{k, v})
	return nil
}

func (l *pairList) labels() map[string]string {
	if len(l.pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(l.pairs))
	for _, p := range l.pairs {
		m[p[0]] = p[1]
	}
	return m
}

// references returns the pairs as reference fields, checking the target
// names; nil for none.
func (l *pairList) references(cmd *command) ([]*pb.ReferenceField, error) {
	var refs []*pb.ReferenceField
	for _, p := range l.pairs {
		if !client.ValidSObjectName(p[1]) {
			return nil, usagef(cmd.path(), "--ref %s=%s: %q is not an sObject API name", p[0], p[1], p[1])
		}
		refs = append(refs, &pb.ReferenceField{Field: p[0], Target: p[1]})
	}
	return refs, nil
}

// oneBackupID returns the single positional backup ID.
func oneBackupID(cmd *command, pos []string) (string, error) { return oneArg(cmd, pos, "backup ID") }

func backupCreate(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.CreateBackupRequest{}
	labels := &pairList{what: "label"}
	fs.StringVar(&req.OrgId, "org", "", "Salesforce org `id`, 15 or 18 characters (required)")
	fs.StringVar(&req.StorageId, "storage", "", "storage `id`; default: the tenant's default storage")
	fs.Var(labels, "label", "`key=value` label, repeatable (at most 32)")
	fs.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a repeated create with the same `key` returns the same backup")
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"org", req.OrgId}); err != nil {
		return err
	}
	req.Labels = labels.labels()

	resp, err := call(ctx, c, (*client.Client).Backup, pb.BackupServiceClient.CreateBackup, req)
	if err != nil {
		return err
	}
	if !resp.GetCreated() {
		fmt.Fprintf(c.stderr, "backupctl: the idempotency key names existing backup %s (%s)\n",
			clean(resp.GetBackup().GetId()), backupStatusName(resp.GetBackup().GetStatus()))
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printBackup(c.stdout, resp.GetBackup())
}

func backupCommit(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	requireParents := fs.Bool("require-parents", false, "refuse to commit when a file's parent record is in no record set of the backup")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	id, err := oneBackupID(cmd, pos)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Backup, pb.BackupServiceClient.CommitBackup, &pb.CommitBackupRequest{BackupId: id, RequireParents: *requireParents},
		func(resp *pb.CommitBackupResponse) error {
			if err := printBackup(c.stdout, resp.GetBackup()); err != nil {
				return err
			}
			if len(resp.GetOrphanFiles()) > 0 {
				fmt.Fprintf(c.stdout, "\nOrphan files (parent record in no record set): %d\n", len(resp.GetOrphanFiles()))
				return printOrphans(c.stdout, resp.GetOrphanFiles())
			}
			return nil
		})
}

func backupAbort(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneBackupID)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Backup, pb.BackupServiceClient.AbortBackup, &pb.AbortBackupRequest{BackupId: id},
		func(resp *pb.AbortBackupResponse) error {
			if err := printBackup(c.stdout, resp.GetBackup()); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Objects deleted: %d\n", resp.GetObjectsDeleted())
			return nil
		})
}

func backupGet(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneBackupID)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Backup, pb.BackupServiceClient.GetBackup, &pb.GetBackupRequest{Id: id},
		func(resp *pb.GetBackupResponse) error {
			return printBackup(c.stdout, resp.GetBackup())
		})
}

// enumFlag parses a lower-case enum value name ("open") into its number.
func enumFlag(fs *flag.FlagSet, name, usage string, values map[string]int32, dst *int32) {
	var names []string
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	fs.Func(name, usage+": "+strings.Join(names, ", "), func(s string) error {
		v, ok := values[strings.ToLower(strings.TrimSpace(s))]
		if !ok {
			return fmt.Errorf("%q: want one of %s", s, strings.Join(names, ", "))
		}
		*dst = v
		return nil
	})
}

// timeFlag parses an RFC 3339 time into a timestamp.
func timeFlag(fs *flag.FlagSet, name, usage string, dst **timestamppb.Timestamp) {
	fs.Func(name, usage, func(s string) error {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("%q: want an RFC 3339 time such as 2026-03-01T00:00:00Z", s)
		}
		*dst = timestamppb.New(t)
		return nil
	})
}

var backupStatusValues = map[string]int32{
	"open":      int32(pb.BackupStatus_BACKUP_STATUS_OPEN),
	"committed": int32(pb.BackupStatus_BACKUP_STATUS_COMMITTED),
	"aborted":   int32(pb.BackupStatus_BACKUP_STATUS_ABORTED),
	"deleting":  int32(pb.BackupStatus_BACKUP_STATUS_DELETING),
}

var uploadStateValues = map[string]int32{
	"pending":   int32(pb.UploadState_UPLOAD_STATE_PENDING),
	"committed": int32(pb.UploadState_UPLOAD_STATE_COMMITTED),
	"failed":    int32(pb.UploadState_UPLOAD_STATE_FAILED),
	"abandoned": int32(pb.UploadState_UPLOAD_STATE_ABANDONED),
}

func backupList(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.ListBackupsRequest{}
	var st int32
	fs.StringVar(&req.OrgId, "org", "", "only backups of this org `id`")
	enumFlag(fs, "status", "only backups in this `status`", backupStatusValues, &st)
	timeFlag(fs, "from", "only backups that started at or after this RFC 3339 `time`", &req.StartTimeFrom)
	timeFlag(fs, "to", "only backups that started before this RFC 3339 `time`", &req.StartTimeTo)
	pages := pageFlags(fs, "backups per call, at most 1000; 0 for the server's default (50)")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := pages.check(cmd, pos); err != nil {
		return err
	}
	if req.StartTimeFrom != nil && req.StartTimeTo != nil && !req.StartTimeFrom.AsTime().Before(req.StartTimeTo.AsTime()) {
		return usagef(cmd.path(), "--from must be before --to")
	}
	req.Status = pb.BackupStatus(st)

	return listPages(ctx, c, pages, "backups", "backups",
		func(ctx context.Context, cl *client.Client, size int32, token string) ([]*pb.Backup, string, error) {
			req.PageSize, req.PageToken = size, token
			resp, err := cl.Backup().ListBackups(ctx, req)
			return resp.GetBackups(), resp.GetNextPageToken(), err
		},
		func(items []*pb.Backup, next string) proto.Message {
			return &pb.ListBackupsResponse{Backups: items, NextPageToken: next}
		}, printBackups)
}

func backupUploads(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var st int32
	enumFlag(fs, "state", "only uploads in this `state`", uploadStateValues, &st)
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	id, err := oneBackupID(cmd, pos)
	if err != nil {
		return err
	}
	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	uploads, err := client.Collect(cl.Uploads(ctx, id, pb.UploadState(st)))
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, &pb.ListUploadsResponse{Uploads: uploads})
	}
	if len(uploads) == 0 {
		fmt.Fprintln(c.stderr, "No uploads.")
		return nil
	}
	return printUploads(c.stdout, uploads)
}
