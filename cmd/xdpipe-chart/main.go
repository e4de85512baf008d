// Command xdpipe-chart draws the chart of an `xdpipe bench` or `xdpipe
// bench latency` JSON report:
//
//	xdpipe-chart [-o bench.png] bench.json
//
// It is a module of its own (with a replace directive to the xdpipe module
// beside it, whose package bench reads the reports), so that gonum/plot and
// its fonts, LaTeX, PDF and image dependencies stay out of xdpipe's go.mod
// and out of the build of every program that imports xdpipe's packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/xdpipe/xdpipe/bench"
)

func main() {
	fs := flag.NewFlagSet("xdpipe-chart", flag.ContinueOnError)
	out := fs.String("o", "bench.png", "write the chart here")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xdpipe-chart [-o bench.png] bench.json\n\nDraws frames/s by frame size, one line per receiver, from an `xdpipe bench --json` report;\nor, from an `xdpipe bench latency` report, round trips by percentile and against the offered rate.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	var err error
	if bench.IsLatencyJSON(fs.Arg(0)) {
		var rep *bench.LatencyReport
		if rep, err = bench.ReadLatencyJSON(fs.Arg(0)); err == nil {
			err = writeLatencyPNG(rep, *out)
		}
	} else {
		var rep *bench.Report
		if rep, err = bench.ReadJSON(fs.Arg(0)); err == nil {
			err = writePNG(rep, *out)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdpipe-chart: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
}
