// Command backupbench measures backupstore against the tools and ceilings a user would compare it
// with, on one machine, in one run, so that the ratios it reports are measured under the same
// conditions.
//
//	go run ./cmd/backupbench ingest [flags]
//
// The ingest benchmark starts its own versitygw (S3, posix backend) and backupd processes on
// 127.0.0.1, creates and drops a throw-away MariaDB database, generates a Salesforce-like CSV with
// csvgen, and compares backupstore's ingest with rclone rcat and a direct feature/s3/manager
// upload of the same bytes to the same server; it also measures compression, the cost of the
// record index, peak RSS for a small and a large record set, small-file throughput against
// direct PutObject, and the bytes a second backup of the same files sends. See docs/BENCHMARKS.md.
//
// backupbench talks to backupd through the API only (it imports the generated proto package, the
// storage package for the PutObject baseline and csvgen). With -tags benchprofile it also wires the
// service in-process, as cmd/backupd does, to take CPU and allocation profiles (--cpuprofile).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "backupbench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage: backupbench ingest [flags]   (backupbench ingest -h lists the flags)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "ingest":
		return runIngest(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
	return errUsage
}
