package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

// envSecret is the environment variable a secret access key may come from.
const envSecret = "BACKUPCTL_SECRET_ACCESS_KEY"

const secretHelp = `The secret access key is never a flag value (flags show in ps and shell
history). It is read from --secret-access-key-file FILE, from stdin with
--secret-access-key-stdin, or from env ` + envSecret + `, in that
order; one trailing newline is removed.`

func storageGroup() *group {
	return &group{
		name:    "storage",
		summary: "register and manage the S3 buckets backups are written to",
		commands: []*command{
			{
				name:    "register",
				args:    "--name N --region R --bucket B --access-key-id K [--secret-access-key-file F | --secret-access-key-stdin] [--endpoint URL] [--path-style] [--prefix P] [--kms-key-id K] [--default]",
				summary: "validate a bucket's credentials and register it",
				help: `Register probes every S3 API the service will use with the given credentials
and saves the storage only if all required probes pass. It prints the storage
and the validation report, one probe per line. When a probe fails nothing is
saved; the report is printed to stderr and the exit code is 4.

` + secretHelp,
				run: storageRegister,
			},
			{
				name:    "list",
				args:    "[--page-size N] [--all=false [--page-token T]]",
				summary: "list the storages, ordered by name",
				help: `List prints the tenant's storages, ordered by name, following every page.
With --all=false it prints one page; the token of the next page goes to stderr
(table) or is the response's nextPageToken (-o json).`,
				run: storageList,
			},
			{
				name:    "get",
				args:    "ID",
				summary: "show one storage and its last validation report",
				help:    "Get prints one storage's fields and the report of its last validation.",
				run:     storageGet,
			},
			{
				name:    "validate",
				args:    "ID",
				summary: "re-run the probes of a storage now",
				help: `Validate re-runs the probes of a storage and records the outcome. A failing
probe is not an RPC error, but validate exits 4 when the report is not OK
(after printing it), so that scripts can rely on the exit code.`,
				run: storageValidate,
			},
			{
				name:    "rotate",
				args:    "ID --access-key-id K [--secret-access-key-file F | --secret-access-key-stdin]",
				summary: "validate and replace a storage's credentials",
				help: `Rotate validates the new credentials exactly as register does and only then
replaces the old ones. When a probe fails the old credentials stay in force;
the report is printed to stderr and the exit code is 4.

` + secretHelp,
				run: storageRotate,
			},
			{
				name:    "set-default",
				args:    "ID",
				summary: "make a storage the tenant's default",
				help:    "Set-default makes the storage the tenant's default (and no other storage).",
				run:     storageSetDefault,
			},
			{
				name:    "delete",
				args:    "ID",
				summary: "remove a storage from the catalog",
				help: `Delete removes a storage from the catalog; the bucket is not touched. It
fails (exit 4) while any backup references the storage.`,
				run: storageDelete,
			},
			{
				name:    "policy",
				args:    "(ID | --bucket B [--kms-key-arn ARN] [--prefix P])",
				summary: "print the least-privilege IAM policy for a bucket",
				help: `Policy prints the least-privilege IAM policy the service needs, for a
registered storage (its bucket, prefix and KMS key) or for a bucket, then the
advice for what the policy deliberately leaves out and a lifecycle
configuration that aborts incomplete multipart uploads. For the policy alone:
  backupctl storage policy --bucket B -o json | jq -r .policyJson`,
				run: storagePolicy,
			},
		},
	}
}

// secretSource is where a command reads a secret access key from.
type secretSource struct {
	file  string
	stdin bool
}

func (s *secretSource) bind(fs *flag.FlagSet) {
	fs.StringVar(&s.file, "secret-access-key-file", "", "read the secret access key from `file`")
	fs.BoolVar(&s.stdin, "secret-access-key-stdin", false, "read the secret access key from stdin")
}

// read returns the secret. Its errors never contain the secret.
func (s *secretSource) read(c *cli, path string) (string, error) {
	var raw []byte
	switch {
	case s.file != "" && s.stdin:
		return "", usagef(path, "--secret-access-key-file and --secret-access-key-stdin are mutually exclusive")
	case s.file != "":
		b, err := readSmallFile(s.file)
		if err != nil {
			return "", usagef(path, "--secret-access-key-file: %v", err)
		}
		raw = b
	case s.stdin:
		if f, ok := c.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintln(c.stderr, "backupctl: reading the secret access key from stdin until EOF (Ctrl-D); it is echoed")
			}
		}
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxInputFile+1))
		if err != nil {
			return "", usagef(path, "--secret-access-key-stdin: %v", err)
		}
		if len(b) > maxInputFile {
			return "", usagef(path, "--secret-access-key-stdin: more than %d bytes", maxInputFile)
		}
		raw = b
	default:
		v := c.getenv(envSecret)
		if v == "" {
			return "", usagef(path, "missing secret access key: use --secret-access-key-file FILE, --secret-access-key-stdin or env %s", envSecret)
		}
		raw = []byte(v)
	}
	secret := string(raw)
	if t, ok := strings.CutSuffix(secret, "\n"); ok {
		secret = strings.TrimSuffix(t, "\r")
	}
	switch {
	case secret == "":
		return "", usagef(path, "the secret access key is empty")
	case strings.ContainsAny(secret, "\r\n"):
		return "", usagef(path, "the secret access key spans several lines")
	}
	return secret, nil
}

// oneID returns the single positional storage ID.
func oneID(cmd *command, pos []string) (string, error) { return oneArg(cmd, pos, "storage ID") }

// oneArg returns the single positional argument, a what ("storage ID").
func oneArg(cmd *command, pos []string, what string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usagef(cmd.path(), "missing %s", what)
	case len(pos) > 1:
		return "", usagef(cmd.path(), "want one %s, got %d arguments", what, len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return "", usagef(cmd.path(), "empty %s", what)
	}
	return pos[0], nil
}

// noArgs rejects positional arguments.
// parseNoArgs parses the flags of a command that takes no arguments.
func (c *cli) parseNoArgs(cmd *command, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	return noArgs(cmd, pos)
}

func noArgs(cmd *command, pos []string) error {
	if len(pos) > 0 {
		return usagef(cmd.path(), "unexpected argument %q", pos[0])
	}
	return nil
}

// required reports the missing ones of the named flag values together.
func required(cmd *command, flags ...[2]string) error {
	var missing []string
	for _, f := range flags {
		if strings.TrimSpace(f[1]) == "" {
			missing = append(missing, "--"+f[0])
		}
	}
	if len(missing) > 0 {
		return usagef(cmd.path(), "missing %s", strings.Join(missing, ", "))
	}
	return nil
}

func storageRegister(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.RegisterStorageRequest{}
	fs.StringVar(&req.Name, "name", "", "storage `name`, unique per tenant: [A-Za-z0-9][A-Za-z0-9._-]{0,62} (required)")
	fs.StringVar(&req.Region, "region", "", "bucket `region` code, e.g. us-east-1 (required)")
	fs.StringVar(&req.Bucket, "bucket", "", "`bucket` name (required)")
	fs.StringVar(&req.AccessKeyId, "access-key-id", "", "access key `id` (required)")
	var secret secretSource
	secret.bind(fs)
	fs.StringVar(&req.Endpoint, "endpoint", "", "S3-compatible endpoint `url`, http(s)://host[:port]; empty for AWS")
	fs.BoolVar(&req.PathStyle, "path-style", false, "path-style addressing (bucket in the path), for S3-compatible servers")
	fs.StringVar(&req.Prefix, "prefix", "", "key `prefix` under which every object is written")
	fs.StringVar(&req.KmsKeyId, "kms-key-id", "", "SSE-KMS `key` id or ARN; empty for the bucket's default encryption")
	fs.BoolVar(&req.MakeDefault, "default", false, "make it the tenant's default storage once saved")
	err := c.parseNoArgs(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := required(cmd, [2]string{"name", req.Name}, [2]string{"region", req.Region},
		[2]string{"bucket", req.Bucket}, [2]string{"access-key-id", req.AccessKeyId}); err != nil {
		return err
	}
	if req.SecretAccessKey, err = secret.read(c, cmd.path()); err != nil {
		return err
	}

	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.RegisterStorage, req,
		func(resp *pb.RegisterStorageResponse) error {
			return printStorageAndReport(c.stdout, resp.GetStorage(), "Validation", resp.GetReport())
		})
}

func storageList(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	pages := pageFlags(fs, "storages per call, at most 1000; 0 for the server's default (50)")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := pages.check(cmd, pos); err != nil {
		return err
	}

	return listPages(ctx, c, pages, "storages", "storages",
		func(ctx context.Context, cl *client.Client, size int32, token string) ([]*pb.Storage, string, error) {
			resp, err := cl.Storage().ListStorages(ctx, &pb.ListStoragesRequest{PageSize: size, PageToken: token})
			return resp.GetStorages(), resp.GetNextPageToken(), err
		},
		func(items []*pb.Storage, next string) proto.Message {
			return &pb.ListStoragesResponse{Storages: items, NextPageToken: next}
		}, printStorages)
}

// idCommand parses a command without flags of its own whose only argument
// is an ID, checked by one (oneID, oneBackupID).
func idCommand(c *cli, cmd *command, args []string, one func(*command, []string) (string, error)) (string, error) {
	fs := c.newFlagSet("backupctl " + cmd.path())
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return "", err
	}
	return one(cmd, pos)
}

func storageGet(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneID)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.GetStorage, &pb.GetStorageRequest{Id: id},
		func(resp *pb.GetStorageResponse) error {
			return printStorageAndReport(c.stdout, resp.GetStorage(), "Last validation", resp.GetStorage().GetLastReport())
		})
}

func storageValidate(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneID)
	if err != nil {
		return err
	}
	resp, err := call(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.ValidateStorage, &pb.ValidateStorageRequest{Id: id})
	if err != nil {
		return err
	}
	if c.json() {
		err = printJSON(c.stdout, resp)
	} else {
		err = printStorageAndReport(c.stdout, resp.GetStorage(), "Validation", resp.GetReport())
	}
	if err != nil {
		return err
	}
	if !resp.GetReport().GetOk() {
		return validationFailed(id)
	}
	return nil
}

// validationFailed is the error validate exits with when the report is not
// OK: the same code and reason register would answer for the same probes.
func validationFailed(id string) error {
	st := status.New(codes.FailedPrecondition, fmt.Sprintf("storage %s failed validation; see the report", id))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "STORAGE_VALIDATION_FAILED", Domain: "backupstore.v1"}); err == nil {
		st = d
	}
	return st.Err()
}

func storageRotate(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.UpdateStorageCredentialsRequest{}
	fs.StringVar(&req.AccessKeyId, "access-key-id", "", "the new access key `id` (required)")
	var secret secretSource
	secret.bind(fs)
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if req.Id, err = oneID(cmd, pos); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"access-key-id", req.AccessKeyId}); err != nil {
		return err
	}
	if req.SecretAccessKey, err = secret.read(c, cmd.path()); err != nil {
		return err
	}

	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.UpdateStorageCredentials, req,
		func(resp *pb.UpdateStorageCredentialsResponse) error {
			return printStorageAndReport(c.stdout, resp.GetStorage(), "Validation", resp.GetReport())
		})
}

func storageSetDefault(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneID)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.SetDefaultStorage, &pb.SetDefaultStorageRequest{Id: id},
		func(resp *pb.SetDefaultStorageResponse) error {
			return printStorage(c.stdout, resp.GetStorage())
		})
}

func storageDelete(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args, oneID)
	if err != nil {
		return err
	}
	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.DeleteStorage, &pb.DeleteStorageRequest{Id: id},
		func(resp *pb.DeleteStorageResponse) error {
			fmt.Fprintf(c.stdout, "Deleted storage %s.\n", clean(id))
			return nil
		})
}

func storagePolicy(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	req := &pb.GetIamPolicyRequest{}
	fs.StringVar(&req.Bucket, "bucket", "", "`bucket` name, instead of a storage ID")
	fs.StringVar(&req.KmsKeyArn, "kms-key-arn", "", "with --bucket: the SSE-KMS key `arn`")
	fs.StringVar(&req.Prefix, "prefix", "", "with --bucket: scope object permissions to this key `prefix`")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return usagef(cmd.path(), "want one storage ID, got %d arguments", len(pos))
	case len(pos) == 1 && req.Bucket != "":
		return usagef(cmd.path(), "give a storage ID or --bucket, not both")
	case len(pos) == 1 && (req.KmsKeyArn != "" || req.Prefix != ""):
		return usagef(cmd.path(), "--kms-key-arn and --prefix go with --bucket; a storage ID brings its own")
	case len(pos) == 1:
		if req.StorageId, err = oneID(cmd, pos); err != nil {
			return err
		}
	case strings.TrimSpace(req.Bucket) == "":
		return usagef(cmd.path(), "give a storage ID or --bucket")
	}

	return callShow(ctx, c, (*client.Client).Storage, pb.StorageServiceClient.GetIamPolicy, req,
		func(resp *pb.GetIamPolicyResponse) error {
			w := c.stdout
			printBlock(w, resp.GetPolicyJson())
			if len(resp.GetAdvice()) > 0 {
				fmt.Fprint(w, "\nAdvice:\n")
				for _, a := range resp.GetAdvice() {
					fmt.Fprintf(w, "  - %s\n", clean(a))
				}
			}
			if resp.GetLifecycleJson() != "" {
				fmt.Fprint(w, "\nLifecycle configuration (aws s3api put-bucket-lifecycle-configuration --bucket BUCKET --lifecycle-configuration file://lifecycle.json):\n")
				printBlock(w, resp.GetLifecycleJson())
			}
			return nil
		})
}
