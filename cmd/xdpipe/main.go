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
)

// command is one subcommand: its one-line summary and its entry point, which
// parses its own flags from args and returns when ctx is cancelled (SIGINT,
// SIGTERM) or its work is done.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

// commands is the table of subcommands.
var commands = map[string]command{
	"run":       {"run the burst pipeline: stages per queue, metrics, SIGHUP reload", runRun},
	"rxdrop":    {"receive on one queue with AF_XDP, count and drop", runRxdrop},
	"gen":       {"send generated frames (live frames or AF_XDP)", runGen},
	"ping":      {"measure round trips to a UDP reflector over AF_XDP (closed or open loop)", runPing},
	"bench":     {"benchmark receivers x frame sizes on a veth testbed", runBench},
	"rules":     {"list, change and count the steering rules of a running instance", runRules},
	"rdma-sink": {"receive, count and check packets sent over RDMA (build with -tags rdma)", runRdmaSink},
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

func main() {
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
