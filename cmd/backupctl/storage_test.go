package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	pb "backupstore/proto/backupstore/v1"
)

const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

func mustStatus(t *testing.T, code codes.Code, msg, reason string, details ...protoadapt.MessageV1) error {
	t.Helper()
	ds := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: "backupstore.v1"}}, details...)
	st, err := status.New(code, msg).WithDetails(ds...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func assertProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		t.Errorf("message differs\nwant: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
	}
}

func TestTokenIsSentAsBearerMetadata(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string
		args []string
		want []string // authorization values; nil for none
	}{
		{name: "flag", args: []string{"--token", "flag-token"}, want: []string{"Bearer flag-token"}},
		{name: "env", env: "env-token", want: []string{"Bearer env-token"}},
		{name: "flag beats env", env: "env-token", args: []string{"--token=flag-token"}, want: []string{"Bearer flag-token"}},
		{name: "file", env: "env-token", args: []string{"--token-file", tokenFile}, want: []string{"Bearer file-token"}},
		{name: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BACKUPCTL_TOKEN", tt.env)
			f := &fakeStorage{storages: sampleStorages(1)}
			addr := startFake(t, f)
			args := append([]string{"--server", addr}, tt.args...)
			r := runCLI(t, "", append(args, "storage", "get", "id-0")...)
			if r.code != 0 {
				t.Fatalf("%v", r)
			}
			_, md, _ := f.snapshot()
			if len(md) != 1 {
				t.Fatalf("calls = %d, want 1", len(md))
			}
			if got := md[0].Get("authorization"); !slices.Equal(got, tt.want) {
				t.Errorf("authorization = %q, want %q", got, tt.want)
			}
			if tt.env != "" && strings.Contains(r.stdout+r.stderr, tt.env) {
				t.Errorf("token printed:\n%v", r)
			}
		})
	}
}

func TestTokenAndTokenFileConflict(t *testing.T) {
	f := &fakeStorage{storages: sampleStorages(1)}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "--token", "a", "--token-file", "/dev/null", "storage", "get", "id-0")
	if r.code != exitUsage {
		t.Fatalf("want exit 2: %v", r)
	}
}

func TestGlobalFlagsAnywhere(t *testing.T) {
	storages := sampleStorages(1)
	for _, args := range [][]string{
		{"--server", "ADDR", "-o", "json", "storage", "get", "id-0"},
		{"storage", "--server", "ADDR", "--output=json", "get", "id-0"},
		{"storage", "get", "id-0", "--server", "ADDR", "-o", "json"},
		{"storage", "get", "-o", "json", "id-0", "--server=ADDR", "--timeout", "5s"},
		{"-o", "table", "storage", "get", "id-0", "--server", "ADDR", "-o", "json"}, // last wins
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			f := &fakeStorage{storages: storages}
			addr := startFake(t, f)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "ADDR", addr)
			}
			r := runCLI(t, "", args...)
			if r.code != 0 {
				t.Fatalf("%v", r)
			}
			var got pb.GetStorageResponse
			if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("stdout is not a GetStorageResponse: %v\n%v", err, r)
			}
			assertProtoEqual(t, &pb.GetStorageResponse{Storage: storages[0]}, &got)
			if !strings.HasPrefix(r.stdout, "{\n  \"storage\": {\n    \"id\": \"id-0\",\n") {
				t.Errorf("JSON not in the stable indented form:\n%s", r.stdout)
			}
			if !strings.Contains(r.stdout, `"status": "STORAGE_STATUS_AVAILABLE"`) {
				t.Errorf("enum not printed by name:\n%s", r.stdout)
			}
		})
	}
}

func TestRegisterReadsSecret(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"storage", "register", "--name", "acme", "--region", "eu-west-1", "--bucket", "acme-backups",
		"--access-key-id", "AKIAEXAMPLE", "--endpoint", "http://127.0.0.1:9000", "--path-style",
		"--prefix", "sf/backups", "--kms-key-id", "alias/backup", "--default"}
	tests := []struct {
		name  string
		env   string
		stdin string
		args  []string
	}{
		{name: "file", args: []string{"--secret-access-key-file", secretFile}},
		{name: "stdin", stdin: secret + "\n", args: []string{"--secret-access-key-stdin"}},
		{name: "stdin crlf", stdin: secret + "\r\n", args: []string{"--secret-access-key-stdin"}},
		{name: "stdin no newline", stdin: secret, args: []string{"--secret-access-key-stdin"}},
		{name: "env", env: secret},
		{name: "flag beats env", env: "not-this-one", args: []string{"--secret-access-key-file", secretFile}},
	}
	for _, tt := range tests {
		for _, output := range []string{"table", "json"} {
			t.Run(tt.name+"/"+output, func(t *testing.T) {
				t.Setenv(envSecret, tt.env)
				f := &fakeStorage{report: okReport}
				addr := startFake(t, f)
				args := append(append(slicesClone(base), tt.args...), "--server", addr, "-o", output)
				r := runCLI(t, tt.stdin, args...)
				if r.code != 0 {
					t.Fatalf("%v", r)
				}
				_, _, reqs := f.snapshot()
				want := &pb.RegisterStorageRequest{
					Name: "acme", Region: "eu-west-1", Bucket: "acme-backups", AccessKeyId: "AKIAEXAMPLE",
					SecretAccessKey: secret, Endpoint: "http://127.0.0.1:9000", PathStyle: true,
					Prefix: "sf/backups", KmsKeyId: "alias/backup", MakeDefault: true,
				}
				if len(reqs) != 1 {
					t.Fatalf("calls = %d, want 1", len(reqs))
				}
				assertProtoEqual(t, want, reqs[0])
				if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, "wJalr") {
					t.Errorf("secret printed:\n%v", r)
				}
				if output == "json" {
					var got pb.RegisterStorageResponse
					if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
						t.Fatalf("stdout is not a RegisterStorageResponse: %v\n%v", err, r)
					}
					if got.GetStorage().GetId() != "st-new" || len(got.GetReport().GetProbes()) != 3 {
						t.Errorf("unexpected response: %s", prototext.Format(&got))
					}
					return
				}
				for _, s := range []string{"ID:", "st-new", "acme-backups", "sf/backups", "Validation: OK", "AbortMultipartUpload", "WARNING"} {
					if !strings.Contains(r.stdout, s) {
						t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
					}
				}
			})
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func TestRegisterSecretErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	twoLines := filepath.Join(dir, "two")
	os.WriteFile(empty, []byte("\n"), 0o600)
	os.WriteFile(twoLines, []byte(secret+"\n\n"), 0o600)
	base := []string{"storage", "register", "--name", "acme", "--region", "eu-west-1", "--bucket", "b", "--access-key-id", "AK"}
	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{name: "no source"},
		{name: "file and stdin", stdin: secret, args: []string{"--secret-access-key-file", twoLines, "--secret-access-key-stdin"}},
		{name: "missing file", args: []string{"--secret-access-key-file", filepath.Join(dir, "nope")}},
		{name: "empty file", args: []string{"--secret-access-key-file", empty}},
		{name: "two lines", args: []string{"--secret-access-key-file", twoLines}},
		{name: "empty stdin", args: []string{"--secret-access-key-stdin"}},
		{name: "secret as flag", args: []string{"--secret-access-key", secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeStorage{}
			addr := startFake(t, f)
			r := runCLI(t, tt.stdin, append(append(slicesClone(base), tt.args...), "--server", addr)...)
			if r.code != exitUsage {
				t.Fatalf("want exit 2: %v", r)
			}
			if calls, _, _ := f.snapshot(); len(calls) != 0 {
				t.Errorf("calls = %v, want none", calls)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("secret printed:\n%v", r)
			}
		})
	}
}

func TestRegisterValidationFailed(t *testing.T) {
	failure := func(t *testing.T) error {
		return mustStatus(t, codes.FailedPrecondition, "storage validation failed: PutObject: AccessDenied",
			"STORAGE_VALIDATION_FAILED", failedReport,
			&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "AccessDenied", Subject: "PutObject", Description: "grant s3:PutObject"}}})
	}
	args := []string{"storage", "register", "--name", "acme", "--region", "eu-west-1", "--bucket", "acme-backups", "--access-key-id", "AK", "--secret-access-key-stdin"}

	t.Run("table", func(t *testing.T) {
		f := &fakeStorage{err: failure(t)}
		addr := startFake(t, f)
		r := runCLI(t, secret, append(args, "--server", addr)...)
		if r.code != exitBadRequest {
			t.Fatalf("want exit 4: %v", r)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q, want empty", r.stdout)
		}
		lines := strings.Split(r.stderr, "\n")
		if want := "backupctl: FailedPrecondition: storage validation failed: PutObject: AccessDenied [STORAGE_VALIDATION_FAILED]"; lines[0] != want {
			t.Errorf("first line = %q, want %q", lines[0], want)
		}
		wantRows := [][]string{
			{"API", "OUTCOME", "CODE", "HINT"},
			{"GetBucketLocation", "OK", "-", "-"},
			{"PutObject", "FAILED", "AccessDenied", "grant", "s3:PutObject", "on", "arn:aws:s3:::acme-backups/*"},
			{"GetObject", "SKIPPED", "-", "-"},
		}
		assertRows(t, r.stderr, wantRows)
		if strings.Contains(r.stderr, secret) {
			t.Errorf("secret printed")
		}
	})

	t.Run("json", func(t *testing.T) {
		f := &fakeStorage{err: failure(t)}
		addr := startFake(t, f)
		r := runCLI(t, secret, append(args, "--server", addr, "-o", "json")...)
		if r.code != exitBadRequest {
			t.Fatalf("want exit 4: %v", r)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q, want empty", r.stdout)
		}
		var got struct {
			Error struct {
				Code    string            `json:"code"`
				Message string            `json:"message"`
				Reason  string            `json:"reason"`
				Details []json.RawMessage `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.stderr), &got); err != nil {
			t.Fatalf("stderr is not JSON: %v\n%v", err, r)
		}
		if got.Error.Code != "FailedPrecondition" || got.Error.Reason != "STORAGE_VALIDATION_FAILED" || len(got.Error.Details) != 3 {
			t.Errorf("error = %+v", got.Error)
		}
		var rep pb.ValidationReport
		found := false
		for _, d := range got.Error.Details {
			var typed struct {
				Type string `json:"@type"`
			}
			json.Unmarshal(d, &typed)
			if typed.Type == "type.googleapis.com/backupstore.v1.ValidationReport" {
				found = true
				// Drop @type: the detail is an Any in JSON form.
				var m map[string]json.RawMessage
				json.Unmarshal(d, &m)
				delete(m, "@type")
				b, _ := json.Marshal(m)
				if err := protojson.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !found {
			t.Fatalf("no ValidationReport detail in %s", r.stderr)
		}
		assertProtoEqual(t, failedReport, &rep)
	})
}

// assertRows checks that the lines of out starting at the header row are
// want, compared field by field, and that the columns are aligned.
func assertRows(t *testing.T, out string, want [][]string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	start := -1
	for i, l := range lines {
		if len(strings.Fields(l)) > 0 && strings.Fields(l)[0] == want[0][0] && strings.Fields(l)[1] == want[0][1] {
			start = i
			break
		}
	}
	if start < 0 || start+len(want) > len(lines) {
		t.Fatalf("no table with header %q in:\n%s", want[0], out)
	}
	header := lines[start]
	for i, w := range want {
		line := lines[start+i]
		if got := strings.Fields(line); !slices.Equal(got, w) {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
		// Every column starts where its header does.
		col := strings.Index(header, want[0][1])
		if i > 0 && (len(line) <= col || line[col-1] != ' ' || line[col] == ' ') {
			t.Errorf("row %d not aligned with header:\n%s\n%s", i, header, line)
		}
	}
}

func TestBadRequestViolations(t *testing.T) {
	f := &fakeStorage{err: mustStatus(t, codes.InvalidArgument, "invalid request", "INVALID_ARGUMENT",
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "bucket", Description: "must follow S3 bucket naming rules"},
			{Field: "region", Description: "unknown region \"Ireland\"; use a code such as eu-west-1"},
		}})}
	addr := startFake(t, f)
	r := runCLI(t, secret, "--server", addr, "storage", "register", "--name", "a", "--region", "Ireland",
		"--bucket", "Bad_Bucket", "--access-key-id", "AK", "--secret-access-key-stdin")
	if r.code != exitBadRequest {
		t.Fatalf("want exit 4: %v", r)
	}
	for _, s := range []string{
		"backupctl: InvalidArgument: invalid request [INVALID_ARGUMENT]\n",
		"\n  bucket: must follow S3 bucket naming rules\n",
		"\n  region: unknown region \"Ireland\"; use a code such as eu-west-1\n",
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.NotFound, 3},
		{codes.InvalidArgument, 4},
		{codes.FailedPrecondition, 4},
		{codes.AlreadyExists, 4},
		{codes.OutOfRange, 4},
		{codes.Unavailable, 5},
		{codes.Aborted, 5},
		{codes.ResourceExhausted, 5},
		{codes.DeadlineExceeded, 5},
		{codes.Unauthenticated, 6},
		{codes.PermissionDenied, 6},
		{codes.Internal, 1},
		{codes.DataLoss, 1},
		{codes.Unknown, 1},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			f := &fakeStorage{err: status.Error(tt.code, "boom")}
			addr := startFake(t, f)
			for _, output := range []string{"table", "json"} {
				r := runCLI(t, "", "--server", addr, "-o", output, "storage", "get", "id-0")
				if r.code != tt.want {
					t.Errorf("-o %s: exit %d, want %d\n%v", output, r.code, tt.want, r)
				}
				if r.stdout != "" {
					t.Errorf("stdout = %q, want empty", r.stdout)
				}
				if output == "table" && !strings.HasPrefix(r.stderr, "backupctl: "+tt.code.String()+": boom") {
					t.Errorf("stderr = %q", r.stderr)
				}
			}
		})
	}
}

func TestNotFoundFromServer(t *testing.T) {
	f := &fakeStorage{storages: sampleStorages(1)}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "storage", "get", "nope")
	if r.code != exitNotFound || !strings.Contains(r.stderr, "NotFound: storage nope not found") {
		t.Fatalf("want exit 3: %v", r)
	}
}

func TestServerUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	r := runCLI(t, "", "--server", addr, "storage", "list")
	if r.code != exitRetryable || !strings.HasPrefix(r.stderr, "backupctl: Unavailable: ") {
		t.Fatalf("want exit 5 Unavailable: %v", r)
	}
}

func TestTimeoutPerCall(t *testing.T) {
	f := &fakeStorage{block: true}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "--timeout", "200ms", "storage", "get", "id-0")
	if r.code != exitRetryable || !strings.HasPrefix(r.stderr, "backupctl: DeadlineExceeded: ") {
		t.Fatalf("want exit 5 DeadlineExceeded: %v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{},
		{"nope"},
		{"--bogus", "storage", "list"},
		{"storage"},
		{"storage", "nope"},
		{"storage", "list", "--bogus"},
		{"storage", "list", "extra"},
		{"storage", "list", "--page-size", "-1"},
		{"storage", "list", "--page-size", "1001"},
		{"storage", "list", "--page-size", "ten"},
		{"storage", "list", "-o", "yaml"},
		{"storage", "list", "--timeout", "soon"},
		{"storage", "get"},
		{"storage", "get", "a", "b"},
		{"storage", "get", ""},
		{"storage", "validate"},
		{"storage", "delete"},
		{"storage", "set-default"},
		{"storage", "rotate", "--access-key-id", "AK"},
		{"storage", "rotate", "id-0"},
		{"storage", "register", "--name", "a"},
		{"storage", "policy"},
		{"storage", "policy", "id-0", "--bucket", "b"},
		{"storage", "policy", "id-0", "--prefix", "p"},
		{"storage", "policy", "a", "b"},
		{"help", "nope"},
		{"storage", "help", "nope"},
		{"--tls-ca", "/nonexistent/ca.pem", "storage", "list"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Setenv(envSecret, secret)
			f := &fakeStorage{storages: sampleStorages(1)}
			addr := startFake(t, f)
			r := runCLI(t, "", append(args, "--server", addr)...)
			if len(args) == 0 {
				r = runCLI(t, "")
			}
			if r.code != exitUsage {
				t.Fatalf("want exit 2: %v", r)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty", r.stdout)
			}
			if !strings.Contains(r.stderr, "backupctl") || !strings.Contains(r.stderr, "-h' for usage") {
				t.Errorf("stderr lacks the hint:\n%s", r.stderr)
			}
			if calls, _, _ := f.snapshot(); len(calls) != 0 {
				t.Errorf("calls = %v, want none", calls)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"Usage:", "storage", "--server", "Exit codes:", "6  authentication"}},
		{[]string{"--help"}, []string{"Usage:"}},
		{[]string{"help"}, []string{"Usage:"}},
		{[]string{"storage", "-h"}, []string{"register", "list", "get", "validate", "rotate", "set-default", "delete", "policy"}},
		{[]string{"storage", "help"}, []string{"set-default"}},
		{[]string{"help", "storage"}, []string{"set-default"}},
		{[]string{"storage", "register", "-h"}, []string{"Usage: backupctl storage register --name N", "--secret-access-key-file", "BACKUPCTL_SECRET_ACCESS_KEY"}},
		{[]string{"storage", "register", "--name", "x", "--help"}, []string{"--kms-key-id"}},
		{[]string{"help", "storage", "rotate"}, []string{"Usage: backupctl storage rotate ID"}},
		{[]string{"storage", "policy", "-h"}, []string{"--kms-key-arn"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("BACKUPCTL_TOKEN", "env-token-must-not-show")
			r := runCLI(t, "", tt.args...)
			if r.code != 0 {
				t.Fatalf("want exit 0: %v", r)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty", r.stdout)
			}
			for _, s := range tt.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("usage lacks %q:\n%s", s, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "env-token-must-not-show") {
				t.Errorf("usage shows the token")
			}
		})
	}
}

func TestListFollowsPageTokens(t *testing.T) {
	storages := sampleStorages(5)
	f := &fakeStorage{storages: storages}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "storage", "list", "--page-size", "2")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	calls, _, reqs := f.snapshot()
	if len(calls) != 3 {
		t.Fatalf("calls = %v, want 3 ListStorages", calls)
	}
	for i, tok := range []string{"", "2", "4"} {
		assertProtoEqual(t, &pb.ListStoragesRequest{PageSize: 2, PageToken: tok}, reqs[i])
	}
	assertRows(t, r.stdout, [][]string{
		{"ID", "NAME", "BUCKET", "REGION", "STATUS", "DEFAULT", "VALIDATED"},
		{"id-0", "storage-0", "bucket-0", "eu-west-1", "AVAILABLE", "no", "2026-03-01T12:00:00Z"},
		{"id-1", "storage-1", "bucket-1", "eu-west-1", "UNAVAILABLE", "yes", "-"},
		{"id-2", "storage-2", "bucket-2", "eu-west-1", "AVAILABLE", "no", "2026-03-01T12:00:00Z"},
		{"id-3", "storage-3", "bucket-3", "eu-west-1", "UNAVAILABLE", "no", "-"},
		{"id-4", "storage-4", "bucket-4", "eu-west-1", "AVAILABLE", "no", "2026-03-01T12:00:00Z"},
	})
	if n := strings.Count(r.stdout, "\n"); n != 6 {
		t.Errorf("stdout has %d lines, want 6:\n%s", n, r.stdout)
	}

	t.Run("json", func(t *testing.T) {
		r := runCLI(t, "", "--server", addr, "storage", "list", "--page-size=2", "-o", "json")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		var got pb.ListStoragesResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout is not a ListStoragesResponse: %v\n%v", err, r)
		}
		assertProtoEqual(t, &pb.ListStoragesResponse{Storages: storages}, &got)
	})

	t.Run("one page", func(t *testing.T) {
		r := runCLI(t, "", "--server", addr, "storage", "list", "--page-size=2", "--all=false", "--page-token", "2", "-o", "json")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		var got pb.ListStoragesResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatal(err)
		}
		assertProtoEqual(t, &pb.ListStoragesResponse{Storages: storages[2:4], NextPageToken: "4"}, &got)

		r = runCLI(t, "", "--server", addr, "storage", "list", "--page-size=2", "--all=false")
		if r.code != 0 || strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "--page-token 2") {
			t.Errorf("one page in table form: %v", r)
		}
	})

	t.Run("repeated token", func(t *testing.T) {
		f := &fakeStorage{storages: storages, loopToken: true}
		addr := startFake(t, f)
		r := runCLI(t, "", "--server", addr, "storage", "list")
		if r.code != exitError {
			t.Fatalf("want exit 1: %v", r)
		}
	})

	t.Run("empty", func(t *testing.T) {
		addr := startFake(t, &fakeStorage{})
		r := runCLI(t, "", "--server", addr, "storage", "list")
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No storages") {
			t.Errorf("%v", r)
		}
	})
}

func TestGetTable(t *testing.T) {
	storages := sampleStorages(2)
	f := &fakeStorage{storages: storages}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "storage", "get", "id-0")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, s := range []string{
		"ID:                      id-0\n",
		"Name:                    storage-0\n",
		"Bucket:                  bucket-0\n",
		"Access key ID:           AKIAEXAMPLE0\n",
		"Status:                  AVAILABLE\n",
		"Abort multipart upload:  yes\n",
		"Last validation: OK at 2026-03-01T12:00:00Z\n",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	assertRows(t, r.stdout, [][]string{
		{"API", "OUTCOME", "CODE", "HINT"},
		{"GetBucketLocation", "OK", "-", "-"},
		{"PutObject", "OK", "-", "-"},
		{"AbortMultipartUpload", "WARNING", "AccessDenied", "add", "s3:AbortMultipartUpload", "or", "a", "lifecycle", "rule"},
	})
}

func TestValidate(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		addr := startFake(t, &fakeStorage{storages: sampleStorages(1), report: okReport})
		r := runCLI(t, "", "--server", addr, "storage", "validate", "id-0")
		if r.code != 0 || !strings.Contains(r.stdout, "Validation: OK") {
			t.Fatalf("%v", r)
		}
	})
	t.Run("failing report exits 4", func(t *testing.T) {
		addr := startFake(t, &fakeStorage{storages: sampleStorages(1), report: failedReport})
		r := runCLI(t, "", "--server", addr, "storage", "validate", "id-0")
		if r.code != exitBadRequest {
			t.Fatalf("want exit 4: %v", r)
		}
		if !strings.Contains(r.stdout, "Validation: FAILED") || !strings.Contains(r.stderr, "failed validation") {
			t.Errorf("%v", r)
		}
		assertRows(t, r.stdout, [][]string{{"API", "OUTCOME", "CODE", "HINT"}, {"GetBucketLocation", "OK", "-", "-"}})

		r = runCLI(t, "", "--server", addr, "storage", "validate", "id-0", "-o", "json")
		var got pb.ValidateStorageResponse
		if r.code != exitBadRequest || protojson.Unmarshal([]byte(r.stdout), &got) != nil || got.GetReport().GetOk() {
			t.Errorf("json: %v", r)
		}
	})
}

func TestRotate(t *testing.T) {
	f := &fakeStorage{storages: sampleStorages(1), report: okReport}
	addr := startFake(t, f)
	r := runCLI(t, secret+"\n", "--server", addr, "storage", "rotate", "id-0", "--access-key-id", "AKIANEW", "--secret-access-key-stdin")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	_, _, reqs := f.snapshot()
	assertProtoEqual(t, &pb.UpdateStorageCredentialsRequest{Id: "id-0", AccessKeyId: "AKIANEW", SecretAccessKey: secret}, reqs[0])
	if !strings.Contains(r.stdout, "AKIANEW") || strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("%v", r)
	}

	// A rejected rotation prints the report and exits 4.
	f = &fakeStorage{storages: sampleStorages(1), err: mustStatus(t, codes.FailedPrecondition, "storage validation failed", "STORAGE_VALIDATION_FAILED", failedReport)}
	addr = startFake(t, f)
	t.Setenv(envSecret, secret)
	r = runCLI(t, "", "--server", addr, "storage", "rotate", "--access-key-id", "AKIANEW", "id-0")
	if r.code != exitBadRequest || !strings.Contains(r.stderr, "PutObject") || strings.Contains(r.stderr, secret) {
		t.Errorf("want exit 4 with report: %v", r)
	}
}

func TestSetDefaultAndDelete(t *testing.T) {
	f := &fakeStorage{storages: sampleStorages(1)}
	addr := startFake(t, f)
	r := runCLI(t, "", "--server", addr, "storage", "set-default", "id-0")
	if r.code != 0 || !strings.Contains(r.stdout, "Default:                 yes") {
		t.Errorf("set-default: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "storage", "delete", "id-0")
	if r.code != 0 || r.stdout != "Deleted storage id-0.\n" {
		t.Errorf("delete: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "storage", "delete", "id-0", "-o", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("delete json: %v", r)
	}
	r = runCLI(t, "", "--server", addr, "storage", "delete", "id-9")
	if r.code != exitNotFound {
		t.Errorf("delete unknown: %v", r)
	}
	calls, _, reqs := f.snapshot()
	if want := []string{"SetDefaultStorage", "DeleteStorage", "DeleteStorage", "DeleteStorage"}; !slices.Equal(calls, want) {
		t.Errorf("calls = %v, want %v", calls, want)
	}
	assertProtoEqual(t, &pb.SetDefaultStorageRequest{Id: "id-0"}, reqs[0])
}

func TestPolicy(t *testing.T) {
	policy := &pb.GetIamPolicyResponse{
		PolicyJson:    "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}",
		Advice:        []string{"Add s3:AbortMultipartUpload.", "Add a lifecycle rule AbortIncompleteMultipartUpload."},
		LifecycleJson: "{\"Rules\": []}\n",
	}
	f := &fakeStorage{policy: policy}
	addr := startFake(t, f)

	r := runCLI(t, "", "--server", addr, "storage", "policy", "--bucket", "acme-backups", "--kms-key-arn", "arn:aws:kms:eu-west-1:1:key/k", "--prefix", "sf")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if !strings.HasPrefix(r.stdout, policy.PolicyJson+"\n\nAdvice:\n  - Add s3:AbortMultipartUpload.\n  - Add a lifecycle rule AbortIncompleteMultipartUpload.\n\nLifecycle") ||
		!strings.HasSuffix(r.stdout, ":\n{\"Rules\": []}\n") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	r = runCLI(t, "", "--server", addr, "storage", "policy", "id-0", "-o", "json")
	var got pb.GetIamPolicyResponse
	if r.code != 0 || protojson.Unmarshal([]byte(r.stdout), &got) != nil {
		t.Fatalf("%v", r)
	}
	assertProtoEqual(t, policy, &got)

	_, _, reqs := f.snapshot()
	assertProtoEqual(t, &pb.GetIamPolicyRequest{Bucket: "acme-backups", KmsKeyArn: "arn:aws:kms:eu-west-1:1:key/k", Prefix: "sf"}, reqs[0])
	assertProtoEqual(t, &pb.GetIamPolicyRequest{StorageId: "id-0"}, reqs[1])
}

func TestServerTextIsCleaned(t *testing.T) {
	storages := sampleStorages(1)
	storages[0].StatusMessage = "bad\x1b[2J\ttab\nnewline"
	addr := startFake(t, &fakeStorage{storages: storages})
	r := runCLI(t, "", "--server", addr, "storage", "get", "id-0")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `bad\x1b[2J\ttab\nnewline`) {
		t.Errorf("control characters not escaped:\n%q", r.stdout)
	}
}
