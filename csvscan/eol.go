package csvscan

import "bytes"

// LineEnding is the line ending of a header row: CRLF or LF (LF when the
// header has none, as a header-only chunk at the end of its input may not).
// Readers put it between two units of whole rows when the first lacks one.
func LineEnding(header []byte) []byte {
	if bytes.HasSuffix(header, []byte("\r\n")) || bytes.HasSuffix(header, []byte("\r")) {
		return []byte("\r\n")
	}
	return []byte("\n")
}

// OwedEOL is what must follow rows b, which should end with a line ending,
// before more rows: nothing after LF, LF after a lone CR, eol otherwise.
// The scanner accepts a last row without a line ending, so a stored chunk
// may end without one; a reader that joins chunks (the server's plain
// stream, the client's decoder of a zstd stream) puts this between them, or
// two rows would come back glued into one.
func OwedEOL(b, eol []byte) []byte {
	switch {
	case len(b) == 0 || b[len(b)-1] == '\n':
		return nil
	case b[len(b)-1] == '\r':
		return []byte("\n")
	}
	return eol
}
