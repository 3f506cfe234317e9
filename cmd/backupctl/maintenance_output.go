package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	pb "backupstore/proto/backupstore/v1"
)

// printRetentionPolicy prints one policy's fields, one per line.
func printRetentionPolicy(w io.Writer, p *pb.RetentionPolicy) error {
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	org := p.GetOrgId()
	if org == "" {
		org = "(tenant default)"
	}
	field("Org", org)
	field("Keep last", strconv.Itoa(int(p.GetKeepLast())))
	field("Keep daily", strconv.Itoa(int(p.GetKeepDaily())))
	field("Keep weekly", strconv.Itoa(int(p.GetKeepWeekly())))
	field("Keep monthly", strconv.Itoa(int(p.GetKeepMonthly())))
	field("Keep yearly", strconv.Itoa(int(p.GetKeepYearly())))
	field("Keep within", keepWithin(p))
	field("Updated", timeOrDash(p.GetUpdateTime()))
	return tw.Flush()
}

// keepWithin formats a policy's keep_within: "30d (720h0m0s)", "36h0m0s" or
// "-" when unset.
func keepWithin(p *pb.RetentionPolicy) string {
	kw := p.GetKeepWithin()
	if kw == nil || !kw.IsValid() {
		return "-"
	}
	d := kw.AsDuration()
	if d <= 0 {
		return "-"
	}
	if day := 24 * time.Hour; d%day == 0 {
		return fmt.Sprintf("%dd (%s)", d/day, d)
	}
	return d.String()
}

// printCleanup prints what cleanup did (or would do), one item a line, then
// its totals. With no items it says so on stderr.
func printCleanup(w, stderr io.Writer, r *pb.RunCleanupResponse) error {
	if len(r.GetItems()) == 0 {
		fmt.Fprintln(stderr, "Nothing to clean up.")
	} else {
		tw := newTable(w)
		row(tw, "ACTION", "BACKUP", "KEY/UPLOAD", "BYTES", "REASON")
		for _, it := range r.GetItems() {
			row(tw, orDash(it.GetAction()), orDash(it.GetBackupId()), cleanupTarget(it),
				humanBytes(it.GetBytes()), orDash(it.GetReason()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	count := func(n int64) string { return strconv.FormatInt(n, 10) }
	field("Run", orDash(r.GetRunId()))
	field("Dry run", yesNo(r.GetDryRun()))
	field("Backups expired", count(r.GetBackupsExpired()))
	field("Objects deleted", count(r.GetObjectsDeleted()))
	field("Bytes freed", bytesExact(r.GetBytesFreed()))
	field("Garbage deleted", count(r.GetGarbageDeleted()))
	field("Uploads aborted", count(r.GetUploadsAborted()))
	field("Skipped", count(r.GetSkipped()))
	return tw.Flush()
}

// cleanupTarget is an item's KEY/UPLOAD cell: the object key, else the
// upload id with its S3 multipart upload id when the abort was denied.
func cleanupTarget(it *pb.CleanupItem) string {
	switch {
	case it.GetKey() != "":
		return it.GetKey()
	case it.GetUploadId() != "" && it.GetS3UploadId() != "":
		return it.GetUploadId() + " (S3 upload " + it.GetS3UploadId() + ")"
	case it.GetUploadId() != "":
		return it.GetUploadId()
	case it.GetS3UploadId() != "":
		return "S3 upload " + it.GetS3UploadId()
	}
	return "-"
}

// printVerify prints a verification: the counts, the object problems, the
// dangling references and the verdict.
func printVerify(w io.Writer, id string, r *pb.VerifyBackupResponse) error {
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	b := r.GetBackup()
	if b.GetId() != "" {
		id = b.GetId()
	}
	field("Backup", id)
	if b != nil {
		st := backupStatusName(b.GetStatus())
		if b.GetDamaged() {
			st += " (damaged)"
		}
		field("Status", st)
		field("Org", orDash(b.GetOrgId()))
	}
	var dangling int64
	for _, d := range r.GetDangling() {
		dangling += d.GetCount()
	}
	field("Objects checked", strconv.FormatInt(r.GetObjectsChecked(), 10))
	field("Objects read", strconv.FormatInt(r.GetObjectsRead(), 10))
	field("Bytes read", bytesExact(r.GetBytesRead()))
	field("Problems", strconv.Itoa(len(r.GetProblems())))
	field("Dangling references", fmt.Sprintf("%d (%s)", dangling, plural(len(r.GetDangling()), "field", "fields")))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.GetProblems()) > 0 {
		fmt.Fprintf(w, "\nObject problems:\n")
		tw := newTable(w)
		row(tw, "KEY", "PROBLEM", "DETAIL")
		for _, p := range r.GetProblems() {
			row(tw, p.GetKey(), orDash(p.GetProblem()), orDash(p.GetDetail()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.GetDangling()) > 0 {
		fmt.Fprintf(w, "\nDangling references (target record not in the backup; not an error):\n")
		tw := newTable(w)
		row(tw, "SOBJECT", "FIELD", "TARGET", "COUNT")
		for _, d := range r.GetDangling() {
			row(tw, d.GetSobject(), d.GetField(), d.GetTarget(), strconv.FormatInt(d.GetCount(), 10))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	verdict := "OK"
	if n := len(r.GetProblems()); n > 0 {
		verdict = fmt.Sprintf("FAILED (%s missing or corrupt; the backup is marked damaged)", plural(n, "object", "objects"))
	}
	fmt.Fprintf(w, "\nVerification: %s\n", verdict)
	return nil
}

// printMaintenanceRuns prints runs as aligned columns with a header.
func printMaintenanceRuns(w io.Writer, runs []*pb.MaintenanceRun) error {
	tw := newTable(w)
	row(tw, "RUN ID", "KIND", "DRY RUN", "OUTCOME", "REPLICA", "STARTED", "DURATION", "MESSAGE")
	for _, r := range runs {
		dur := "-"
		if s, e := r.GetStartTime(), r.GetEndTime(); timeOrDash(s) != "-" && timeOrDash(e) != "-" {
			dur = shortDuration(e.AsTime().Sub(s.AsTime()))
		}
		row(tw, r.GetRunId(), orDash(r.GetKind()), yesNo(r.GetDryRun()), orDash(r.GetOutcome()),
			orDash(r.GetReplica()), timeOrDash(r.GetStartTime()), dur, orDash(r.GetMessage()))
	}
	return tw.Flush()
}

// plural formats n with the singular or plural noun: "1 object", "2 objects".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
