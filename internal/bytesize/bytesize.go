// Package bytesize parses and prints byte counts the way backupstore's
// command-line flags take them: 1048576, 512KiB, 8MiB, 1GiB (K, M, G and B
// are accepted too). It imports only the standard library.
package bytesize

import (
	"errors"
	"strconv"
	"strings"
)

var units = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}

// ErrSyntax means the text is not a byte count.
var ErrSyntax = errors.New("not a size (e.g. 1048576, 8MiB, 1GiB)")

// Parse reads a non-negative byte count.
func Parse(s string) (int64, error) {
	t, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, ErrSyntax
	}
	return n * mult, nil
}

// Format prints n with the largest binary unit that divides it.
func Format(n int64) string {
	for _, u := range units[:3] {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Flag is a flag.Value holding a byte count.
type Flag int64

// String implements flag.Value.
func (f *Flag) String() string { return Format(int64(*f)) }

// Set implements flag.Value.
func (f *Flag) Set(s string) error {
	n, err := Parse(s)
	if err != nil {
		return err
	}
	*f = Flag(n)
	return nil
}
