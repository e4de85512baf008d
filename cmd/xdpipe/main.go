// Command xdpipe is the one binary of the xdpipe packet processing service:
// it steers frames with XDP into AF_XDP sockets, drains them with a burst
// pipeline, generates test traffic and benchmarks the lot.
//
// Each subcommand lives in its own file and is listed in commands below.
// This file only dispatches, and turns errors into one line and an exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/xdpipe/xdpipe/internal/hangup"
)

// command is one subcommand: its one-line summary and its entry point, which
// parses its own flags from args and returns when ctx is cancelled (SIGINT,
// SIGTERM) or its work is done. A command that reloads takes its SIGHUPs
// from reloadRequests(ctx); the others stop on SIGHUP as on SIGTERM.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
	reloads bool
}

// commands is the table of subcommands.
var commands = map[string]command{
	"run":       {"run the burst pipeline: stages per queue, metrics, SIGHUP reload", runRun, true},
	"rxdrop":    {"receive on one queue with AF_XDP, count and drop", runRxdrop, false},
	"gen":       {"send generated frames (live frames or AF_XDP)", runGen, false},
	"ping":      {"measure round trips to a UDP reflector over AF_XDP (closed or open loop)", runPing, false},
	"bench":     {"benchmark receivers x frame sizes on a veth testbed", runBench, false},
	"rules":     {"list, change and count the steering rules of a running instance", runRules, false},
	"rdma-sink": {"receive, count and check packets sent over RDMA (build with -tags rdma)", runRdmaSink, false},
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: xdpipe <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'xdpipe <command> -h' for a command's flags.\n")
}

// reloadKey carries a reloading command's SIGHUPs in its context.
type reloadKey struct{}

// reloadRequests are the SIGHUPs caught for a command that reloads (at most
// one pending: several before a reload ask for one), or nil.
func reloadRequests(ctx context.Context) <-chan os.Signal {
	c, _ := ctx.Value(reloadKey{}).(<-chan os.Signal)
	return c
}

func main() {
	// SIGHUP is caught from the start (package hangup): systemd's
	// ExecReload sends it whenever asked, also while run is still
	// starting, and an uncaught SIGHUP ends the process there, leaving its
	// pins behind. run takes it once it can reload.
	hup := hangup.Signals()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	if a := os.Args[1]; a == "-h" || a == "--help" || a == "help" {
		usage()
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "xdpipe: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if cmd.reloads {
		ctx = context.WithValue(ctx, reloadKey{}, hup)
	} else {
		go func() {
			<-hup
			stop()
		}()
	}
	err := cmd.run(ctx, os.Args[2:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// -h and --help asked for the usage, which was printed: success,
		// as Go's flag package exits since Go 1.16.
	default:
		fmt.Fprintf(os.Stderr, "xdpipe %s: %v\n", os.Args[1], explain(err))
		os.Exit(1)
	}
}
