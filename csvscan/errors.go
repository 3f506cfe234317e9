package csvscan

import (
	"fmt"
	"strconv"
)

// Reason codes of RowError. They are stable: clients match on them.
const (
	NoHeader        = "NO_HEADER"        // the input is empty
	NoIDColumn      = "NO_ID_COLUMN"     // the header has no Id column
	DuplicateColumn = "DUPLICATE_COLUMN" // two header columns have the same name
	MissingColumn   = "MISSING_COLUMN"   // a requested reference column is not in the header
	BadHeader       = "BAD_HEADER"       // a header column name is empty or not UTF-8
	UnclosedQuote   = "UNCLOSED_QUOTE"   // the input ends inside a quoted field
	BadQuote        = "BAD_QUOTE"        // a quote inside an unquoted field, or text after a closing quote
	WrongWidth      = "WRONG_WIDTH"      // a row has more or fewer fields than the header
	InvalidUTF8     = "INVALID_UTF8"     // a row is not valid UTF-8
	BadID           = "BAD_ID"           // the Id field is empty or not a Salesforce id
	BadReference    = "BAD_REFERENCE"    // a non-empty reference field is not a Salesforce id
	FieldTooLarge   = "FIELD_TOO_LARGE"  // a field is longer than Limits.MaxFieldBytes
	RowTooLarge     = "ROW_TOO_LARGE"    // a row is longer than Limits.MaxRowBytes
)

// RowError says what is wrong with the input and where.
type RowError struct {
	Row    int64  // 1-based row (record) number, the header being row 1; 0 when no row applies
	Column string // header name of the offending column, "" when none applies
	Reason string // one of the reason codes above
	Detail string // a sentence a person can act on
}

// Error formats e as, for example,
// `row 7, column "AccountId": BAD_REFERENCE: "xyz" is not a Salesforce id: must be 15 or 18 characters of A-Z, a-z, 0-9`.
func (e *RowError) Error() string {
	var b []byte
	if e.Row > 0 {
		b = append(b, "row "...)
		b = strconv.AppendInt(b, e.Row, 10)
		if e.Column != "" {
			b = append(b, ", column "...)
			b = strconv.AppendQuote(b, e.Column)
		}
		b = append(b, ": "...)
	}
	b = append(b, e.Reason...)
	if e.Detail != "" {
		b = append(b, ": "...)
		b = append(b, e.Detail...)
	}
	return string(b)
}

// maxQuoted bounds how much of a field value an error message quotes.
const maxQuoted = 64

// quote returns v as a Go-quoted string, cut to maxQuoted bytes.
func quote(v []byte) string {
	if len(v) > maxQuoted {
		return strconv.Quote(string(v[:maxQuoted])) + fmt.Sprintf("... (%d bytes)", len(v))
	}
	return strconv.Quote(string(v))
}
