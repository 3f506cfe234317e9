package registry

import (
	"net"
	"net/url"
	"regexp"
	"strings"

	"backupstore/fault"
)

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	anyRegion  = regexp.MustCompile(`[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	ipv4RE     = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)
	prefixElRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	kmsRE      = regexp.MustCompile(`^[A-Za-z0-9:/_-]+$`)
)

// checkName validates a storage name.
func checkName(name string) *fault.Violation {
	if name == "" {
		return &fault.Violation{Field: "name", Description: "required"}
	}
	if !nameRE.MatchString(name) {
		return &fault.Violation{Field: "name", Description: "must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"}
	}
	return nil
}

// checkRegion validates a region code; a display name gets a hint with the
// code it contains, if any.
func checkRegion(region string) *fault.Violation {
	if region == "" {
		return &fault.Violation{Field: "region", Description: "required: the region code, e.g. us-east-1"}
	}
	if regionRE.MatchString(region) {
		return nil
	}
	desc := "must be a region code such as us-east-1, not a display name"
	if code := anyRegion.FindString(strings.ToLower(region)); code != "" {
		desc += "; did you mean " + code + "?"
	}
	return &fault.Violation{Field: "region", Description: desc}
}

// checkBucket applies S3's general-purpose bucket naming rules.
func checkBucket(b string) *fault.Violation {
	bad := func(why string) *fault.Violation {
		return &fault.Violation{Field: "bucket", Description: why + " (S3 bucket naming rules)"}
	}
	switch {
	case b == "":
		return &fault.Violation{Field: "bucket", Description: "required"}
	case len(b) < 3 || len(b) > 63:
		return bad("must be 3 to 63 characters long")
	case !bucketRE.MatchString(b):
		return bad("may contain only lowercase letters, digits, '.' and '-', and must begin and end with a letter or digit")
	case strings.Contains(b, ".."), strings.Contains(b, ".-"), strings.Contains(b, "-."):
		return bad("must not contain '..', '.-' or '-.'")
	case ipv4RE.MatchString(b):
		return bad("must not be formatted as an IP address")
	case strings.HasPrefix(b, "xn--"), strings.HasPrefix(b, "sthree-"), strings.HasPrefix(b, "amzn-s3-demo-"):
		return bad("must not start with xn--, sthree- or amzn-s3-demo-")
	case strings.HasSuffix(b, "-s3alias"), strings.HasSuffix(b, "--ol-s3"), strings.HasSuffix(b, "--x-s3"), strings.HasSuffix(b, ".mrap"):
		return bad("must not end with -s3alias, --ol-s3, --x-s3 or .mrap")
	}
	return nil
}

func checkAccessKeyID(field, id string) *fault.Violation {
	if id == "" {
		return &fault.Violation{Field: field, Description: "required"}
	}
	if len(id) > 128 || strings.IndexFunc(id, notPrintableASCII) >= 0 {
		return &fault.Violation{Field: field, Description: "must be at most 128 printable ASCII characters without spaces"}
	}
	return nil
}

// checkSecret never echoes the secret.
func checkSecret(field, s string) *fault.Violation {
	if s == "" {
		return &fault.Violation{Field: field, Description: "required"}
	}
	if len(s) > 256 || strings.IndexFunc(s, notPrintableASCII) >= 0 {
		return &fault.Violation{Field: field, Description: "must be at most 256 printable ASCII characters without spaces (value not shown)"}
	}
	return nil
}

func notPrintableASCII(r rune) bool { return r <= ' ' || r > '~' }

func checkEndpoint(e string) *fault.Violation {
	if e == "" {
		return nil
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return &fault.Violation{Field: "endpoint", Description: "must be an absolute URL http(s)://host[:port] without path, query or credentials"}
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return &fault.Violation{Field: "endpoint", Description: "empty port"}
	}
	return nil
}

func checkPrefix(p string) *fault.Violation {
	if p == "" {
		return nil
	}
	if len(p) > 256 {
		return &fault.Violation{Field: "prefix", Description: "must be at most 256 characters"}
	}
	for _, el := range strings.Split(p, "/") {
		if !prefixElRE.MatchString(el) || el == "." || el == ".." {
			return &fault.Violation{Field: "prefix", Description: "must be path elements of letters, digits, '.', '_' or '-' separated by single '/', without leading or trailing '/', '.' or '..'"}
		}
	}
	return nil
}

func checkKMS(k string) *fault.Violation {
	if k == "" || (len(k) <= 2048 && kmsRE.MatchString(k)) {
		return nil
	}
	return &fault.Violation{Field: "kms_key_id", Description: "must be a KMS key id, alias or ARN"}
}

func checkID(id string) *fault.Violation {
	if id == "" {
		return &fault.Violation{Field: "id", Description: "required"}
	}
	return nil
}

// collect returns an InvalidArgument error for the non-nil violations, or nil.
func collect(vs ...*fault.Violation) error {
	var out []fault.Violation
	for _, v := range vs {
		if v != nil {
			out = append(out, *v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fault.Invalid(out...)
}
