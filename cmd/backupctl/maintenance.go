package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

// maintenanceTimeout bounds cleanup, verify and backup delete when --timeout
// is not given: each is one call that may take minutes on a large tenant.
const maintenanceTimeout = 30 * time.Minute

const maintenanceLockHelp = `Maintenance runs under a lock shared by every backupd replica on the catalog:
when another replica (or call) holds it the service answers Aborted
(MAINTENANCE_RUNNING), nothing is done, and the exit code is 5; retry later.`

const maintenanceTimeoutHelp = `It is one call, which takes minutes on a large tenant: it is bounded by
--timeout when given, else by 30m (not --timeout's default of 1m).`

func retentionGroup() *group {
	return &group{
		name:    "retention",
		summary: "set, show and delete the policies that expire old backups",
		commands: []*command{
			{
				name:    "set",
				args:    "[--org ORG] [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION]",
				summary: "set the tenant's default policy or an org's",
				help: `Set replaces the retention policy of an org (--org), which overrides the
tenant's default for that org, or the tenant's default policy (no --org). The
rules are restic's 'forget': keep the last N backups; for each of the last N
days (weeks, months, years) that have backups, keep the latest backup of that
period; keep every backup started within DURATION before the newest backup.
A backup kept by any rule is kept; the other COMMITTED backups expire at the
next cleanup. Open backups are never expired.

--keep-within takes a Go duration (36h, 90m) or days, weeks and years:
30d = 720h, 12w = 2016h, 1y = 365d = 8760h; units combine (1y6w, 2d12h).

A policy must keep something: give at least one --keep-* flag (else exit 2,
nothing sent). To keep every backup, delete the policy instead. Prints the
policy as stored.`,
				run: retentionSet,
			},
			{
				name:    "get",
				args:    "[--org ORG]",
				summary: "show the policy in force for an org, or the tenant's",
				help: `Get prints the policy in force for an org: its own, else the tenant's default
(stderr then says so). Without --org it prints the tenant's default policy.
When no policy applies every backup is kept, and the exit code is 3
(NotFound).`,
				run: retentionGet,
			},
			{
				name:    "delete",
				args:    "[--org ORG]",
				summary: "delete a policy: keep every backup again",
				help: `Delete removes an org's policy (--org), after which the tenant's default
policy, if any, applies to the org, or the tenant's default policy (no --org),
after which orgs without a policy of their own keep every backup. Exit 3
(NotFound) when there is no such policy.`,
				run: retentionDelete,
			},
		},
	}
}

func cleanupGroup() *group {
	return &group{
		name:    "cleanup",
		summary: "expire backups by policy, delete garbage, abort stale uploads",
		verb: &command{
			args:    "[--dry-run]",
			summary: "expire backups by policy, delete garbage, abort stale uploads",
			help: `Cleanup runs maintenance for the caller's tenant: it expires the COMMITTED
backups no retention policy keeps, finishes deletions a crash interrupted,
deletes keys with no catalog row older than the grace period (garbage) and
aborts pending uploads idle past their TTL. With --dry-run it only reports
what it would do.

Prints one line per item (ACTION is expire, delete, garbage, abort or skip;
KEY/UPLOAD is the object key, or the upload id of an aborted upload with its
S3 multipart upload id when the abort was denied), then the totals. With
-o json it prints the RunCleanupResponse.

` + maintenanceLockHelp + `

` + maintenanceTimeoutHelp,
			run: cleanupRun,
		},
	}
}

func verifyGroup() *group {
	return &group{
		name:    "verify",
		summary: "check a backup's objects against the bucket",
		verb: &command{
			args:    "BACKUP_ID [--read-percent N]",
			summary: "check a backup's objects against the bucket",
			help: `Verify checks every object of a backup against its bucket (HeadObject: present,
with the size the catalog says), reads back --read-percent of them and
re-hashes them, and counts dangling references: lookup values whose target
record is not in the backup (a reference to a record outside the export is
normal, so they are reported, not an error).

Exit codes: 0 when no object problem was found; 4 (FailedPrecondition,
reason BACKUP_DAMAGED) when any object is missing, has the wrong size or the
wrong checksum: the service has then marked the objects and the backup
damaged. The report is printed first either way (-o json: the
VerifyBackupResponse on stdout, the error object on stderr).

` + maintenanceLockHelp + `

` + maintenanceTimeoutHelp,
			run: verifyRun,
		},
	}
}

func maintenanceGroup() *group {
	return &group{
		name:    "maintenance",
		summary: "show what maintenance ran (cleanup, verify, delete)",
		commands: []*command{
			{
				name:    "runs",
				args:    "[--page-size N] [--all=false [--page-token T]]",
				summary: "list maintenance runs, newest first",
				help: `Runs lists the tenant's maintenance runs (cleanup, verify, delete), newest
first: which replica ran each, when, whether it was a dry run, its outcome
(ok, failed or running) and its summary or error. It follows every page;
with --all=false it prints one page, and the token of the next page goes to
stderr (table) or is the response's nextPageToken (-o json).`,
				run: maintenanceRuns,
			},
		},
	}
}

const backupDeleteHelp = `Delete deletes a COMMITTED or ABORTED backup now: the backup is marked
DELETING (no longer readable), the objects no other backup references are
deleted, then its catalog rows. Deduplicated file bodies that other backups
use stay. An OPEN backup is refused (exit 4, reason BACKUP_OPEN): abort it.
Running delete again finishes a deletion a crash interrupted. Prints the
backup, the number of objects deleted and the bytes freed.

` + maintenanceLockHelp + `

` + maintenanceTimeoutHelp

// longCallCtx bounds one maintenance call by --timeout when given, else by
// maintenanceTimeout.
func (c *cli) longCallCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if !c.g.timeoutSet {
		return context.WithTimeout(ctx, maintenanceTimeout)
	}
	return c.callCtx(ctx)
}

// lockBusy adds advice to the error of a call refused because another
// replica holds the maintenance lock.
func lockBusy(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted {
		return err
	}
	if r := reasonOf(st); r != "" && r != "MAINTENANCE_RUNNING" {
		return err
	}
	return &hintedError{err: err, hint: "Another replica is running maintenance (cleanup, verify or backup delete run one\n" +
		"at a time per catalog): nothing was done. Retry later; 'backupctl maintenance runs'\n" +
		"shows what ran."}
}

// int32Flag parses a non-negative int32.
func int32Flag(fs *flag.FlagSet, name, usage string, dst *int32) {
	fs.Func(name, usage, func(s string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("%q: want a whole number from 0 to %d", s, math.MaxInt32)
		}
		*dst = int32(n)
		return nil
	})
}

// durationUnits are the units parseRetentionDuration accepts: Go's, and
// days, weeks and years of 365 days, counted in hours.
var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "μs": time.Microsecond,
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// parseRetentionDuration parses a Go duration extended with days (d), weeks
// (w) and years (y = 365d): "30d", "12w", "1y", "1y6w", "36h", "1.5d".
func parseRetentionDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q: want a duration such as 30d, 12w, 1y or 36h (units ns, us, ms, s, m, h, d, w, y)", s)
	if s == "" {
		return 0, bad
	}
	rest := s
	if rest == "0" {
		return 0, nil
	}
	if strings.HasPrefix(rest, "-") {
		return 0, fmt.Errorf("%q: negative duration", s)
	}
	rest = strings.TrimPrefix(rest, "+")
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit, ok := durationUnits[rest[:j]]
		rest = rest[j:]
		if num == "" || num == "." || strings.Count(num, ".") > 1 || !ok {
			return 0, bad
		}
		whole, frac, _ := strings.Cut(num, ".")
		var w int64
		if whole != "" {
			var err error
			if w, err = strconv.ParseInt(whole, 10, 64); err != nil || w > int64(math.MaxInt64/unit) {
				return 0, fmt.Errorf("%q: too long", s)
			}
		}
		d := time.Duration(w) * unit
		if frac != "" {
			f, err := strconv.ParseFloat("0."+frac, 64)
			if err != nil {
				return 0, bad
			}
			d += time.Duration(math.Round(f * float64(unit)))
		}
		if d < 0 || total > math.MaxInt64-d {
			return 0, fmt.Errorf("%q: too long", s)
		}
		total += d
	}
	return total, nil
}

// orgFlag registers --org for the retention commands.
func orgFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "org", "", "Salesforce org `id`; default: the tenant's default policy")
}

func retentionSet(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	p := &pb.RetentionPolicy{}
	orgFlag(fs, &p.OrgId)
	int32Flag(fs, "keep-last", "keep the last `N` backups", &p.KeepLast)
	int32Flag(fs, "keep-daily", "keep the latest backup of each of the last `N` days that have backups", &p.KeepDaily)
	int32Flag(fs, "keep-weekly", "keep the latest backup of each of the last `N` weeks that have backups", &p.KeepWeekly)
	int32Flag(fs, "keep-monthly", "keep the latest backup of each of the last `N` months that have backups", &p.KeepMonthly)
	int32Flag(fs, "keep-yearly", "keep the latest backup of each of the last `N` years that have backups", &p.KeepYearly)
	var within time.Duration
	fs.Func("keep-within", "keep every backup started within `duration` before the newest one:\na Go duration (36h) or 30d, 12w, 1y (365d); units combine (1y6w)", func(s string) error {
		d, err := parseRetentionDuration(strings.TrimSpace(s))
		within = d
		return err
	})
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	if p.KeepLast == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 && p.KeepMonthly == 0 && p.KeepYearly == 0 && within == 0 {
		return usagef(cmd.path(), "the policy keeps nothing: give --keep-last, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly or --keep-within (to keep every backup, use 'backupctl retention delete')")
	}
	if within > 0 {
		p.KeepWithin = durationpb.New(within)
	}

	return callShow(ctx, c, (*client.Client).Maintenance, pb.MaintenanceServiceClient.SetRetentionPolicy, &pb.SetRetentionPolicyRequest{Policy: p},
		func(resp *pb.SetRetentionPolicyResponse) error {
			return printRetentionPolicy(c.stdout, resp.GetPolicy())
		})
}

func retentionGet(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var org string
	orgFlag(fs, &org)
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	resp, err := call(ctx, c, (*client.Client).Maintenance, pb.MaintenanceServiceClient.GetRetentionPolicy, &pb.GetRetentionPolicyRequest{OrgId: org})
	if err != nil {
		return err
	}
	if org != "" && resp.GetPolicy().GetOrgId() == "" {
		fmt.Fprintf(c.stderr, "backupctl: org %s has no policy of its own: the tenant's default applies\n", clean(org))
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printRetentionPolicy(c.stdout, resp.GetPolicy())
}

func retentionDelete(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	var org string
	orgFlag(fs, &org)
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Maintenance, pb.MaintenanceServiceClient.DeleteRetentionPolicy, &pb.DeleteRetentionPolicyRequest{OrgId: org},
		func(resp *pb.DeleteRetentionPolicyResponse) error {
			if org == "" {
				fmt.Fprintln(c.stdout, "Deleted the tenant's default retention policy: orgs without a policy of their own keep every backup.")
			} else {
				fmt.Fprintf(c.stdout, "Deleted the retention policy of org %s: the tenant's default policy, if any, applies to it.\n", clean(org))
			}
			return nil
		})
}

func backupDelete(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneBackupID)
	if err != nil {
		return err
	}
	resp, err := callWith(ctx, c, c.longCallCtx, (*client.Client).Maintenance, pb.MaintenanceServiceClient.DeleteBackup, &pb.DeleteBackupRequest{BackupId: id})
	if err != nil {
		return lockBusy(err)
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	if resp.GetBackup() != nil {
		if err := printBackup(c.stdout, resp.GetBackup()); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "Objects deleted: %d\nBytes freed: %s\n", resp.GetObjectsDeleted(), bytesExact(resp.GetBytesFreed()))
	return nil
}

func cleanupRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	dryRun := fs.Bool("dry-run", false, "only report what cleanup would do; nothing is deleted or aborted")
	if err := c.parseNoArgs(cmd, fs, args); err != nil {
		return err
	}
	resp, err := callWith(ctx, c, c.longCallCtx, (*client.Client).Maintenance, pb.MaintenanceServiceClient.RunCleanup, &pb.RunCleanupRequest{DryRun: *dryRun})
	if err != nil {
		return lockBusy(err)
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	if resp.GetDryRun() {
		fmt.Fprintln(c.stderr, "Dry run: nothing was changed; this is what cleanup would do.")
	}
	return printCleanup(c.stdout, c.stderr, resp)
}

func verifyRun(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	readPercent := fs.Int("read-percent", 0, "read back and re-hash this `percent` of the objects, 0 to 100;\n0 checks presence and sizes only")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	id, err := oneBackupID(cmd, pos)
	if err != nil {
		return err
	}
	if *readPercent < 0 || *readPercent > 100 {
		return usagef(cmd.path(), "--read-percent %d: want 0 to 100", *readPercent)
	}
	resp, err := callWith(ctx, c, c.longCallCtx, (*client.Client).Maintenance, pb.MaintenanceServiceClient.VerifyBackup, &pb.VerifyBackupRequest{BackupId: id, ReadPercent: int32(*readPercent)})
	if err != nil {
		return lockBusy(err)
	}
	if c.json() {
		err = printJSON(c.stdout, resp)
	} else {
		err = printVerify(c.stdout, id, resp)
	}
	if err != nil {
		return err
	}
	if n := len(resp.GetProblems()); n > 0 {
		return verifyFailed(id, n)
	}
	return nil
}

// verifyFailed is the error verify exits with when an object failed: exit 4,
// so that scripts can trust the exit code.
func verifyFailed(id string, problems int) error {
	what := plural(problems, "object is", "objects are")
	st := status.New(codes.FailedPrecondition, fmt.Sprintf("backup %s failed verification: %s missing or corrupt; see the report", id, what))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "BACKUP_DAMAGED", Domain: "backupstore.v1"}); err == nil {
		st = d
	}
	return st.Err()
}

func maintenanceRuns(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.ListMaintenanceRunsRequest{}
	pages := pageFlags(fs, "runs per call, at most 1000; 0 for the server's default")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := pages.check(cmd, pos); err != nil {
		return err
	}

	return listPages(ctx, c, pages, "maintenance runs", "runs",
		func(ctx context.Context, cl *client.Client, size int32, token string) ([]*pb.MaintenanceRun, string, error) {
			req.PageSize, req.PageToken = size, token
			resp, err := cl.Maintenance().ListMaintenanceRuns(ctx, req)
			return resp.GetRuns(), resp.GetNextPageToken(), err
		},
		func(items []*pb.MaintenanceRun, next string) proto.Message {
			return &pb.ListMaintenanceRunsResponse{Runs: items, NextPageToken: next}
		}, printMaintenanceRuns)
}
