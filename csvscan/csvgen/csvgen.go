// Package csvgen writes deterministic Salesforce-like CSV record exports for tests and
// benchmarks: Account-like rows of 20 columns, about 300 bytes each, with valid and unique
// 18-character ids, a ParentId column referring to earlier rows, and the awkward parts of real
// exports (quoted fields holding commas, doubled quotes, embedded newlines and multi-byte UTF-8).
//
// csvgen imports only the standard library; it is meant for tests and benchmarks anywhere in
// backupstore, not for production code.
package csvgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
)

// Key prefixes of the ids Generate writes.
const (
	AccountPrefix = "001"
	UserPrefix    = "005"
)

var columns = []string{
	"Id", "IsDeleted", "MasterRecordId", "Name", "Type", "ParentId", "BillingStreet", "BillingCity",
	"BillingState", "BillingPostalCode", "BillingCountry", "Phone", "Website", "Industry",
	"AnnualRevenue", "NumberOfEmployees", "Description", "OwnerId", "CreatedDate", "LastModifiedDate",
}

// Columns returns the header Generate writes, in order. Id, ParentId (an Account), MasterRecordId
// (always empty) and OwnerId (a User) hold ids.
func Columns() []string { return append([]string(nil), columns...) }

// RefColumns returns the reference columns of Columns, for a scanner's refColumns.
func RefColumns() []string { return []string{"ParentId", "OwnerId"} }

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ID returns the n-th deterministic 18-character id with the given 3-character key prefix (such
// as "001" for Account): the prefix, "000", n in 9 base-62 digits, and the checksum suffix. Distinct
// n give distinct ids, and ids differ in case as real ones do. ID panics if prefix is not 3
// characters of [A-Za-z0-9] or n is outside [0, 62^9).
func ID(prefix string, n int64) string {
	b := appendID(make([]byte, 0, 18), prefix, n)
	return string(b)
}

func appendID(dst []byte, prefix string, n int64) []byte {
	if len(prefix) != 3 {
		panic(fmt.Sprintf("csvgen.ID: prefix %q is not 3 characters", prefix))
	}
	if n < 0 || n >= 13537086546263552 { // 62^9
		panic(fmt.Sprintf("csvgen.ID: n %d out of range", n))
	}
	var id [18]byte
	copy(id[:], prefix)
	copy(id[3:], "000")
	for i := 14; i >= 6; i-- {
		id[i] = base62[n%62]
		n /= 62
	}
	for g := range 3 {
		bits := 0
		for j := range 5 {
			c := id[g*5+j]
			switch {
			case 'A' <= c && c <= 'Z':
				bits |= 1 << j
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			default:
				panic(fmt.Sprintf("csvgen.ID: prefix %q is not [A-Za-z0-9]", prefix))
			}
		}
		id[15+g] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
	}
	return append(dst, id[:]...)
}

var (
	names = []string{"Acme", "Globex", "Initech", "Umbrella", "Müller & Söhne", "Société Générale d'Équipement",
		"株式会社サンプル", "Ørsted Øst", "Hooli", "Stark Industries", "Wayne Enterprises", "Łódź Logistics",
		"Zürich Re", "Cyberdyne", "\"Quoted\" Holdings", "Smith, Jones and Partners"}
	suffixes  = []string{"Inc.", "Ltd", "GmbH", "S.A.", "LLC", "plc", "AG", "K.K.", "Group", "Holdings, Inc."}
	types     = []string{"Customer - Direct", "Customer - Channel", "Prospect", "Partner", "Other"}
	streets   = []string{"Main St", "Market Street", "Rue de Rivoli", "Bahnhofstraße", "Via Roma", "Calle Mayor", "銀座通り"}
	cities    = []string{"San Francisco", "New York", "Paris", "Zürich", "München", "Tokyo", "São Paulo", "London", "Kraków"}
	states    = []string{"CA", "NY", "IDF", "ZH", "BY", "Tokyo", "SP", "", "MA"}
	countries = []string{"United States", "France", "Switzerland", "Germany", "Japan", "Brazil", "United Kingdom", "Poland"}
	industry  = []string{"Technology", "Banking", "Energy", "Manufacturing", "Retail", "Healthcare", "Education", ""}
	words     = []string{"strategic", "account", "renewal", "Q3", "pipeline", "contact", "café", "naïve", "—", "résumé",
		"expansion", "budget", "€1.2M", "legal", "review", "onboarding", "日本", "support", "priority", "migration"}
)

// Generate writes a header and rows Account-like rows to w, deterministically for a given seed.
// Line endings are LF. Text fields are always quoted and sometimes hold commas, doubled quotes
// and newlines; ids, numbers, booleans and dates are not quoted. About a third of the rows have
// a ParentId naming an earlier row.
func Generate(w io.Writer, rows int, seed int64) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	b := make([]byte, 0, 4096)
	for i, c := range columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c...)
	}
	b = append(b, '\n')
	if _, err := bw.Write(b); err != nil {
		return fmt.Errorf("csvgen: %w", err)
	}
	first := int64(seed&0xffff) * 1_000_000 // different seeds give different id ranges
	for i := range int64(rows) {
		b = b[:0]
		b = appendID(b, AccountPrefix, first+i)
		b = append(b, ",false,,"...)
		b = quoted(b, pick(r, names)+" "+pick(r, suffixes))
		b = append(b, ',')
		b = quoted(b, pick(r, types))
		b = append(b, ',')
		if i > 0 && r.IntN(3) == 0 {
			b = appendID(b, AccountPrefix, first+r.Int64N(i))
		}
		b = append(b, ',')
		street := strconv.Itoa(1+r.IntN(9999)) + " " + pick(r, streets)
		if r.IntN(4) == 0 {
			street += "\nSuite " + strconv.Itoa(100+r.IntN(900)) // multi-line address, as Salesforce allows
		}
		b = quoted(b, street)
		b = append(b, ',')
		b = quoted(b, pick(r, cities))
		b = append(b, ',')
		b = quoted(b, pick(r, states))
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(10000+r.IntN(89999)), 10)
		b = append(b, ',')
		b = quoted(b, pick(r, countries))
		b = append(b, ',')
		b = quoted(b, fmt.Sprintf("(%03d) %03d-%04d", r.IntN(1000), r.IntN(1000), r.IntN(10000)))
		b = append(b, ",\"https://www.example"...)
		b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
		b = append(b, ".com\","...)
		b = quoted(b, pick(r, industry))
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(r.IntN(1_000_000_000)), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(1+r.IntN(50000)), 10)
		b = append(b, ',')
		b = quoted(b, description(r))
		b = append(b, ',')
		b = appendID(b, UserPrefix, int64(r.IntN(500)))
		b = append(b, ',')
		b = appendDate(b, r)
		b = append(b, ',')
		b = appendDate(b, r)
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("csvgen: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("csvgen: %w", err)
	}
	return nil
}

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

func description(r *rand.Rand) string {
	n := r.IntN(12)
	if n == 0 {
		return ""
	}
	b := make([]byte, 0, 96)
	for j := range n {
		if j > 0 {
			switch r.IntN(10) {
			case 0:
				b = append(b, ", "...)
			case 1:
				b = append(b, "\n"...)
			default:
				b = append(b, ' ')
			}
		}
		b = append(b, pick(r, words)...)
	}
	return string(b)
}

// quoted appends s as a quoted CSV field, doubling its quotes.
func quoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func appendDate(b []byte, r *rand.Rand) []byte {
	return fmt.Appendf(b, "20%02d-%02d-%02dT%02d:%02d:%02d.000Z", 10+r.IntN(16), 1+r.IntN(12), 1+r.IntN(28),
		r.IntN(24), r.IntN(60), r.IntN(60))
}
