package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "backupstore/proto/backupstore/v1"
)

// jsonOptions and printJSON give every -o json result one form: the
// canonical protojson mapping (lowerCamelCase names, enum names as strings,
// 64-bit integers as strings, unset fields omitted), re-indented with
// encoding/json so that the bytes are stable (protojson deliberately varies
// its whitespace) and look like the error objects.
var jsonOptions = protojson.MarshalOptions{EmitUnpopulated: false}

// printJSON writes m to w as indented protojson followed by a newline.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return fmt.Errorf("indent %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	buf.WriteByte('\n')
	_, err = buf.WriteTo(w)
	return err
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated table row, cleaning every cell.
func row(w io.Writer, cells ...string) {
	for i, s := range cells {
		cells[i] = clean(s)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// printStorages prints storages as aligned columns with a header.
func printStorages(w io.Writer, storages []*pb.Storage) error {
	tw := newTable(w)
	row(tw, "ID", "NAME", "BUCKET", "REGION", "STATUS", "DEFAULT", "VALIDATED")
	for _, s := range storages {
		row(tw, s.GetId(), s.GetName(), s.GetBucket(), s.GetRegion(), statusName(s.GetStatus()),
			yesNo(s.GetIsDefault()), timeOrDash(s.GetValidateTime()))
	}
	return tw.Flush()
}

// printStorage prints one storage's fields, one per line.
func printStorage(w io.Writer, s *pb.Storage) error {
	tw := newTable(w)
	field := func(k, v string) { row(tw, k+":", v) }
	field("ID", s.GetId())
	field("Name", s.GetName())
	field("Region", s.GetRegion())
	field("Bucket", s.GetBucket())
	field("Prefix", orDash(s.GetPrefix()))
	field("Endpoint", orDash(s.GetEndpoint()))
	field("Path style", yesNo(s.GetPathStyle()))
	field("Access key ID", s.GetAccessKeyId())
	field("KMS key ID", orDash(s.GetKmsKeyId()))
	field("Default", yesNo(s.GetIsDefault()))
	field("Status", statusName(s.GetStatus()))
	field("Status message", orDash(s.GetStatusMessage()))
	field("Validated", timeOrDash(s.GetValidateTime()))
	field("Consecutive failures", strconv.Itoa(int(s.GetConsecutiveFailures())))
	field("Abort multipart upload", yesNo(s.GetCapabilities().GetAbortMultipartUpload()))
	field("Created", timeOrDash(s.GetCreateTime()))
	field("Updated", timeOrDash(s.GetUpdateTime()))
	return tw.Flush()
}

// printStorageAndReport prints a storage, a blank line and the report.
func printStorageAndReport(w io.Writer, s *pb.Storage, title string, r *pb.ValidationReport) error {
	if s != nil {
		if err := printStorage(w, s); err != nil {
			return err
		}
	}
	if r == nil {
		return nil
	}
	if s != nil {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%s: %s\n", title, reportVerdict(r))
	return printReport(w, r)
}

func reportVerdict(r *pb.ValidationReport) string {
	verdict := "FAILED"
	if r.GetOk() {
		verdict = "OK"
	}
	if t := r.GetValidateTime(); t != nil {
		verdict += " at " + timeOrDash(t)
	}
	return verdict
}

// printReport prints a validation report, one probe per line, in the order
// probed.
func printReport(w io.Writer, r *pb.ValidationReport) error {
	tw := newTable(w)
	row(tw, "API", "OUTCOME", "CODE", "HINT")
	for _, p := range r.GetProbes() {
		row(tw, p.GetApi(), outcomeName(p.GetOutcome()), orDash(p.GetErrorCode()), orDash(p.GetHint()))
	}
	return tw.Flush()
}

func statusName(s pb.StorageStatus) string {
	return strings.TrimPrefix(s.String(), "STORAGE_STATUS_")
}

func outcomeName(o pb.ProbeOutcome) string {
	return strings.TrimPrefix(o.String(), "PROBE_OUTCOME_")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// timeOrDash formats t in UTC, RFC 3339; "-" when unset.
func timeOrDash(t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return "-"
	}
	return t.AsTime().UTC().Format("2006-01-02T15:04:05Z07:00")
}

// clean makes a server-supplied string safe for a terminal and a table cell:
// control characters (escape sequences, tabs, newlines) are shown escaped.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// printBlock prints multi-line server text (a JSON document) as is, but for
// control characters other than newline and tab, ending it with a newline.
func printBlock(w io.Writer, s string) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for _, l := range lines {
		parts := strings.Split(l, "\t")
		for i, p := range parts {
			parts[i] = clean(p)
		}
		fmt.Fprintln(w, strings.Join(parts, "\t"))
	}
}
