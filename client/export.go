package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"backupstore/csvscan"
	pb "backupstore/proto/backupstore/v1"
)

// export is an export directory as `backup run` reads it:
//
//	DIR/<sObject>.csv   one record set per sObject
//	DIR/references.csv  optional: sobject,field,target
//	DIR/files/          file bodies, any names, subdirectories allowed
//	DIR/files.csv       path,parent_id,name,content_type; required with files/
//
// Entries whose names start with a dot are ignored at the top level only.
type export struct {
	dir      string // absolute
	sobjects []*recordSet
	files    []*exportFile
	entries  []listEntry // every file the run reads, for the fingerprint
}

// recordSet is one <sObject>.csv.
type recordSet struct {
	name    string // sObject API name, as the file is named
	local   string
	size    int64
	modTime time.Time
	columns []string // header row, BOM removed
	refs    []*pb.ReferenceField

	// Set by plan: the header row's length and the chunks' row ranges.
	headerLen int64
	chunks    []chunkRange
}

// chunkRange is the rows of one chunk: bytes [start, end) of the file. The
// chunk sent is the header row followed by them.
type chunkRange struct{ start, end int64 }

// exportFile is one body under files/ and its files.csv row.
type exportFile struct {
	rel         string // relative to files/, slash-separated, as files.csv names it
	local       string
	size        int64
	modTime     time.Time
	parentID    string
	name        string
	contentType string
}

// listEntry is one file of the directory listing the idempotency key is
// derived from.
type listEntry struct {
	rel     string
	size    int64
	modTime time.Time
}

// problems collects what is wrong with an export directory, so that one run
// reports all of it.
type problems struct{ list []string }

func (p *problems) add(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// maxProblems is how many problems an error message lists.
const maxProblems = 20

// message is what a LayoutError or a restore layout error says: title, then
// the problems one a line, at most maxProblems of them.
func (p *problems) message(title string) string {
	var b strings.Builder
	b.WriteString(title)
	for i, s := range p.list {
		if i == maxProblems {
			fmt.Fprintf(&b, "\n  ... and %d more", len(p.list)-maxProblems)
			break
		}
		b.WriteString("\n  " + s)
	}
	return b.String()
}

// LayoutError is an export directory BackupDir refuses before sending
// anything: every problem found, one per line of Problems.
type LayoutError struct {
	Dir      string
	Problems []string
}

func (e *LayoutError) Error() string {
	p := problems{e.Problems}
	return p.message(e.Dir + " is not a valid export directory:")
}

// PathError is a local file or directory BackupDir or RestoreDir cannot use
// as given (missing, not a directory, unreadable); nothing was sent.
type PathError struct{ Err error }

func (e *PathError) Error() string { return e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }

const layoutHint = "an export directory holds <sObject>.csv files, references.csv, files.csv and files/"

var (
	salesforceID = regexp.MustCompile(`^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$`)
	sObjectName  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)
)

// ValidRecordID reports whether s has the shape of a Salesforce record id:
// 15 or 18 letters and digits.
func ValidRecordID(s string) bool { return salesforceID.MatchString(s) }

// ValidSObjectName reports whether s is an sObject API name
// ([A-Za-z][A-Za-z0-9_]{0,79}), as the service requires: it becomes part of
// object keys.
func ValidSObjectName(s string) bool { return sObjectName.MatchString(s) }

// readExport checks the layout of an export directory and reads its small
// parts (CSV header rows, references.csv, files.csv). It reads no record or
// file body. Every mistake is a usage error (exit 2), reported together.
func readExport(dir string) (*export, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &PathError{fmt.Errorf("%s: %v", dir, err)}
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // one directory, one idempotency key, however it is reached
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, &PathError{err}
	} else if !fi.IsDir() {
		return nil, &PathError{fmt.Errorf("%s: not a directory", dir)}
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, &PathError{err}
	}
	ex := &export{dir: abs}
	var p problems
	var refsCSV, filesCSV string
	hasFilesDir := false
	byLower := map[string]*recordSet{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		local := filepath.Join(abs, name)
		fi, err := os.Stat(local) // follows symbolic links
		if err != nil {
			p.add("%s: %v", name, err)
			continue
		}
		switch {
		case name == "files":
			if !fi.IsDir() {
				p.add("files: not a directory (files/ holds the file bodies)")
				continue
			}
			hasFilesDir = true
		case fi.IsDir():
			p.add("%s/: unexpected directory; %s", name, layoutHint)
		case !strings.HasSuffix(name, ".csv"):
			p.add("%s: unexpected file; %s", name, layoutHint)
		case !fi.Mode().IsRegular():
			p.add("%s: not a regular file", name)
		case name == "references.csv":
			refsCSV = local
			ex.entries = append(ex.entries, listEntry{name, fi.Size(), fi.ModTime()})
		case name == "files.csv":
			filesCSV = local
			ex.entries = append(ex.entries, listEntry{name, fi.Size(), fi.ModTime()})
		default:
			obj := strings.TrimSuffix(name, ".csv")
			if !sObjectName.MatchString(obj) {
				p.add("%s: %q is not an sObject API name ([A-Za-z][A-Za-z0-9_]{0,79}); record sets are named <sObject>.csv", name, obj)
				continue
			}
			if other := byLower[strings.ToLower(obj)]; other != nil {
				p.add("%s and %s.csv: the same sObject (API names are case-insensitive)", name, other.name)
				continue
			}
			rs := &recordSet{name: obj, local: local, size: fi.Size(), modTime: fi.ModTime()}
			if rs.columns, err = readCSVHeader(local); err != nil {
				p.add("%s: %v", name, err)
			}
			byLower[strings.ToLower(obj)] = rs
			ex.sobjects = append(ex.sobjects, rs)
			ex.entries = append(ex.entries, listEntry{name, fi.Size(), fi.ModTime()})
		}
	}

	if refsCSV != "" {
		readReferences(refsCSV, byLower, &p)
	}

	bodies := map[string]*exportFile{}
	if hasFilesDir {
		root := filepath.Join(abs, "files")
		_ = filepath.WalkDir(root, func(local string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(root, local)
			rel = filepath.ToSlash(rel)
			if err != nil {
				p.add("files/%s: %v", rel, err)
				return nil
			}
			if d.IsDir() {
				return nil
			}
			fi, err := os.Stat(local)
			switch {
			case err != nil:
				p.add("files/%s: %v", rel, err)
			case !fi.Mode().IsRegular():
				p.add("files/%s: not a regular file", rel)
			default:
				bodies[rel] = &exportFile{rel: rel, local: local, size: fi.Size(), modTime: fi.ModTime()}
				ex.entries = append(ex.entries, listEntry{"files/" + rel, fi.Size(), fi.ModTime()})
			}
			return nil
		})
	}
	switch {
	case filesCSV != "":
		ex.files = readFilesCSV(filesCSV, bodies, hasFilesDir, &p)
	case hasFilesDir:
		p.add("files/ exists but files.csv is missing: it lists every body as path,parent_id,name,content_type")
	}

	if len(ex.sobjects) == 0 && len(ex.files) == 0 && len(p.list) == 0 {
		p.add("nothing to back up: no <sObject>.csv and no files")
	}
	if len(p.list) > 0 {
		return nil, &LayoutError{Dir: dir, Problems: p.list}
	}
	return ex, nil
}

// readCSVHeader returns the header row of a CSV file.
func readCSVHeader(local string) ([]string, error) {
	f, err := os.Open(local)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	rec, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty: a record set starts with a header row of field names")
	}
	if err != nil {
		return nil, fmt.Errorf("header row: %v", err)
	}
	rec[0] = strings.TrimPrefix(rec[0], "\uFEFF")
	for _, c := range rec {
		if strings.ContainsAny(c, "\r\n") {
			// The service refuses it too: a field API name never holds one.
			return nil, fmt.Errorf("header row: column %q holds a line break; field API names never do", c)
		}
	}
	return rec, nil
}

// smallCSV reads a small CSV file whose header row names its columns
// (case-insensitively, in any order): the required ones must be there, and
// header is the whole header for messages. It calls row for each record with
// its line number and a getter by column name ("" for an absent column).
func smallCSV(local string, required []string, header string, p *problems, row func(line int, get func(string) string)) {
	base := filepath.Base(local)
	f, err := os.Open(local)
	if err != nil {
		p.add("%s: %v", base, err)
		return
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		p.add("%s: empty; want the header row %s", base, header)
		return
	}
	if err != nil {
		p.add("%s: %v", base, err)
		return
	}
	head[0] = strings.TrimPrefix(head[0], "\uFEFF")
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, w := range required {
		if _, ok := col[w]; !ok {
			p.add("%s: the header row lacks column %q; want %s", base, w, header)
			return
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p.add("%s: %v", base, err)
			return
		}
		line, _ := r.FieldPos(0)
		row(line, func(name string) string {
			i, ok := col[name]
			if !ok {
				return ""
			}
			return strings.TrimSpace(rec[i])
		})
	}
}

// readReferences reads references.csv into the record sets' refs, using the
// spelling of the export (API names are case-insensitive).
func readReferences(local string, byLower map[string]*recordSet, p *problems) {
	seen := map[string]int{}
	smallCSV(local, []string{"sobject", "field", "target"}, "sobject,field,target", p, func(line int, get func(string) string) {
		obj, field, target := get("sobject"), get("field"), get("target")
		where := fmt.Sprintf("references.csv line %d", line)
		if obj == "" || field == "" || target == "" {
			p.add("%s: sobject, field and target must all be set", where)
			return
		}
		rs := byLower[strings.ToLower(obj)]
		if rs == nil {
			p.add("%s: sobject %q is not in the export (no %s.csv)", where, obj, obj)
			return
		}
		if rs.columns == nil {
			return // its header row is already reported
		}
		var column string
		for _, c := range rs.columns {
			if strings.EqualFold(c, field) {
				column = c
			}
		}
		if column == "" {
			p.add("%s: %s.csv has no column %q", where, rs.name, field)
			return
		}
		tgt := byLower[strings.ToLower(target)]
		if tgt == nil {
			p.add("%s: target %q is not in the export (no %s.csv)", where, target, target)
			return
		}
		key := strings.ToLower(rs.name + "." + column)
		if first, dup := seen[key]; dup {
			p.add("%s: %s.%s is declared twice (first on line %d)", where, rs.name, column, first)
			return
		}
		seen[key] = line
		rs.refs = append(rs.refs, &pb.ReferenceField{Field: column, Target: tgt.name})
	})
}

// readFilesCSV reads files.csv and matches it against the bodies under
// files/: every body listed, every listed body present.
func readFilesCSV(local string, bodies map[string]*exportFile, hasFilesDir bool, p *problems) []*exportFile {
	var out []*exportFile
	listed := map[string]int{}
	smallCSV(local, []string{"path", "parent_id"}, "path,parent_id,name,content_type", p, func(line int, get func(string) string) {
		rel, parent := get("path"), get("parent_id")
		where := fmt.Sprintf("files.csv line %d", line)
		switch {
		case rel == "":
			p.add("%s: empty path", where)
			return
		case strings.Contains(rel, `\`) || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../"):
			p.add("%s: path %q: want a clean relative path under files/, with forward slashes", where, rel)
			return
		case !salesforceID.MatchString(parent):
			p.add("%s: parent_id %q is not a 15- or 18-character Salesforce id", where, parent)
			return
		}
		if first, dup := listed[rel]; dup {
			p.add("%s: %s is listed twice (first on line %d)", where, rel, first)
			return
		}
		listed[rel] = line
		b := bodies[rel]
		if b == nil {
			if hasFilesDir {
				p.add("%s: files/%s does not exist", where, rel)
			} else {
				p.add("%s: files/%s does not exist (there is no files/ directory)", where, rel)
			}
			return
		}
		b.parentID = parent
		// Kept exactly as files.csv has them (empty included), so that
		// restore run writes the same files.csv back.
		b.name = get("name")
		b.contentType = get("content_type")
		out = append(out, b)
	})
	for _, rel := range slices.Sorted(maps.Keys(bodies)) {
		if _, ok := listed[rel]; !ok {
			p.add("files/%s is not listed in files.csv", rel)
		}
	}
	return out
}

// fingerprint hashes the directory listing: every file's relative path,
// size and modification time. Any change to the export changes it.
func (ex *export) fingerprint() string {
	entries := slices.Clone(ex.entries)
	slices.SortFunc(entries, func(a, b listEntry) int { return strings.Compare(a.rel, b.rel) })
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", e.rel, e.size, e.modTime.UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runIdempotencyKey derives the CreateBackup idempotency key of a run from
// everything that decides what the run uploads: the org, the storage, the
// directory's absolute path, its listing and the chunk size (another chunk
// size cuts other chunks under the same upload ids, so it must not resume
// the same backup).
func runIdempotencyKey(org, storage, dir string, chunkSize int64, fingerprint string) string {
	h := sha256.New()
	// The "backupctl" in it predates this package: changing it would make
	// interrupted runs start over.
	fmt.Fprintf(h, "backupctl run v1\x00%s\x00%s\x00%s\x00%d\x00%s", org, storage, dir, chunkSize, fingerprint)
	return "backupctl-run-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// ScanError is a record set that the CSV scanner rejects: bad local input,
// found before anything was sent. Err is the scanner's error.
type ScanError struct {
	File string
	Err  error
}

func (e *ScanError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *ScanError) Unwrap() error { return e.Err }

// plan finds the chunk boundaries of a record set (pass 1): it scans the file
// for row boundaries, quote-aware, and cuts a chunk before a row that would
// make it (with its header row) larger than chunkSize. A single row larger
// than that becomes a chunk of its own. A file of only a header row is one
// chunk. Nothing is held but the scanner's buffer.
func (rs *recordSet) plan(ctx context.Context, chunkSize int64) error {
	f, err := os.Open(rs.local)
	if err != nil {
		return err
	}
	defer f.Close()
	var refCols []string
	for _, r := range rs.refs {
		refCols = append(refCols, r.GetField())
	}
	sc := csvscan.New(refCols, csvscan.Limits{})
	var pos, start int64
	var chunks []chunkRange
	started := false
	begin := func() {
		if !started {
			started = true
			rs.headerLen = int64(len(sc.Header()))
			pos, start = rs.headerLen, rs.headerLen
		}
	}
	emit := func(r *csvscan.Row) error {
		begin()
		n := int64(len(r.Raw))
		if pos > start && rs.headerLen+(pos-start)+n > chunkSize {
			chunks = append(chunks, chunkRange{start, pos})
			start = pos
		}
		pos += n
		return nil
	}
	bp := bufPool.Get().(*[dataMessageSize]byte)
	defer bufPool.Put(bp)
	buf := bp[:]
	r := ctxReader{ctx, f}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ferr := sc.Feed(buf[:n], emit); ferr != nil {
				return &ScanError{rs.name + ".csv", ferr}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := sc.Close(emit); err != nil {
		return &ScanError{rs.name + ".csv", err}
	}
	begin()
	rs.chunks = append(chunks, chunkRange{start, pos})
	if pos != rs.size {
		return fmt.Errorf("%s.csv: scanned %d bytes of %d: did the file change?", rs.name, pos, rs.size)
	}
	return nil
}

// unchanged reports an error when a file is no longer as listed.
func unchanged(local string, size int64, modTime time.Time) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if fi.Size() != size || !fi.ModTime().Equal(modTime) {
		return fmt.Errorf("%s changed since the run started; run again to back up the new version", local)
	}
	return nil
}
