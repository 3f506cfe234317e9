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
func oneID(cmd *command, pos []string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usagef(cmd.path(), "missing storage ID")
	case len(pos) > 1:
		return "", usagef(cmd.path(), "want one storage ID, got %d arguments", len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return "", usagef(cmd.path(), "empty storage ID")
	}
	return pos[0], nil
}

// noArgs rejects positional arguments.
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
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(cmd, pos); err != nil {
		return err
	}
	if err := required(cmd, [2]string{"name", req.Name}, [2]string{"region", req.Region},
		[2]string{"bucket", req.Bucket}, [2]string{"access-key-id", req.AccessKeyId}); err != nil {
		return err
	}
	if req.SecretAccessKey, err = secret.read(c, cmd.path()); err != nil {
		return err
	}

	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.RegisterStorage(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printStorageAndReport(c.stdout, resp.GetStorage(), "Validation", resp.GetReport())
}

func storageList(ctx context.Context, c *cli, cmd *command, args []string) error {
	fs := c.newFlagSet("backupctl " + cmd.path())
	pageSize := fs.Int("page-size", 0, "storages per call, at most 1000; 0 for the server's default (50)")
	all := fs.Bool("all", true, "follow next_page_token to the last page; --all=false prints one page")
	pageToken := fs.String("page-token", "", "start at this `token`, from a previous --all=false listing")
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(cmd, pos); err != nil {
		return err
	}
	if *pageSize < 0 || *pageSize > 1000 {
		return usagef(cmd.path(), "--page-size %d: want 0 to 1000", *pageSize)
	}

	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	out := &pb.ListStoragesResponse{}
	out.NextPageToken, err = c.followPages(ctx, "list", *pageToken, *all, func(ctx context.Context, token string) (string, error) {
		resp, err := client.ListStorages(ctx, &pb.ListStoragesRequest{PageSize: int32(*pageSize), PageToken: token})
		out.Storages = append(out.Storages, resp.GetStorages()...)
		return resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}

	if c.json() {
		return printJSON(c.stdout, out)
	}
	if len(out.GetStorages()) == 0 {
		fmt.Fprintln(c.stderr, "No storages.")
	} else if err := printStorages(c.stdout, out.GetStorages()); err != nil {
		return err
	}
	if out.GetNextPageToken() != "" {
		fmt.Fprintf(c.stderr, "More storages: add --page-token %s\n", clean(out.GetNextPageToken()))
	}
	return nil
}

// idCommand parses a command whose only argument is a storage ID.
func idCommand(c *cli, cmd *command, args []string) (string, error) {
	fs := c.newFlagSet("backupctl " + cmd.path())
	pos, err := c.parse(cmd, fs, args)
	if err != nil {
		return "", err
	}
	return oneID(cmd, pos)
}

func storageGet(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args)
	if err != nil {
		return err
	}
	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.GetStorage(cctx, &pb.GetStorageRequest{Id: id})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printStorageAndReport(c.stdout, resp.GetStorage(), "Last validation", resp.GetStorage().GetLastReport())
}

func storageValidate(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args)
	if err != nil {
		return err
	}
	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.ValidateStorage(cctx, &pb.ValidateStorageRequest{Id: id})
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

	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.UpdateStorageCredentials(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printStorageAndReport(c.stdout, resp.GetStorage(), "Validation", resp.GetReport())
}

func storageSetDefault(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args)
	if err != nil {
		return err
	}
	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.SetDefaultStorage(cctx, &pb.SetDefaultStorageRequest{Id: id})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printStorage(c.stdout, resp.GetStorage())
}

func storageDelete(ctx context.Context, c *cli, cmd *command, args []string) error {
	id, err := idCommand(c, cmd, args)
	if err != nil {
		return err
	}
	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.DeleteStorage(cctx, &pb.DeleteStorageRequest{Id: id})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	fmt.Fprintf(c.stdout, "Deleted storage %s.\n", clean(id))
	return nil
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

	client, done, err := c.storageClient()
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := client.GetIamPolicy(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
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
}
