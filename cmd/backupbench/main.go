// Command backupbench measures backupstore against the tools and ceilings a user would compare it
// with, on one machine, in one run, so that the ratios it reports are measured under the same
// conditions.
//
//	go run ./cmd/backupbench ingest [flags]
//	go run ./cmd/backupbench restore [flags]
//	go run ./cmd/backupbench maintenance [flags]
//	go run ./cmd/backupbench scale [--files 20000]
//	go run ./cmd/backupbench torture --duration 10m [--seed N]
//	go run ./cmd/backupbench all [-o json]
//
// The ingest benchmark starts its own versitygw (S3, posix backend) and backupd processes on
// 127.0.0.1, creates and drops a throw-away MariaDB database, generates a Salesforce-like CSV with
// csvgen, and compares backupstore's ingest with rclone rcat and a direct feature/s3/manager
// upload of the same bytes to the same server; it also measures compression, the cost of the
// record index, peak RSS for a small and a large record set, small-file throughput against
// direct PutObject, and the bytes a second backup of the same files sends.
//
// The restore benchmark reads a ≥ 512 MiB record set back through ReadRecords and compares it
// with a plain gRPC server stream of the same bytes (the transport's ceiling) and with `rclone
// cat` of the same CSV stored uncompressed, then reads it once more through a 1 Gbit/s link
// (toxiproxy's bandwidth toxic on 127.0.0.1, --link-mbit); it counts the S3 bytes and requests of 100 single-
// record reads (cold and warm index cache) through a counting proxy in front of versitygw, and
// times PlanRestore for 1,000 roots with two child levels. The maintenance benchmark compares
// DeleteBackup of a backup of 10,000 objects with one DeleteObject call per key, and times the
// garbage collection of 100,000 stray keys
// and the repack of a deleted backup's packs left a tenth live. See docs/BENCHMARKS.md.
//
// The torture run is no benchmark but a proof: three backupd replicas on a private MariaDB and
// a versitygw, random client operations, kill -9, a MariaDB restart and toxiproxy faults, checked
// against a model of what the service acknowledged (torture*.go; README "Torture run").
//
// backupbench talks to backupd through the API only (it imports the generated proto package, the
// client library for what a worker gets from it (passthrough restore decoded and checked), the
// storage package for the PutObject and DeleteObject baselines, csvgen, and recindex to read the
// frame table of a stored record index). With -tags benchprofile it also wires the
// service in-process, as cmd/backupd does, to take CPU and allocation profiles (--cpuprofile).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
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

const usage = `usage: backupbench COMMAND [flags]   (backupbench COMMAND -h lists the flags)

commands:
  ingest        backupstore ingest against rclone rcat and the S3 manager upload, RSS, small files
  restore       ReadRecords against a plain gRPC stream and rclone cat, lookups by id, PlanRestore
  maintenance   DeleteBackup against per-key DeleteObject, garbage collection of stray keys
  scale         issue 12 §4: a backup of 1,000,000 packed files (--files): upload rate, CommitBackup,
                ListBackupContents pages, ReadFile, FindBackup/ListBackups with 1 and --backups backups
                in the catalog, DeleteBackup, peak RSS, table sizes (quick try: --files 20000 --backups 5)
  torture       three replicas, random operations and faults (kill -9, MariaDB restart, toxiproxy);
                checks that nothing acknowledged is lost (flags: --duration, --seed, --replicas, --clients)
  abuse         two tenants on one backupd: A's backup+restore loop alone, then while B runs every
                resource attack at once (bombs, idle streams, anonymous connections, huge headers,
                SSRF, overlapping key spaces, a stalled bucket, quotas); reports A's throughput
                and p99 attacked ÷ alone, A's errors, backupd's RSS (flags: --phase, --workers)
  all           ingest, restore, maintenance and scale one after the other, each with its defaults
                (flags: -o, --mysql, --tmp, --keep, --skip-rclone)
`

// command runs one benchmark and returns its report (nil when there is nothing to report) and
// the output format asked for.
type command func(ctx context.Context, args []string, stderr io.Writer) (*report, string, error)

var commands = map[string]command{
	"ingest":      ingestCommand,
	"restore":     restoreCommand,
	"maintenance": maintenanceCommand,
	"scale":       scaleCommand,
	"torture":     tortureCommand,
	"abuse":       abuseCommand,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "all":
		return runAll(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return errUsage
	}
	rep, output, err := cmd(ctx, args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if rep != nil {
		if werr := writeReport(stdout, rep, output); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func writeReport(w io.Writer, rep *report, output string) error {
	if output == "json" {
		return rep.writeJSON(w)
	}
	rep.writeTable(w)
	return nil
}

// runAll runs every benchmark with its defaults (and the common flags given), one after the
// other, and prints their reports: tables one after another, or one JSON object by command.
// A failed benchmark does not stop the next.
func runAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backupbench all", flag.ContinueOnError)
	var cc commonConfig
	commonFlags(fs, &cc, 0)
	var skipRclone bool
	fs.BoolVar(&skipRclone, "skip-rclone", false, "do not build or run rclone")
	// scale's own default (1,000,000 files, 50 backups) takes hours on 2 cores; all runs it
	// smaller, and its rows name the size they measured.
	var scaleFiles, scaleBackups int
	fs.IntVar(&scaleFiles, "scale-files", 20000, "scale --files when run from all")
	fs.IntVar(&scaleBackups, "scale-backups", 3, "scale --backups when run from all")
	if err := parseFlags(fs, args, stderr, cc.validate); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var pass []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "skip-rclone" && f.Name != "timeout" && !strings.HasPrefix(f.Name, "scale-") {
			pass = append(pass, "--"+f.Name+"="+f.Value.String())
		}
	})
	reports := map[string]*report{}
	var errs []error
	for i, name := range []string{"ingest", "restore", "maintenance", "scale"} {
		a := slices.Clone(pass)
		if skipRclone && (name == "ingest" || name == "restore") {
			a = append(a, "--skip-rclone")
		}
		if name == "scale" {
			a = append(a, fmt.Sprintf("--files=%d", scaleFiles), fmt.Sprintf("--backups=%d", scaleBackups))
		}
		if cc.timeout > 0 {
			a = append(a, "--timeout="+cc.timeout.String())
		}
		fmt.Fprintf(stderr, "=== backupbench %s %s\n", name, strings.Join(a, " "))
		rep, _, err := commands[name](ctx, a, stderr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if rep == nil {
			continue
		}
		reports[name] = rep
		if cc.output != "json" {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			rep.writeTable(stdout)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if cc.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		for _, r := range reports {
			r.sortRows()
		}
		if err := enc.Encode(reports); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
