package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/rdma"
)

// rdmaSinkOptions are rdma-sink's flags.
type rdmaSinkOptions struct {
	listen     string
	buffers    int
	bufferSize int
	pcap       string
	once       bool
	track      bool
	interval   time.Duration
	spin       bool
}

func parseRdmaSink(args []string, stderr io.Writer) (rdmaSinkOptions, error) {
	o := rdmaSinkOptions{}
	fs := flag.NewFlagSet("rdma-sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xdpipe rdma-sink --listen ADDR [flags]\n\n"+
			"Accepts RDMA connections from xdpipe's rdma stage (rdma_cm on ADDR, host:port),\n"+
			"receives the packets, counts them, checks the generator's sequence numbers\n"+
			"(loss, duplicates, reordering) and optionally writes them to a pcap file.\n"+
			"Needs a binary built with -tags rdma and an RDMA device (or SoftRoCE).\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.listen, "listen", "", "address to listen on, host:port (required; empty host: all)")
	fs.IntVar(&o.buffers, "buffers", 512, "receive buffers posted per connection: the sender's credits")
	fs.IntVar(&o.bufferSize, "buffer-size", 2048, "bytes per receive buffer: the largest packet accepted (9216 for a 9000-byte MTU; a sender announcing larger packets is refused)")
	fs.StringVar(&o.pcap, "pcap", "", "write every received packet to this pcap file (Ethernet)")
	fs.BoolVar(&o.once, "once", false, "exit after the first connection ends")
	fs.BoolVar(&o.track, "track", true, "check generated frames' sequence numbers (xdpipe gen payload)")
	fs.DurationVar(&o.interval, "interval", time.Second, "progress line interval (0: none)")
	fs.BoolVar(&o.spin, "spin", false, "busy-poll also when idle (one whole core, lowest latency)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if o.listen == "" {
		return o, errors.New("--listen is required (host:port)")
	}
	if o.buffers < 1 || o.bufferSize < 64 {
		return o, fmt.Errorf("--buffers must be >= 1 and --buffer-size >= 64")
	}
	// The buffers are pinned (registered) memory, per connection: bound
	// them before a typo allocates them.
	if o.bufferSize > maxSinkBufferSize || o.buffers*o.bufferSize > maxSinkMemory {
		return o, fmt.Errorf("--buffers %d of --buffer-size %d: at most %d bytes each and %d MiB per connection; lower them",
			o.buffers, o.bufferSize, maxSinkBufferSize, maxSinkMemory>>20)
	}
	return o, nil
}

// Bounds on a sink's receive buffers: a buffer holds the largest frame of
// any MTU (64 KiB); a connection's buffers, 512 of them by default, pin
// at most 256 MiB.
const (
	maxSinkBufferSize = 65536
	maxSinkMemory     = 256 << 20
)

func runRdmaSink(ctx context.Context, args []string) error {
	o, err := parseRdmaSink(args, os.Stderr)
	if err != nil {
		return err
	}
	l, err := rdma.Listen(o.listen, rdma.ListenOptions{Buffers: o.buffers, BufferSize: o.bufferSize})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Printf("rdma-sink: listening on %s (%d buffers of %d bytes per connection)\n", l.Addr(), o.buffers, o.bufferSize)

	var pw *pcapgo.Writer
	if o.pcap != "" {
		f, err := os.Create(o.pcap)
		if err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
		defer f.Close()
		bw := bufio.NewWriterSize(f, 256<<10)
		defer bw.Flush()
		pw = pcapgo.NewWriter(bw)
		if err := pw.WriteFileHeader(uint32(o.bufferSize), layers.LinkTypeEthernet); err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
	}
	for {
		r, err := l.Accept(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Printf("rdma-sink: connection from %s\n", r.Remote())
		err = sinkOne(ctx, r, o, pw)
		r.Close()
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "rdma-sink: %s: %v\n", r.Remote(), err)
		}
		if o.once || ctx.Err() != nil {
			return err
		}
	}
}

// sinkOne drains one connection and prints its totals.
func sinkOne(ctx context.Context, r *rdma.Receiver, o rdmaSinkOptions, pw *pcapgo.Writer) error {
	sink := &rdma.Sink{Spin: o.spin}
	var tr *gen.Tracker
	if o.track {
		tr = gen.NewTracker()
		sink.Seq = tr
	}
	var pcapErr error
	if pw != nil {
		sink.Tap = func(p []byte) {
			if pcapErr != nil {
				return
			}
			ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(p), Length: len(p)}
			pcapErr = pw.WritePacket(ci, p)
		}
	}
	if o.interval > 0 {
		last := time.Now()
		sink.Progress = func(st rdma.SinkStats) {
			if time.Since(last) >= o.interval {
				last = time.Now()
				fmt.Printf("rdma-sink: %d packets, %d bytes, %.3f Gbit/s, %.0f packets/s\n", st.Packets, st.Bytes, st.Gbps(), st.PPS())
			}
		}
	}
	st, err := sink.Run(ctx, r)
	fmt.Printf("rdma-sink: %s: %d packets, %d bytes in %v: %.3f Gbit/s, %.0f packets/s\n",
		r.Remote(), st.Packets, st.Bytes, st.Elapsed.Round(time.Millisecond), st.Gbps(), st.PPS())
	if tr != nil {
		ts := tr.Stats(0)
		fmt.Printf("rdma-sink: sequence: %v; others %d\n", ts, ts.Others)
	}
	if pcapErr != nil {
		return fmt.Errorf("pcap: %w", pcapErr)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
