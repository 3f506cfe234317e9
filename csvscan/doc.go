// Package csvscan is the hot path of record ingest: a streaming, quote-aware scanner and validator
// for Salesforce CSV record exports (RFC 4180, UTF-8, a header row of field API names with an Id
// column).
//
// Input arrives in chunks of any size (gRPC messages) that need not align with rows. The scanner
// finds row boundaries, checks each row strictly (quoting, width, UTF-8, field and row size),
// normalises the Id column and the requested reference columns to 18-character ids, and hands each
// row to a callback with its exact input bytes, so that the header followed by every row's Raw
// reproduces the input byte for byte. Memory is bounded by Limits.MaxRowBytes: a row that spans
// chunks is copied into a carry buffer of at most that size; every other row is passed as a
// sub-slice of the caller's chunk, without copying.
//
// What it accepts, precisely:
//   - Rows end in LF or CRLF (mixed in one file is fine); the last row may lack a terminator, and a
//     lone CR just before the end of input is taken as its terminator, as encoding/csv does.
//     Inside a quoted field CR and LF are data; a CR elsewhere that is not part of a CRLF is data
//     too (encoding/csv agrees).
//   - A quoted field starts with a quote, doubles the quotes it contains, and ends with a quote
//     followed by a comma or the end of the row. A quote anywhere else is BAD_QUOTE (as
//     encoding/csv with LazyQuotes false).
//   - Every row has as many fields as the header, except a blank line (its terminator alone: a
//     hand-edited Data Loader export may end with one). A blank line is passed to the callback as
//     a Row with Blank set and its exact bytes, so that nothing of the input is lost, but it holds
//     no record: no id, not to be indexed or counted. It takes a row number, as the empty row a
//     spreadsheet shows. (encoding/csv skips blank lines; the scanner keeps them.) A blank line
//     before the header is an empty header (BAD_HEADER).
//   - A UTF-8 byte order mark before the header is kept in Header but ignored for column names.
//   - Column names are matched case-insensitively (Salesforce API names are, and Data Loader
//     writes them upper-case): "ID" is the Id column, and "Name" and "NAME" are duplicates.
//   - A field's size counts its raw bytes, quotes included; a row's, its terminator included.
//
// Ids come out as sfid.ID values (the 18-character form in a fixed-size array) rather than
// strings, so that scanning allocates nothing per row; ID.String costs one small allocation when
// a string is needed (a few percent of the scan's time; see BenchmarkScanner).
//
// Errors are *RowError values naming the row (1-based, the header being row 1, counting rows
// rather than lines: a quoted field may hold line breaks), the column where one applies, and a stable reason code. The first error
// stops the scan: Feed and Close keep returning it. Duplicate ids are not checked here: the index
// layer does that in bounded memory.
//
// RowSkipper finds the end of a stream's first row by the same quote-aware rule, however the
// stream is cut: readers of stored chunks skip the header row with it, never at the first LF
// (a quoted header column may hold one, although ingest refuses such headers).
//
// csvscan imports sfid and the standard library only; it knows nothing of gRPC, storage or the
// catalog. A RowError is the caller's to map (to InvalidArgument with a field violation naming
// row and column, and the reason in ErrorInfo).
package csvscan
