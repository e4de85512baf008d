package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/xdpipe/xdpipe/bench"
)

// runBench is `xdpipe bench`: the receiver x frame-size matrix on a veth
// testbed it makes and removes. `xdpipe bench receiver ...` is the child
// the harness starts for each cell; users do not run it.
func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "receiver" {
		return bench.ReceiverMain(args[1:])
	}
	if len(args) > 0 && args[0] == "latency" {
		return runBenchLatency(ctx, args[1:])
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xdpipe bench [flags]\n       xdpipe bench latency [flags]\n\n"+
			"Builds a veth testbed in two fresh network namespaces, sends the same generated traffic\n"+
			"(live frames; AF_XDP above one page) to each receiver at each frame size, one after another,\n"+
			"and reports frames/s, Gbit/s, receiver CPU per million frames and the ratio to the\n"+
			"in-kernel XDP_DROP ceiling, as a table and JSON (xdpipe-chart draws the JSON). --repeat N runs\n"+
			"the matrix N times, the cells' order rotated each round, and reports median, min and max.\n"+
			"Needs root.\n\nreceivers: %s\n\n",
			strings.Join(bench.Receivers(), ", "))
		fs.PrintDefaults()
	}
	receivers := fs.String("receivers", "all", "comma-separated receivers, or all")
	sizes := fs.String("sizes", "64,512,1500,9000", "comma-separated frame sizes in bytes")
	rates := fs.String("rates", "max", "comma-separated offered rates in frames/s (10k, 1M, max: full speed); several make a\nsweep of receiver CPU per frame and kernel drops against the rate")
	dur := fs.Duration("duration", 3*time.Second, "traffic time per cell")
	flows := fs.Int("flows", 1, "flows in the generated traffic")
	retries := fs.Int("retries", 2, "repeat a cell disturbed by other processes up to this often")
	repeat := fs.Int("repeat", 1, "run the matrix this many times, each round in a rotated cell order, and report every\ncell's and ratio's median, min and max")
	jsonOut := fs.String("json", "bench.json", "write the report as JSON here (empty: no JSON)")
	mdOut := fs.String("markdown", "", "also write the table as Markdown here")
	quiet := fs.Bool("quiet", false, "no progress bar")
	asavie := fs.String("asavie-peer", "hack/asavie-peer", "directory of the asavie/xdp peer module (built with go build on first use)")
	xskC := fs.String("xsk-c-peer", "hack/xsk-c-peer", "directory of the C libxdp peer (built with make on first use; hack/deps.sh bench)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the harness (the generator) to this file")
	perf := fs.Bool("perf", false, "profile the generator's CPU in each cell with perf record (cpu-clock) and report its\ntop symbols: in copy mode the kernel copies frames into the receiver's UMEM there")
	from := fs.String("from", "", "run nothing: rewrite the table and Markdown from this JSON report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	c := bench.Config{Duration: *dur, Flows: *flows, Retries: *retries, Repeat: *repeat, Log: os.Stderr, Xdpipe: exe, AsaviePeer: *asavie,
		XskCPeer: *xskC}
	c.GenCPU, c.RxCPU = bench.DefaultCPUs()
	if !*quiet {
		c.Progress = os.Stderr
	}
	if *receivers != "all" {
		c.Receivers = strings.Split(*receivers, ",")
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--sizes: %q is not a number", s)
		}
		c.Sizes = append(c.Sizes, n)
	}
	for _, s := range strings.Split(*rates, ",") {
		r, err := bench.ParseRate(s)
		if err != nil {
			return fmt.Errorf("--rates: %w", err)
		}
		c.Rates = append(c.Rates, r)
	}
	if *perf {
		if c.Perf, err = exec.LookPath("perf"); err != nil {
			return errors.New("--perf: no perf command (Debian: apt-get install linux-perf)")
		}
	}
	if *retries < 0 {
		return errors.New("--retries must not be negative")
	}
	if *repeat < 1 {
		return errors.New("--repeat must be at least 1")
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var rep *bench.Report
	if *from != "" {
		if rep, err = bench.ReadJSON(*from); err != nil {
			return err
		}
		rep.Ratios = rep.Compare() // reports from before ratios were kept
		if *jsonOut == *from {
			*jsonOut = ""
		}
	} else {
		rep, err = bench.Run(ctx, c)
		if rep == nil {
			return err
		}
		rep.Command = "xdpipe " + strings.Join(append([]string{"bench"}, args...), " ")
	}
	fmt.Println()
	if werr := rep.WriteTable(os.Stdout); werr != nil {
		return werr
	}
	rep.WriteProfiles(os.Stdout)
	fmt.Println()
	if werr := rep.WriteRatios(os.Stdout); werr != nil {
		return werr
	}
	if len(rep.Rates) > 0 {
		fmt.Println()
		if werr := rep.WriteSweep(os.Stdout); werr != nil {
			return werr
		}
	}
	if werr := writeReport(rep, *jsonOut, *mdOut); werr != nil {
		return werr
	}
	return err
}

// runBenchLatency is `xdpipe bench latency`: round trips of clients and
// reflectors side by side on a veth testbed.
func runBenchLatency(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench latency", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xdpipe bench latency [flags]\n\n"+
			"Builds a veth testbed in two fresh network namespaces and measures round trips between a client\n"+
			"(sockperf or xdpipe ping) on CPU 0 and a reflector on CPU 1, pair after pair: each in a closed loop\n"+
			"(one message in flight), then in open loops at fractions of the rate that closed loop reached, round\n"+
			"trips taken from each message's due time. Reports p50 to p99.99 and max, the CPU each side used and\n"+
			"the ratios the project sets bars on, as a table and JSON (xdpipe-chart draws the JSON). Needs root and\n"+
			"sockperf (hack/deps.sh test).\n\npairs: %s\n\n", strings.Join(bench.LatencyPairs(), ", "))
		fs.PrintDefaults()
	}
	pairs := fs.String("pairs", "all", "comma-separated pairs, or all")
	loads := fs.String("loads", "10,50,90", "open loops' rates, in percent of each pair's closed-loop rate; none: closed loop only")
	dur := fs.Duration("duration", 3*time.Second, "sending time per cell (sockperf's is rounded up to whole seconds)")
	repeat := fs.Int("repeat", 1, "rounds, each with the pairs' order rotated; report medians, min and max")
	warmup := fs.Duration("warmup", time.Second, "closed loop against each reflector before its cells, not counted (0: none)")
	payload := fs.Int("payload", 64, "UDP payload bytes")
	jsonOut := fs.String("json", "latency.json", "write the report as JSON here (empty: no JSON)")
	mdOut := fs.String("markdown", "", "also write the tables as Markdown here")
	quiet := fs.Bool("quiet", false, "no progress bar")
	xskC := fs.String("xsk-c-peer", "hack/xsk-c-peer", "directory of the C libxdp peer, whose reflect mode is one pair's reflector")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *repeat < 1 {
		return errors.New("--repeat must be at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if *warmup < 0 {
		return errors.New("--warmup must not be negative")
	}
	if *warmup == 0 {
		*warmup = -1 // LatencyConfig's none
	}
	c := bench.LatencyConfig{Duration: *dur, Repeat: *repeat, Warmup: *warmup, Payload: *payload, Xdpipe: exe, XskCPeer: *xskC, Log: os.Stderr}
	if *pairs != "all" {
		c.Pairs = strings.Split(*pairs, ",")
	}
	if *loads == "none" {
		c.ClosedOnly = true
	} else {
		for _, s := range strings.Split(*loads, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || !(v > 0 && v <= 100) {
				return fmt.Errorf("--loads: %q is not a percentage in (0, 100]", s)
			}
			c.Loads = append(c.Loads, v/100)
		}
	}
	if c.Sockperf, err = exec.LookPath("sockperf"); err != nil {
		c.Sockperf = "" // the sockperf pairs say so in their cells
	}
	if !*quiet {
		c.Progress = os.Stderr
	}
	rep, err := bench.RunLatency(ctx, c)
	if rep == nil {
		return err
	}
	rep.Command = "xdpipe " + strings.Join(append([]string{"bench", "latency"}, args...), " ")
	fmt.Println()
	if werr := rep.WriteTable(os.Stdout); werr != nil {
		return werr
	}
	if werr := writeReport(rep, *jsonOut, *mdOut); werr != nil {
		return werr
	}
	return err
}

// writeReport writes a report as JSON to jsonOut and as Markdown to mdOut,
// each if named.
func writeReport(rep interface {
	WriteJSON(path string) error
	WriteMarkdown(w io.Writer) error
}, jsonOut, mdOut string) error {
	if jsonOut != "" {
		if err := rep.WriteJSON(jsonOut); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", jsonOut)
	}
	if mdOut == "" {
		return nil
	}
	f, err := os.Create(mdOut)
	if err != nil {
		return err
	}
	err = rep.WriteMarkdown(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		fmt.Fprintf(os.Stderr, "wrote %s\n", mdOut)
	}
	return err
}
