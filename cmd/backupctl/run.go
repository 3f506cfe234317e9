package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes. Scripts may rely on them; they are part of the CLI's contract
// and listed in the usage text and in doc.go.
const (
	exitOK          = 0
	exitError       = 1 // anything not below: Internal, DataLoss, Unimplemented, Canceled, local I/O
	exitUsage       = 2 // bad command, flags or arguments; nothing was sent
	exitNotFound    = 3
	exitBadRequest  = 4 // InvalidArgument, FailedPrecondition, AlreadyExists, OutOfRange: do not retry unchanged
	exitRetryable   = 5 // Unavailable, Aborted, ResourceExhausted, DeadlineExceeded: retry with backoff
	exitAccessError = 6 // Unauthenticated, PermissionDenied
)

// cli is one invocation: its streams, environment and global settings.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	g              globals
}

// command is one leaf command, e.g. `storage register`.
type command struct {
	group, name string
	args        string // synopsis after the command path
	summary     string // one line, for the group's list
	help        string // paragraphs printed by -h
	run         func(ctx context.Context, c *cli, cmd *command, args []string) error
}

func (cmd *command) path() string {
	if cmd.name == "" {
		return cmd.group
	}
	return cmd.group + " " + cmd.name
}

// group is a top-level noun (storage, backup, restore) and its commands, or
// a top-level verb (cleanup, verify): a group whose one command, verb, runs
// as `backupctl cleanup [flags] [args]`, with no command name of its own.
type group struct {
	name, summary string
	commands      []*command
	verb          *command
}

func (g *group) lookup(name string) *command {
	for _, cmd := range g.commands {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

// groups lists the command groups in the order the usage shows them. A new
// group (backup, restore) is one file defining a *group plus a line here.
func groups() []*group {
	gs := []*group{storageGroup(), backupGroup(), restoreGroup(),
		retentionGroup(), cleanupGroup(), verifyGroup(), maintenanceGroup()}
	for _, g := range gs {
		for _, cmd := range g.commands {
			cmd.group = g.name
		}
		if g.verb != nil {
			g.verb.group, g.verb.name = g.name, ""
		}
	}
	return gs
}

func lookupGroup(name string) *group {
	for _, g := range groups() {
		if g.name == name {
			return g
		}
	}
	return nil
}

// errHelp reports that -h printed the usage: exit 0.
var errHelp = errors.New("help requested")

// usageError is a mistake in the command line, or in a local input it names
// (a secret file that cannot be read): nothing was sent; exit 2.
type usageError struct {
	path string // command path for the hint, "" for the top level
	msg  string
}

func (e *usageError) Error() string { return e.msg }

func usagef(path, format string, args ...any) error {
	return &usageError{path: path, msg: fmt.Sprintf(format, args...)}
}

// run executes one backupctl command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	c.g = defaultGlobals(c.getenv)
	return c.finish(c.dispatch(ctx, args))
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	top := c.newFlagSet("backupctl")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.topUsage()
			return errHelp
		}
		return usagef("", "%v", err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		c.topUsage()
		return usagef("", "missing command group")
	}
	if rest[0] == "help" {
		return c.help(rest[1:])
	}
	g := lookupGroup(rest[0])
	if g == nil {
		return usagef("", "unknown command group %q", rest[0])
	}
	if g.verb != nil {
		return g.verb.run(ctx, c, g.verb, rest[1:])
	}

	gfs := c.newFlagSet("backupctl " + g.name)
	if err := gfs.Parse(rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.groupUsage(g)
			return errHelp
		}
		return usagef(g.name, "%v", err)
	}
	rest = gfs.Args()
	if len(rest) == 0 {
		c.groupUsage(g)
		return usagef(g.name, "missing %s command", g.name)
	}
	if rest[0] == "help" {
		return c.help(append([]string{g.name}, rest[1:]...))
	}
	cmd := g.lookup(rest[0])
	if cmd == nil {
		return usagef(g.name, "unknown %s command %q", g.name, rest[0])
	}
	return cmd.run(ctx, c, cmd, rest[1:])
}

// help implements `backupctl help [group [command]]`.
func (c *cli) help(args []string) error {
	if len(args) == 0 {
		c.topUsage()
		return errHelp
	}
	g := lookupGroup(args[0])
	if g == nil {
		return usagef("", "unknown command group %q", args[0])
	}
	if g.verb != nil {
		if len(args) > 1 {
			return usagef(g.name, "%s has no commands", g.name)
		}
		return g.verb.run(context.Background(), c, g.verb, []string{"-h"})
	}
	if len(args) == 1 {
		c.groupUsage(g)
		return errHelp
	}
	cmd := g.lookup(args[1])
	if cmd == nil {
		return usagef(g.name, "unknown %s command %q", g.name, args[1])
	}
	return cmd.run(context.Background(), c, cmd, []string{"-h"})
}

// finish prints err the way its kind asks and returns the exit code.
func (c *cli) finish(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.path == "" {
			fmt.Fprintf(c.stderr, "backupctl: %s\nRun 'backupctl -h' for usage.\n", ue.msg)
		} else {
			fmt.Fprintf(c.stderr, "backupctl %s: %s\nRun 'backupctl %s -h' for usage.\n", ue.path, ue.msg, ue.path)
		}
		return exitUsage
	}
	return c.printError(err)
}

// newFlagSet returns a FlagSet that also accepts the global flags, so that
// they may come before the group or after the command. Parse errors and -h
// are returned, never printed by the flag package.
func (c *cli) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.g.bind(fs)
	return fs
}

// parse parses a command's flags, which may be interleaved with its
// positional arguments (`rotate ID --access-key-id K`); everything after
// "--" is positional. It prints the command's usage for -h.
func (c *cli) parse(cmd *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.commandUsage(cmd, fs)
				return nil, errHelp
			}
			return nil, usagef(cmd.path(), "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

const exitCodesText = `Exit codes:
  0  success
  1  any other error (Internal, DataLoss, Unimplemented, Canceled, local I/O)
  2  usage error: unknown command, bad flags or arguments, unreadable input file;
     nothing was sent
  3  not found (NotFound)
  4  the request is wrong, do not retry it unchanged
     (InvalidArgument, FailedPrecondition, AlreadyExists, OutOfRange)
  5  temporary, retry with backoff
     (Unavailable, Aborted, ResourceExhausted, DeadlineExceeded)
  6  authentication or authorization failed (Unauthenticated, PermissionDenied)
`

func (c *cli) topUsage() {
	w := c.stderr
	var verbs []string
	for _, g := range groups() {
		if g.verb != nil {
			verbs = append(verbs, g.name)
		}
	}
	fmt.Fprintf(w, `backupctl is the command-line client of backupstore.

Usage:
  backupctl [global flags] <group> <command> [flags] [args]
  backupctl [global flags] %s [flags] [args]
  backupctl help [<group> [<command>]]

Groups and commands:
`, strings.Join(verbs, "|"))
	for _, g := range groups() {
		fmt.Fprintf(w, "  %-11s %s\n", g.name, g.summary)
	}
	fmt.Fprint(w, "\nGlobal flags (accepted before the group and after the command):\n")
	c.printGlobalFlags(w)
	fmt.Fprint(w, `
Output: tables for people by default; -o json prints the response message as
protojson (lowerCamelCase field names, enums as strings, unset fields omitted)
on stdout. Errors go to stderr: "backupctl: <code>: <message>" and the
details, or with -o json a JSON object
{"error":{"code":"NotFound","message":"...","reason":"...","details":[...]}}.
Usage errors (exit 2) are plain text whatever -o says.

`)
	fmt.Fprint(w, exitCodesText)
}

func (c *cli) groupUsage(g *group) {
	w := c.stderr
	fmt.Fprintf(w, "backupctl %s: %s.\n\nUsage:\n  backupctl %s <command> [flags] [args]\n\nCommands:\n", g.name, g.summary, g.name)
	for _, cmd := range g.commands {
		fmt.Fprintf(w, "  %-14s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "\nRun 'backupctl %s <command> -h' for a command's flags and 'backupctl -h'\nfor the global flags and exit codes.\n", g.name)
}

func (c *cli) commandUsage(cmd *command, fs *flag.FlagSet) {
	w := c.stderr
	fmt.Fprintf(w, "Usage: backupctl %s %s\n\n%s\n", cmd.path(), cmd.args, strings.TrimSpace(cmd.help))
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !isGlobalFlag(f.Name) {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, own)
	}
	fmt.Fprint(w, "\nGlobal flags (--server, --token, --token-file, --tls, --tls-ca, --timeout, -o)\nare accepted too; see 'backupctl -h' for them and the exit codes.\n")
}

// printFlags prints flags as "  --name VALUE\n        usage (default ...)".
func printFlags(w io.Writer, flags []*flag.Flag) {
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "        %s\n", strings.ReplaceAll(usage, "\n", "\n        "))
	}
}
