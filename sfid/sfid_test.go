package sfid

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		reason   string // "" when valid
	}{
		{in: "001000000000001", want: "001000000000001AAA"},
		{in: "0015000000XyZab", want: "0015000000XyZabAAF"},
		// Published examples of the conversion (Salesforce CASESAFEID).
		{in: "a0RE000000IJmcN", want: "a0RE000000IJmcNMAT"},
		{in: "a01M00000062mPg", want: "a01M00000062mPgIAI"},
		{in: "001M000000qfPyS", want: "001M000000qfPySIAU"},
		{in: "a0FE000000D6r3F", want: "a0FE000000D6r3FMAR"},
		{in: "0F9E000000092w2", want: "0F9E000000092w2KAA"},
		{in: "a0D30000001n7Pi", want: "a0D30000001n7PiEAI"},
		{in: "0019000000B98de", want: "0019000000B98deAAB"},
		{in: "aaaaaaaaaaaaaaa", want: "aaaaaaaaaaaaaaaAAA"},
		{in: "AAAAAAAAAAAAAAA", want: "AAAAAAAAAAAAAAA555"},
		// 18-character ids: suffix compared case-insensitively, returned upper-case.
		{in: "a0RE000000IJmcNMAT", want: "a0RE000000IJmcNMAT"},
		{in: "a0RE000000IJmcNmat", want: "a0RE000000IJmcNMAT"},
		{in: "a0RE000000IJmcNmAt", want: "a0RE000000IJmcNMAT"},
		{in: "AAAAAAAAAAAAAAA555", want: "AAAAAAAAAAAAAAA555"},
		// Rejected.
		{in: "", reason: ReasonSyntax},
		{in: "00100000000000", reason: ReasonSyntax},
		{in: "0010000000000011", reason: ReasonSyntax},
		{in: "001000000000001AAAA", reason: ReasonSyntax},
		{in: "00100000000000-", reason: ReasonSyntax},
		{in: "001000000000001AA-", reason: ReasonSyntax},
		{in: "00100000000000é", reason: ReasonSyntax}, // 16 bytes
		{in: "0010000000000é", reason: ReasonSyntax},  // 15 bytes, not ASCII
		{in: " 01000000000001", reason: ReasonSyntax},
		{in: "001000000000001AAB", reason: ReasonChecksum},
		{in: "a0RE000000IJMCNMAT", reason: ReasonChecksum}, // case of the first 15 changed
		{in: "001000000000001AA9", reason: ReasonChecksum}, // 9 is never a suffix character
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Normalize(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
				}
				if !Valid(tt.in) {
					t.Errorf("Valid(%q) = false", tt.in)
				}
				id, err := ParseBytes([]byte(tt.in))
				if err != nil || id.String() != tt.want {
					t.Errorf("ParseBytes(%q) = %q, %v", tt.in, id, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Reason != tt.reason {
				t.Fatalf("Normalize(%q) = %q, %v; want *Error with reason %q", tt.in, got, err, tt.reason)
			}
			if got != "" || Valid(tt.in) {
				t.Errorf("Normalize(%q) = %q, Valid = %v; want \"\", false", tt.in, got, Valid(tt.in))
			}
			if !strings.Contains(err.Error(), tt.reason[:20]) && !strings.Contains(err.Error(), "checksum suffix") {
				t.Errorf("message %q does not say why", err)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Normalize("001000000000001AAB")
	want := `"001000000000001AAB" is not a Salesforce id: checksum suffix "AAB" does not match the first 15 characters (expected "AAA")`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	_, err = Parse(strings.Repeat("x", 1000))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("a long input must be cut in the message: %d bytes", len(err.Error()))
	}
}

func TestID(t *testing.T) {
	var z ID
	if !z.IsZero() || z.String() != "" {
		t.Errorf("zero ID: IsZero %v, String %q", z.IsZero(), z.String())
	}
	id, err := Parse("001000000000001")
	if err != nil || id.IsZero() || id.String() != "001000000000001AAA" {
		t.Errorf("Parse: %q, %v", id, err)
	}
}

func TestNormalizeAllocs(t *testing.T) {
	const norm = "a0RE000000IJmcNMAT"
	b := []byte(norm)
	if n := testing.AllocsPerRun(100, func() {
		if s, _ := Normalize(norm); s != norm {
			t.Fatal(s)
		}
	}); n != 0 {
		t.Errorf("Normalize of a normal-form id: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseBytes(b) }); n != 0 {
		t.Errorf("ParseBytes: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Normalize("a0RE000000IJmcN") }); n != 1 {
		t.Errorf("Normalize of a 15-character id: %v allocations, want 1", n)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"001000000000001", "0015000000XyZab", "a0RE000000IJmcNmat", "001000000000001AAB", "", "x", "AAAAAAAAAAAAAAA555"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := Normalize(in)
		if Valid(in) != (err == nil) {
			t.Fatalf("Valid(%q) = %v but Normalize error = %v", in, Valid(in), err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(n) != 18 || n[:15] != in[:15] {
			t.Fatalf("Normalize(%q) = %q: first 15 characters not preserved", in, n)
		}
		if n2, err := Normalize(n); err != nil || n2 != n {
			t.Fatalf("Normalize(Normalize(%q)) = %q, %v; want %q", in, n2, err, n)
		}
		if n3, err := Normalize(in[:15]); err != nil || n3 != n {
			t.Fatalf("Normalize(%q[:15]) = %q, %v; want %q", in, n3, err, n)
		}
		if !strings.EqualFold(n, in[:15]+strings.ToUpper(n[15:])) || strings.ToUpper(n[15:]) != n[15:] {
			t.Fatalf("suffix of %q not upper-case", n)
		}
	})
}

func BenchmarkParseBytes(b *testing.B) {
	in := []byte("a0RE000000IJmcNMAT")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := ParseBytes(in); err != nil {
			b.Fatal(err)
		}
	}
}
