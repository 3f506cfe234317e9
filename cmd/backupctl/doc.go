// Command backupctl is the command-line client of backupstore: operators use
// it to register and manage the S3 buckets backups are written to (and, in
// later versions, to run backups and restores).
//
// It imports only the generated API package, gRPC, protobuf and the
// standard library, never the server's packages: it is a client like any
// other.
//
// # Usage
//
//	backupctl [global flags] <group> <command> [flags] [args]
//	backupctl help [<group> [<command>]]
//
//	backupctl storage register --name N --region R --bucket B --access-key-id K
//	                           [--secret-access-key-file F | --secret-access-key-stdin]
//	                           [--endpoint URL] [--path-style] [--prefix P]
//	                           [--kms-key-id K] [--default]
//	backupctl storage list [--page-size N] [--all=false [--page-token T]]
//	backupctl storage get ID
//	backupctl storage validate ID
//	backupctl storage rotate ID --access-key-id K [--secret-access-key-file F | --secret-access-key-stdin]
//	backupctl storage set-default ID
//	backupctl storage delete ID
//	backupctl storage policy (ID | --bucket B [--kms-key-arn ARN] [--prefix P])
//
// Flags may come before or after positional arguments. A secret access key
// is never a flag value (flags show in ps and in shell history): it is read
// from --secret-access-key-file, from stdin with --secret-access-key-stdin,
// or from $BACKUPCTL_SECRET_ACCESS_KEY, and one trailing newline is removed.
// list follows every page unless --all=false. validate exits 4 when the
// report is not OK, after printing it.
//
// # Global flags
//
// Accepted before the group and after the command (the last one wins):
//
//	--server HOST:PORT   default 127.0.0.1:50051, or $BACKUPCTL_SERVER
//	--token TOKEN        bearer token, sent as "authorization: Bearer <token>";
//	                     default $BACKUPCTL_TOKEN (prefer it, or --token-file:
//	                     flag values show in ps)
//	--token-file FILE    read the bearer token from FILE
//	--tls                TLS with the system roots (default: plaintext, for
//	                     loopback development; a token sent in plaintext to a
//	                     non-loopback address draws a warning)
//	--tls-ca FILE        TLS, verifying the server with the PEM CAs in FILE
//	--timeout DURATION   per call, default 60s; 0 for none
//	-o, --output FORMAT  table (default, for people) or json (for scripts)
//
// # Output
//
// Results go to stdout, everything else to stderr. Tables for people;
// with -o json, the response message in the canonical protojson mapping
// (lowerCamelCase names, enums by name, unset fields omitted), indented two
// spaces. list -o json prints one ListStoragesResponse holding every page.
//
// Errors print "backupctl: <code>: <message> [<reason>]", then each
// google.rpc.BadRequest field violation as "  field: description" and, when
// the details carry a ValidationReport (register and rotate on
// FailedPrecondition), the report as a probe table. With -o json the error
// is a JSON object on stderr:
//
//	{"error":{"code":"FailedPrecondition","message":"...","reason":"STORAGE_VALIDATION_FAILED","details":[...]}}
//
// where details are the status details as protojson Any values ("@type").
// Usage errors (exit 2) are plain text whatever -o says.
//
// # Exit codes
//
//	0  success
//	1  any other error (Internal, DataLoss, Unimplemented, Canceled, local I/O)
//	2  usage error: unknown command, bad flags or arguments, unreadable input
//	   file; nothing was sent
//	3  not found (NotFound)
//	4  the request is wrong, do not retry it unchanged (InvalidArgument,
//	   FailedPrecondition, AlreadyExists, OutOfRange)
//	5  temporary, retry with backoff (Unavailable, Aborted,
//	   ResourceExhausted, DeadlineExceeded)
//	6  authentication or authorization failed (Unauthenticated,
//	   PermissionDenied)
//
// # Adding a command group
//
// A group (backup, restore) is one file that returns a *group from a
// function listed in groups() (run.go). Its commands build their FlagSet
// with cli.newFlagSet, so the global flags work after them too, parse with
// cli.parse, dial with cli.dial, bound each call with cli.callCtx, and
// return gRPC errors unwrapped so that printError maps them to exit codes.
package main
