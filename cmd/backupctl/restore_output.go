package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	pb "backupstore/proto/backupstore/v1"
)

// printContents prints a backup, its record sets and its files.
func printContents(w io.Writer, c *pb.ListBackupContentsResponse) error {
	if err := printBackup(w, c.GetBackup()); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRecord sets: %d\n", len(c.GetRecordSets()))
	if len(c.GetRecordSets()) > 0 {
		if err := printRecordSets(w, c.GetRecordSets()); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nFiles: %d\n", len(c.GetFiles()))
	if len(c.GetFiles()) > 0 {
		return printFileInfos(w, c.GetFiles())
	}
	return nil
}

// printRecordSets prints record sets as aligned columns with a header.
func printRecordSets(w io.Writer, sets []*pb.RecordSetInfo) error {
	tw := newTable(w)
	row(tw, "SOBJECT", "CHUNKS", "RECORDS", "BYTES IN", "STORED", "REFERENCES")
	for _, rs := range sets {
		var refs []string
		for _, r := range rs.GetReferences() {
			refs = append(refs, r.GetField()+"="+r.GetTarget())
		}
		row(tw, rs.GetSobject(), strconv.Itoa(int(rs.GetChunks())), strconv.FormatInt(rs.GetRecords(), 10),
			humanBytes(rs.GetBytesIn()), humanBytes(rs.GetBytesStored()), orDash(strings.Join(refs, ",")))
	}
	return tw.Flush()
}

// printFileInfos prints files as aligned columns with a header.
func printFileInfos(w io.Writer, files []*pb.FileInfo) error {
	tw := newTable(w)
	row(tw, "FILE ID", "PARENT ID", "PATH", "NAME", "CONTENT TYPE", "SIZE")
	for _, f := range files {
		row(tw, f.GetFileId(), f.GetParentId(), f.GetPath(), orDash(f.GetName()), orDash(f.GetContentType()), humanBytes(f.GetSize()))
	}
	return tw.Flush()
}

// printPlan prints a restore plan's steps, one per line, in order.
func printPlan(w io.Writer, steps []*pb.RestoreStep) error {
	tw := newTable(w)
	row(tw, "ORDER", "KIND", "SOBJECT", "ROLE", "RECORDS", "FIELDS", "FILES")
	for _, s := range steps {
		records, files, fields := "-", "-", "-"
		switch s.GetKind() {
		case pb.StepKind_STEP_KIND_INSERT:
			records = strconv.Itoa(len(s.GetIds()))
			if len(s.GetOmitFields()) > 0 {
				fields = "omit:" + strings.Join(s.GetOmitFields(), ",")
			}
		case pb.StepKind_STEP_KIND_UPDATE:
			records = strconv.Itoa(len(s.GetIds()))
			fields = "set:" + strings.Join(s.GetUpdateFields(), ",")
		case pb.StepKind_STEP_KIND_FILES:
			files = strconv.Itoa(len(s.GetFileIds()))
		}
		row(tw, strconv.Itoa(int(s.GetOrder())), stepKindName(s.GetKind()), orDash(s.GetSobject()), orDash(s.GetRole()),
			records, fields, files)
	}
	return tw.Flush()
}

func stepKindName(k pb.StepKind) string {
	return strings.TrimPrefix(k.String(), "STEP_KIND_")
}
