package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"backupstore/client"
	pb "backupstore/proto/backupstore/v1"
)

const (
	defaultServer  = "127.0.0.1:50051"
	defaultTimeout = 60 * time.Second
	maxInputFile   = 64 << 10 // secrets, tokens and CA bundles are small
)

// globals are the settings every command accepts.
type globals struct {
	server        string
	token         string
	tokenFromFlag bool
	tokenFile     string
	tls           bool
	tlsCA         string
	tlsCert       string // client certificate (mutual TLS)
	tlsKey        string
	insecure      bool // send a token in plaintext to a non-loopback server
	timeout       time.Duration
	timeoutSet    bool   // --timeout was given; cleanup, verify and backup delete default longer
	output        string // "table" or "json"
}

// defaultGlobals holds the defaults, environment variables applied; flags
// override them.
func defaultGlobals(getenv func(string) string) globals {
	g := globals{server: defaultServer, timeout: defaultTimeout, output: "table"}
	if v := strings.TrimSpace(getenv("BACKUPCTL_SERVER")); v != "" {
		g.server = v
	}
	g.token = strings.TrimSpace(getenv("BACKUPCTL_TOKEN"))
	return g
}

var globalFlagNames = map[string]bool{
	"server": true, "token": true, "token-file": true, "tls": true,
	"tls-ca": true, "tls-cert": true, "tls-key": true, "insecure": true, "timeout": true, "o": true, "output": true,
}

func isGlobalFlag(name string) bool { return globalFlagNames[name] }

// bind registers the global flags on fs. They write through to g without
// resetting it, so one invocation may set them on several FlagSets (before
// the group, after the command) and the last one wins. The flags carry no
// default value of their own: a token taken from the environment must never
// show up in -h output.
func (g *globals) bind(fs *flag.FlagSet) {
	fs.Func("server", "gRPC server `address` host:port (default "+defaultServer+", env BACKUPCTL_SERVER)", func(s string) error {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("empty address")
		}
		g.server = strings.TrimSpace(s)
		return nil
	})
	fs.Func("token", "bearer `token`, sent as metadata \"authorization: Bearer <token>\" (env BACKUPCTL_TOKEN;\nprefer the env or --token-file: flag values show in ps and shell history)", func(s string) error {
		g.token = strings.TrimSpace(s)
		g.tokenFromFlag = true
		return nil
	})
	fs.Func("token-file", "read the bearer token from `file`", func(s string) error {
		g.tokenFile = s
		return nil
	})
	fs.BoolFunc("tls", "use TLS, verifying the server with the system roots (default: plaintext, for loopback dev)", func(s string) error {
		v, err := strconv.ParseBool(s)
		g.tls = v
		return err
	})
	fs.Func("tls-ca", "use TLS, verifying the server with the CA certificates (PEM) in `file`", func(s string) error {
		g.tlsCA = s
		return nil
	})
	fs.Func("tls-cert", "mutual TLS: client certificate `file` (PEM), with --tls-key; implies TLS", func(s string) error {
		g.tlsCert = s
		return nil
	})
	fs.Func("tls-key", "mutual TLS: the client certificate's private key `file` (PEM)", func(s string) error {
		g.tlsKey = s
		return nil
	})
	fs.BoolFunc("insecure", "send the token in plaintext to a server that is not on loopback (a proxy on the way terminates TLS)", func(s string) error {
		v, err := strconv.ParseBool(s)
		g.insecure = v
		return err
	})
	fs.Func("timeout", "`duration` of each call, e.g. 30s or 2m; 0 for none (default 1m0s)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		if d < 0 {
			return fmt.Errorf("negative timeout")
		}
		g.timeout = d
		g.timeoutSet = true
		return nil
	})
	out := func(s string) error {
		switch s {
		case "table", "json":
			g.output = s
			return nil
		}
		return fmt.Errorf("output %q: want table or json", s)
	}
	fs.Func("o", "output `format`: table or json (default table)", out)
	fs.Func("output", "output `format`, same as -o", out)
}

func (c *cli) printGlobalFlags(w io.Writer) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var g globals
	g.bind(fs)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	printFlags(w, flags)
}

func (c *cli) json() bool { return c.g.output == "json" }

// bearerToken returns the token to send, "" for none.
func (g *globals) bearerToken() (string, error) {
	if g.tokenFile == "" {
		return g.token, nil
	}
	if g.tokenFromFlag {
		return "", usagef("", "--token and --token-file are mutually exclusive")
	}
	b, err := readSmallFile(g.tokenFile)
	if err != nil {
		return "", usagef("", "--token-file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("", "--token-file %s is empty", g.tokenFile)
	}
	return tok, nil
}

// connect returns a client of the server, which dials lazily (the first
// call dials), with the transport and per-call credentials the global flags
// ask for.
func (c *cli) connect() (*client.Client, error) {
	token, err := c.g.bearerToken()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithToken(token), client.WithCallTimeout(c.g.timeout),
		client.WithRetry(uploadRetry), client.WithUserAgent("backupctl")}
	if c.g.tls || c.g.tlsCA != "" || c.g.tlsCert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.g.tlsCert != "" || c.g.tlsKey != "" {
			pair, err := tls.LoadX509KeyPair(c.g.tlsCert, c.g.tlsKey)
			if err != nil {
				return nil, usagef("", "--tls-cert/--tls-key: %v", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		if c.g.tlsCA != "" {
			pem, err := readSmallFile(c.g.tlsCA)
			if err != nil {
				return nil, usagef("", "--tls-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usagef("", "--tls-ca %s: no PEM certificates found", c.g.tlsCA)
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, client.WithTLS(cfg))
	} else if token != "" && !client.IsLoopback(c.g.server) && c.g.insecure {
		fmt.Fprintf(c.stderr, "backupctl: warning: sending the token in plaintext to %s (--insecure)\n", c.g.server)
		opts = append(opts, client.WithInsecure())
	}
	cl, err := client.Dial(c.g.server, opts...)
	if errors.Is(err, client.ErrPlaintextToken) {
		return nil, usagef("", "refusing to send the token in plaintext to %s: use --tls or --tls-ca (or --insecure when a proxy on the way terminates TLS)", c.g.server)
	}
	if err != nil {
		return nil, usagef("", "--server %s: %v", c.g.server, err)
	}
	return cl, nil
}

// uploadRetry is the retry policy of uploads and reads; tests shorten it.
var uploadRetry = client.DefaultRetry

// call connects and runs one unary RPC of the stub get picks, bounded by
// --timeout (restore calls accept large messages).
func call[S, Req any, Resp proto.Message](ctx context.Context, c *cli, get func(*client.Client) S,
	rpc func(S, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req,
) (Resp, error) {
	return callWith(ctx, c, c.callCtx, get, rpc, req)
}

// callShow runs call and prints the response: all of it as JSON with
// -o json, else what table prints.
func callShow[S, Req any, Resp proto.Message](ctx context.Context, c *cli, get func(*client.Client) S,
	rpc func(S, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, table func(Resp) error,
) error {
	resp, err := call(ctx, c, get, rpc, req)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return table(resp)
}

// callWith is call with another bound than --timeout.
func callWith[S, Req any, Resp proto.Message](ctx context.Context, c *cli, bound func(context.Context) (context.Context, context.CancelFunc),
	get func(*client.Client) S, rpc func(S, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req,
) (Resp, error) {
	cl, err := c.connect()
	if err != nil {
		var zero Resp
		return zero, err
	}
	defer cl.Close()
	cctx, cancel := bound(ctx)
	defer cancel()
	return rpc(get(cl), cctx, req, grpc.MaxCallRecvMsgSize(client.MaxRecvMsgSize))
}

// callCtx bounds one RPC by --timeout.
func (c *cli) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.g.timeout > 0 {
		return context.WithTimeout(ctx, c.g.timeout)
	}
	return context.WithCancel(ctx)
}

func readSmallFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInputFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxInputFile)
	}
	return b, nil
}

// exitCodeFor maps a gRPC code to the documented exit code.
func exitCodeFor(code codes.Code) int {
	switch code {
	case codes.OK:
		return exitOK
	case codes.NotFound:
		return exitNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange:
		return exitBadRequest
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded:
		return exitRetryable
	case codes.Unauthenticated, codes.PermissionDenied:
		return exitAccessError
	default:
		return exitError
	}
}

// jsonError is what -o json prints to stderr on failure.
type jsonError struct {
	Error jsonErrorBody `json:"error"`
}

type jsonErrorBody struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Reason  string            `json:"reason,omitempty"`
	Details []json.RawMessage `json:"details,omitempty"`
}

// printError prints a failed call (or any other error) to stderr and returns
// its exit code. stdout stays for results only.
func (c *cli) printError(err error) int {
	st, isStatus := status.FromError(err)
	exit := exitError
	if isStatus {
		exit = exitCodeFor(st.Code())
	}
	if c.json() {
		body := jsonErrorBody{Code: st.Code().String(), Message: st.Message(), Reason: reasonOf(st)}
		for _, a := range st.Proto().GetDetails() {
			b, err := protojson.Marshal(a)
			if err != nil {
				b, _ = json.Marshal(map[string]string{"@type": a.GetTypeUrl()})
			}
			body.Details = append(body.Details, b)
		}
		out, err := json.MarshalIndent(jsonError{Error: body}, "", "  ")
		if err != nil {
			fmt.Fprintf(c.stderr, "backupctl: %v\n", err)
			return exit
		}
		fmt.Fprintf(c.stderr, "%s\n", out)
		return exit
	}

	if !isStatus {
		fmt.Fprintf(c.stderr, "backupctl: %s\n", clean(err.Error()))
		return exit
	}
	msg := st.Message()
	for _, d := range st.Details() {
		if _, ok := d.(*pb.ValidationReport); ok {
			// The message's own per-API lines (for grpcurl users) repeat the
			// report table printed below: keep only its first line.
			msg, _, _ = strings.Cut(msg, "\n")
		}
	}
	line := fmt.Sprintf("backupctl: %s: %s", st.Code(), clean(strings.TrimSuffix(msg, ":")))
	if r := reasonOf(st); r != "" {
		line += " [" + clean(r) + "]"
	}
	fmt.Fprintln(c.stderr, line)
	var report *pb.ValidationReport
	var precondition *errdetails.PreconditionFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(c.stderr, "  %s: %s\n", clean(v.GetField()), clean(v.GetDescription()))
			}
		case *pb.ValidationReport:
			report = d
		case *errdetails.PreconditionFailure:
			precondition = d
		case *errdetails.RetryInfo:
			if d.GetRetryDelay() != nil {
				fmt.Fprintf(c.stderr, "  retry after %s\n", d.GetRetryDelay().AsDuration())
			}
		}
	}
	switch {
	case report != nil:
		// The report says everything the PreconditionFailure does, and more.
		fmt.Fprintln(c.stderr)
		printReport(c.stderr, report)
	case precondition != nil:
		for _, v := range precondition.GetViolations() {
			fmt.Fprintf(c.stderr, "  %s: %s: %s\n", clean(v.GetSubject()), clean(v.GetType()), clean(v.GetDescription()))
		}
	}
	var h *hintedError
	if errors.As(err, &h) {
		fmt.Fprintf(c.stderr, "  %s\n", strings.ReplaceAll(h.hint, "\n", "\n  "))
	}
	return exit
}

// hintedError is a gRPC error with advice for people, printed under the
// error in table output; -o json prints the status alone (stderr is then one
// JSON object). The status, code and exit code are err's.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string              { return e.err.Error() }
func (e *hintedError) Unwrap() error              { return e.err }
func (e *hintedError) GRPCStatus() *status.Status { return status.Convert(e.err) }

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// paging is the flags of a list command.
type paging struct {
	size  int
	all   bool
	token string
}

// pageFlags registers --page-size (what: "storages per call, ..."), --all
// and --page-token.
func pageFlags(fs *flag.FlagSet, what string) *paging {
	p := &paging{}
	fs.IntVar(&p.size, "page-size", 0, what)
	fs.BoolVar(&p.all, "all", true, "follow next_page_token to the last page; --all=false prints one page")
	fs.StringVar(&p.token, "page-token", "", "start at this `token`, from a previous --all=false listing")
	return p
}

// check refuses positional arguments and a --page-size out of range.
func (p *paging) check(cmd *command, pos []string) error {
	if err := noArgs(cmd, pos); err != nil {
		return err
	}
	if p.size < 0 || p.size > 1000 {
		return usagef(cmd.path(), "--page-size %d: want 0 to 1000", p.size)
	}
	return nil
}

// listPages runs a list command: fetch is called with --page-token, each
// call bounded by --timeout, then (with --all) with each next page token
// until the last page. It prints what arrived: with -o json the response
// resp makes of it, else table's output, or "No <none>." on stderr; then,
// if pages are left, the --page-token to go on with ("More <more>: ...").
func listPages[T any](ctx context.Context, c *cli, p *paging, none, more string,
	fetch func(ctx context.Context, cl *client.Client, size int32, token string) ([]T, string, error),
	resp func(items []T, next string) proto.Message, table func(io.Writer, []T) error,
) error {
	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	var items []T
	page := func(ctx context.Context, token string) (string, error) {
		cctx, cancel := c.callCtx(ctx)
		defer cancel()
		list, next, err := fetch(cctx, cl, int32(p.size), token)
		items = append(items, list...)
		return next, err
	}
	var next string
	if p.all {
		err = client.FollowPages(ctx, p.token, page)
	} else {
		next, err = page(ctx, p.token)
	}
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp(items, next))
	}
	if len(items) == 0 {
		fmt.Fprintf(c.stderr, "No %s.\n", none)
	} else if err := table(c.stdout, items); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(c.stderr, "More %s: add --page-token %s\n", more, clean(next))
	}
	return nil
}
