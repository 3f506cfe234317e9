package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "backupstore/proto/backupstore/v1"
)

// printBackup prints one backup's fields, one per line.
func printBackup(w io.Writer, b *pb.Backup) error {
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	field("ID", b.GetId())
	field("Org", b.GetOrgId())
	field("Storage", storageOrDefault(b.GetStorageId()))
	field("Status", backupStatusName(b.GetStatus()))
	field("Damaged", yesNo(b.GetDamaged()))
	field("Labels", orDash(labelString(b.GetLabels())))
	field("Started", timeOrDash(b.GetStartTime()))
	field("Committed", timeOrDash(b.GetCommitTime()))
	field("Records", strconv.FormatInt(b.GetRecordCount(), 10))
	field("Record chunks", strconv.FormatInt(b.GetRecordChunkCount(), 10))
	field("Files", strconv.FormatInt(b.GetFileCount(), 10))
	field("Bytes in", bytesExact(b.GetBytesIn()))
	field("Bytes stored", bytesExact(b.GetBytesStored()))
	field("Manifest", orDash(b.GetManifestKey()))
	return tw.Flush()
}

// printBackups prints backups as aligned columns with a header.
func printBackups(w io.Writer, backups []*pb.Backup) error {
	tw := newTable(w)
	row(tw, "ID", "ORG", "STORAGE", "STATUS", "STARTED", "COMMITTED", "RECORDS", "FILES", "BYTES IN", "STORED")
	for _, b := range backups {
		st := backupStatusName(b.GetStatus())
		if b.GetDamaged() {
			st += " (damaged)"
		}
		row(tw, b.GetId(), b.GetOrgId(), storageOrDefault(b.GetStorageId()), st,
			timeOrDash(b.GetStartTime()), timeOrDash(b.GetCommitTime()),
			strconv.FormatInt(b.GetRecordCount(), 10), strconv.FormatInt(b.GetFileCount(), 10),
			humanBytes(b.GetBytesIn()), humanBytes(b.GetBytesStored()))
	}
	return tw.Flush()
}

// printUploads prints uploads as aligned columns with a header.
func printUploads(w io.Writer, uploads []*pb.Upload) error {
	tw := newTable(w)
	row(tw, "UPLOAD ID", "KIND", "STATE", "WHAT", "COMMITTED SIZE", "GEN", "UPDATED", "ERROR")
	for _, u := range uploads {
		row(tw, u.GetUploadId(), uploadKindName(u.GetKind()), uploadStateName(u.GetState()), uploadWhat(u),
			strconv.FormatInt(u.GetCommittedSize(), 10), strconv.FormatInt(u.GetGeneration(), 10),
			timeOrDash(u.GetUpdateTime()), orDash(u.GetError()))
	}
	return tw.Flush()
}

// uploadWhat names what an upload carries: "Account #0" or a file's path.
func uploadWhat(u *pb.Upload) string {
	switch u.GetKind() {
	case pb.UploadKind_UPLOAD_KIND_RECORDS:
		return fmt.Sprintf("%s #%d", u.GetSobject(), u.GetSequence())
	case pb.UploadKind_UPLOAD_KIND_FILE:
		return u.GetPath()
	}
	return "-"
}

// printUploadResult prints an upload's result, one field per line.
func printUploadResult(w io.Writer, r *pb.UploadResult) error {
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	field("Upload ID", r.GetUploadId())
	if r.GetFileId() != "" {
		field("File ID", r.GetFileId())
	}
	field("Data key", orDash(r.GetDataKey()))
	if r.GetIndexKey() != "" {
		field("Index key", r.GetIndexKey())
	}
	if r.GetFileId() == "" {
		field("Records", strconv.FormatInt(r.GetRecords(), 10))
	}
	field("Bytes in", bytesExact(r.GetBytesIn()))
	field("Bytes stored", bytesExact(r.GetBytesStored()))
	field("SHA-256", orDash(r.GetSha256()))
	field("Deduplicated", yesNo(r.GetDeduplicated()))
	return tw.Flush()
}

// printOrphans prints files whose parent record is not in the backup.
func printOrphans(w io.Writer, orphans []*pb.OrphanFile) error {
	tw := newTable(w)
	row(tw, "FILE ID", "PARENT ID", "PATH")
	for _, o := range orphans {
		row(tw, o.GetFileId(), o.GetParentId(), o.GetPath())
	}
	return tw.Flush()
}

func backupStatusName(s pb.BackupStatus) string {
	return strings.TrimPrefix(s.String(), "BACKUP_STATUS_")
}

func uploadStateName(s pb.UploadState) string {
	return strings.TrimPrefix(s.String(), "UPLOAD_STATE_")
}

func uploadKindName(k pb.UploadKind) string {
	return strings.TrimPrefix(k.String(), "UPLOAD_KIND_")
}

func storageOrDefault(id string) string {
	if id == "" {
		return "(service default)"
	}
	return id
}

// labelString formats labels as k=v pairs sorted by key.
func labelString(m map[string]string) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, k+"="+m[k])
	}
	return strings.Join(s, ",")
}

// bytesExact prints a byte count exactly, with a readable size beside it.
func bytesExact(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%d (%s)", n, humanBytes(n))
}

// humanBytes formats n in binary units: 512 B, 1.5 KiB, 3.2 GiB.
func humanBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= 1024
		if f < 1024 && f > -1024 || unit == "PiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return "" // not reached
}

// shortDuration formats d for people: 850ms, 12.3s, 4m05s, 2h03m.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
