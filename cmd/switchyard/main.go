// Command switchyard is the one Switchyard binary:
//
//	switchyard gateway   run a gateway (embedded echo backend by default)
//	switchyard backend   run a backend shard of an example app
//	switchyard client    an interactive device client
//	switchyard ctl       the admin API from the command line
//	switchyard version   print the version, commit and Go version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/switchyard-gw/switchyard/internal/config"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..."; without the latter, commitID
// takes the revision the go command recorded from the checkout.
var (
	version = "dev"
	commit  = ""
)

// commitID is the source revision of the binary: main.commit, else the
// VCS revision in the build info (12 digits, "+dirty" when the tree had
// changes), else "unknown".
func commitID() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the command ran and failed
	exitUsage  = 2 // bad command line or configuration: nothing was started
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "gateway":
		err = runGateway(ctx, args[1:], stdout, stderr)
	case "backend":
		err = runBackend(ctx, args[1:], stdout, stderr)
	case "client":
		err = runClient(ctx, args[1:], stdin, stdout)
	case "ctl":
		return runCtl(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "switchyard: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return exitStatus(stderr, err)
}

// exitStatus reports err and maps it to the exit status: 2 for a bad
// command line or configuration (every problem listed), 1 otherwise.
func exitStatus(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "switchyard:", err)
	var problems *config.Problems
	if errors.As(err, &problems) || errors.Is(err, errUsage) {
		return exitUsage
	}
	return exitFailed
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "switchyard %s\ncommit %s\n%s\n", version, commitID(), runtime.Version())
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: switchyard <command> [flags]

commands:
  gateway   run a gateway; with no configuration: devices on 127.0.0.1:7400,
            admin on 127.0.0.1:7480, auth off, embedded echo backend
  backend   run a backend shard of an example app (echo, counter, rooms)
            that joins the cluster by gossip
  client    connect as a device; each typed line goes out as DATA
  ctl       call a gateway's admin API: info, members, ring, sessions,
            session, kick, drain, drain-shard, reload
  version   print the version, commit and Go version (also --version)

gateway and backend read --config FILE (YAML), SWITCHYARD_* environment
variables and flags, in that order of precedence (docs/configuration.md);
--print-config prints the result. SIGHUP reloads it.

Run 'switchyard <command> -h' for the flags of a command.
`)
}
