// Command backupctl is the command-line client of backupstore: operators use
// it to register and manage the S3 buckets backups are written to and to run
// maintenance (retention, cleanup, verification), and it is the reference
// backup worker: it opens backups, streams record sets and files into them
// and commits them, and reads them back (restore).
//
// It is flags and output: the worker protocol (uploads with retry and
// resume, backup run, restore run, reads and paging) is package
// backupstore/client, which it calls. It imports only that, the generated
// API package, gRPC, protobuf, internal/bytesize and the standard library,
// never the server's packages: it is a client like any other.
//
// # Usage
//
//	backupctl [global flags] <group> <command> [flags] [args]
//	backupctl [global flags] cleanup|verify [flags] [args]
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
//	backupctl backup run --org ORG [--storage ID] [--concurrency N] [--chunk-size BYTES]
//	                     [--label k=v ...] [--require-parents] [--idempotency-key K] DIR
//	backupctl backup create --org ORG [--storage ID] [--label k=v ...] [--idempotency-key K]
//	backupctl backup upload-records --backup ID --sobject NAME [--sequence N]
//	                     [--ref Field=Target ...] [--upload-id UUID] FILE|-
//	backupctl backup upload-file --backup ID --parent PARENT_ID [--path P] [--name N]
//	                     [--content-type T] [--sha256 HEX | --hash] [--upload-id UUID] FILE
//	backupctl backup commit ID [--require-parents]
//	backupctl backup abort ID
//	backupctl backup delete ID
//	backupctl backup get ID
//	backupctl backup list [--org ORG] [--status open|committed|aborted|deleting]
//	                     [--from RFC3339] [--to RFC3339] [--page-size N] [--all=false [--page-token T]]
//	backupctl backup uploads ID [--state pending|committed|failed|abandoned]
//
//	backupctl restore run [--concurrency N] [--resume] BACKUP_ID OUT_DIR
//	backupctl restore contents BACKUP_ID
//	backupctl restore find --org ORG [--at RFC3339]
//	backupctl restore records --backup ID --sobject NAME [--ids ID,ID,... | --ids-file F|-] [-O FILE]
//	backupctl restore file --backup ID (--file-id ID | --parent ID) [--offset N] [--limit N] [-O PATH]
//	backupctl restore plan --backup ID --root SObject=ID,ID,... [--root ...] [--depth 0-5]
//
//	backupctl retention set [--org ORG] [--keep-last N] [--keep-daily N] [--keep-weekly N]
//	                        [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION]
//	backupctl retention get [--org ORG]
//	backupctl retention delete [--org ORG]
//	backupctl cleanup [--dry-run]
//	backupctl verify BACKUP_ID [--read-percent 0-100]
//	backupctl maintenance runs [--page-size N] [--all=false [--page-token T]]
//
// Flags may come before or after positional arguments. A secret access key
// is never a flag value (flags show in ps and in shell history): it is read
// from --secret-access-key-file, from stdin with --secret-access-key-stdin,
// or from $BACKUPCTL_SECRET_ACCESS_KEY, and one trailing newline is removed.
// list follows every page unless --all=false. validate exits 4 when the
// report is not OK, after printing it.
//
// # Uploads and backup run
//
// Uploads stream a header, data messages of 1 MiB and a finish message.
// Unavailable, Aborted and ResourceExhausted are retried with exponential
// backoff (5 attempts in all; a RetryInfo delay is honoured): a record chunk
// from its start, a file from the service's committed_size, which is asked
// again before every retry. With a declared SHA-256 (upload-file --hash, and
// always in backup run) the service may answer right after the header that
// it already stores the body; nothing more is sent.
//
// backup run checks the export directory's layout (see 'backupctl backup run
// -h'), scans each <sObject>.csv with csvscan for row boundaries (pass 1) and
// then streams each chunk as the header row plus a byte range of the file
// (pass 2), so no chunk is ever held in memory. It creates the backup with an
// idempotency key derived from the org, the storage, the directory's absolute
// path, the chunk size and a fingerprint of the listing (path, size and
// modification time of every file), and derives every upload id as a version
// 5 UUID of the backup id and "records/<sObject>/<seq>" or "file/<path>".
// Running the same command again therefore finds the same backup: if it is
// committed the run prints "already committed: ID" and exits 0 without
// uploading; if it is open the run lists its uploads (every page), skips the
// committed ones, resumes pending files at their committed size and restarts
// pending or failed record chunks, then commits.
//
// # Restores
//
// Read streams (records, file, run) end with a summary message; a stream
// that ends without one was cut short: the command fails with Unavailable
// (exit 5) and, with -O or in restore run, leaves no file under the final
// name (outputs are written to a temporary name and renamed once complete).
// On stdout the output is then incomplete and stderr says so. --timeout
// does not bound a stream as a whole: it fails (DeadlineExceeded) when no
// message arrives for that long.
//
// restore records prints the CSV exactly as backed up (header row once,
// then every chunk's rows). Requested ids that are not in the backup are
// listed on stderr and are not an error: the exit code is 0.
//
// restore run writes the export directory layout backup run reads
// (<sObject>.csv, references.csv, files/<path>, files.csv), so that diff -r
// against the directory that was backed up shows no difference in record
// sets and file bodies. references.csv and files.csv (written last) hold the
// same rows, possibly in another order and in the stored spelling: sObject
// and field names as the record sets spell them, parent ids in 18-character
// form, and the name and content type backup run filled in where files.csv
// left them empty. Every file is written as <name>.partial and renamed when
// complete; each body's size and SHA-256 are checked before the rename, and
// each record set's row count against the backup's. With --resume, a
// non-empty OUT_DIR is accepted: record sets are read again whole, bodies
// already in place with the right SHA-256 are kept, and a body left as
// files/<path>.partial continues at its size (read_offset). Unavailable,
// Aborted and ResourceExhausted are retried with backoff, a body from the
// bytes it has. Stored paths that are not clean relative paths are refused
// (exit 4) before anything is written.
//
// # Maintenance
//
// retention set replaces the policy of an org (--org) or the tenant's default
// (no --org); an org's policy overrides the tenant's for that org. The rules
// are restic's forget: --keep-last N, --keep-daily/weekly/monthly/yearly N
// (the latest backup of each of the last N periods that have backups) and
// --keep-within DURATION (every backup started within DURATION before the
// newest). --keep-within takes a Go duration or days, weeks and years,
// counted in hours: 30d = 720h, 12w = 2016h, 1y = 365d = 8760h; units
// combine (1y6w). A policy that keeps nothing is a usage error (exit 2):
// delete the policy to keep every backup. retention get prints the policy in
// force (an org without its own policy gets the tenant's, and stderr says
// so); when none applies it exits 3 (NotFound): every backup is kept.
//
// cleanup (RunCleanup) expires what no policy keeps, finishes interrupted
// deletions, deletes garbage keys past the grace period and aborts stale
// uploads; --dry-run only reports. It prints one row per item (ACTION,
// BACKUP, KEY/UPLOAD, BYTES, REASON), then the totals. backup delete
// (DeleteBackup) deletes one COMMITTED or ABORTED backup and prints the
// objects deleted and the bytes freed. verify (VerifyBackup) checks every
// object of a backup (HeadObject), re-hashes --read-percent of them, and
// prints the object problems and the dangling references as tables. verify
// exits 0 when no object problem was found and 4 (FailedPrecondition,
// reason BACKUP_DAMAGED, after printing the report) when any object is
// missing or has the wrong size or checksum; dangling references (lookups
// whose target record is not in the backup) are reported but are not an
// error. maintenance runs lists the runs (cleanup, verify, delete), newest
// first, following every page unless --all=false.
//
// cleanup, verify and backup delete take the maintenance lock that all
// replicas share; while another replica (or call) holds it the service
// answers Aborted (reason MAINTENANCE_RUNNING): nothing was done, stderr
// says so, and the exit code is 5. Each is one call that may take minutes,
// so it is bounded by --timeout when given, else by 30 minutes.
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
//	--timeout DURATION   per call, default 60s (cleanup, verify and backup
//	                     delete: 30m); 0 for none. An upload stream
//	                     is not bounded as a whole: it fails (DeadlineExceeded)
//	                     when no message goes out, or no answer comes back
//	                     after the last, for DURATION
//	-o, --output FORMAT  table (default, for people) or json (for scripts)
//
// # Output
//
// Results go to stdout, everything else to stderr. Tables for people;
// with -o json, the response message in the canonical protojson mapping
// (lowerCamelCase names, enums by name, unset fields omitted), indented two
// spaces. list -o json prints one ListStoragesResponse holding every page
// (backup list one ListBackupsResponse, backup uploads one
// ListUploadsResponse, restore contents one ListBackupContentsResponse,
// maintenance runs one ListMaintenanceRunsResponse).
// backup run prints the backup id on stdout, or with -o json the
// CommitBackupResponse; restore run prints OUT_DIR, or with -o json the
// ListBackupContentsResponse of what it restored. Their progress (a bar
// redrawn at most ten times a second when stderr is a terminal, else a line
// per finished upload or download), warnings and summary go to stderr.
// restore records and restore file write data to stdout unless -O is given;
// with -O and -o json they print the stream's summary message.
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
// function listed in groups() (run.go); a top-level command without
// subcommands (cleanup, verify) is a group whose verb field is its command. Its commands build their FlagSet
// with cli.newFlagSet, so the global flags work after them too, parse with
// cli.parse, dial with cli.dial, bound each call with cli.callCtx, and
// return gRPC errors unwrapped so that printError maps them to exit codes.
package main
