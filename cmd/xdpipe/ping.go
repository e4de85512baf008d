package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/ping"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// pingRing is the ping socket's RX, TX and fill ring size: replies come
// one or a rate's worth at a time, never a deep burst.
const pingRing = 512

type pingFlags struct {
	iface, hgrm string
	queue       int
	cfg         gen.Config
	bind        xsk.BindMode
	o           ping.Options
}

func parsePing(args []string) (*pingFlags, error) {
	f := &pingFlags{}
	fs := flag.NewFlagSet("ping", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xdpipe ping --iface IF --dst-mac MAC --dst-ip IP [flags]\n\n"+
			"Sends stamped UDP frames from an AF_XDP socket to a reflector (xdpipe run's reflect\n"+
			"stage, a UDP echo server), takes the replies the steering program sends to the socket\n"+
			"and reports round trips: closed loop (one frame in flight) or open loop (--rate), where\n"+
			"each round trip counts from the time its frame was due.\n\n")
		fs.PrintDefaults()
	}
	var dstMAC, srcMAC, dstIP, srcIP, bind string
	var srcPort, dstPort, size uint
	fs.StringVar(&f.iface, "iface", "", "interface to send and receive on (required)")
	fs.IntVar(&f.queue, "queue", 0, "queue: the TX queue to send on and the RX queue the replies must come back on")
	fs.StringVar(&dstMAC, "dst-mac", "", "the reflector's MAC (required)")
	fs.StringVar(&dstIP, "dst-ip", "", "the reflector's IP (required)")
	fs.UintVar(&dstPort, "dst-port", 11111, "the reflector's UDP port")
	fs.StringVar(&srcMAC, "src-mac", "", "source MAC (default: the interface's)")
	fs.StringVar(&srcIP, "src-ip", "", "source IP (default: the interface's first address of the destination's family)")
	fs.UintVar(&srcPort, "src-port", 10001, "source UDP port: replies to it are steered to the socket")
	fs.UintVar(&size, "size", 64, "frame size in bytes")
	fs.Uint64Var(&f.o.Count, "count", 0, "frames to send (0: --duration decides)")
	fs.DurationVar(&f.o.Duration, "duration", 0, "time to send (default 5s without --count)")
	fs.Float64Var(&f.o.Rate, "rate", 0, "open loop: frames per second; 0: closed loop, one frame in flight")
	fs.DurationVar(&f.o.Timeout, "timeout", time.Second, "a frame not back within this long is lost")
	fs.StringVar(&bind, "bind", "auto", "AF_XDP bind mode: copy, zerocopy or auto")
	fs.StringVar(&f.hgrm, "hgrm", "", "write the round trips' percentile distribution here, in HdrHistogram's .hgrm form (microseconds)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	var err error
	switch {
	case f.iface == "":
		return nil, errors.New("--iface is required")
	case dstMAC == "":
		return nil, errors.New("--dst-mac is required (the reflector's MAC)")
	case dstIP == "":
		return nil, errors.New("--dst-ip is required (the reflector's IP)")
	case srcPort == 0 || srcPort > 65535 || dstPort == 0 || dstPort > 65535:
		return nil, fmt.Errorf("ports must be 1..65535 (got --src-port %d, --dst-port %d)", srcPort, dstPort)
	case !(f.o.Rate >= 0) || f.o.Rate > 1e9:
		return nil, fmt.Errorf("--rate %v: want 0 (closed loop) or frames per second up to 10^9", f.o.Rate)
	case f.o.Duration < 0 || f.o.Timeout <= 0:
		return nil, errors.New("--duration must not be negative and --timeout must be positive")
	case f.queue < 0:
		return nil, fmt.Errorf("--queue %d is negative", f.queue)
	}
	if f.o.Count == 0 && f.o.Duration == 0 {
		f.o.Duration = 5 * time.Second
	}
	c := &f.cfg
	if c.DstMAC, err = parseMAC(dstMAC); err != nil {
		return nil, fmt.Errorf("--dst-mac: %w", err)
	}
	if srcMAC != "" {
		if c.SrcMAC, err = parseMAC(srcMAC); err != nil {
			return nil, fmt.Errorf("--src-mac: %w", err)
		}
	}
	if c.DstIP, err = netip.ParseAddr(dstIP); err != nil {
		return nil, fmt.Errorf("--dst-ip: %w", err)
	}
	if srcIP != "" {
		if c.SrcIP, err = netip.ParseAddr(srcIP); err != nil {
			return nil, fmt.Errorf("--src-ip: %w", err)
		}
	}
	c.Proto = gen.UDP4
	if c.DstIP.Is6() && !c.DstIP.Is4In6() {
		c.Proto = gen.UDP6
	}
	c.SrcPort, c.DstPort, c.Size = uint16(srcPort), uint16(dstPort), int(size)
	if f.bind, err = xsk.ParseBindMode(bind); err != nil {
		return nil, err
	}
	return f, nil
}

func runPing(ctx context.Context, args []string) error {
	f, err := parsePing(args)
	if err != nil {
		return err
	}
	if err := dataplane.CheckCaps(true); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(f.iface)
	if err != nil {
		return fmt.Errorf("--iface %s: %w", f.iface, err)
	}
	if err := fillSource(&f.cfg, ifc); err != nil {
		return err
	}
	tp, err := gen.NewTemplate(f.cfg)
	if err != nil {
		return err
	}
	// Only the replies to this socket's port come to it: ARP and the
	// rest go on to the kernel.
	set, _, err := rules.Parse("ping", []byte(fmt.Sprintf(
		"rules:\n  - name: replies\n    priority: 1\n    proto: udp\n    sport: %d\n    dport: %d\n    action: redirect\n",
		f.cfg.DstPort, f.cfg.SrcPort)))
	if err != nil {
		return err
	}
	frameSize := uint32(xsk.DefaultFrameSize)
	if xsk.Segments(ifc.MTU, 2048) == 1 {
		frameSize = 2048
	}
	umem, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 4 * pingRing, FrameSize: frameSize, FillSize: pingRing, CompletionSize: pingRing})
	if err != nil {
		return err
	}
	defer umem.Close()
	port, err := dataplane.OpenPort(dataplane.PortOptions{
		Iface: f.iface, Queues: []int{f.queue}, Umems: []*xsk.Umem{umem},
		Socket: xsk.SocketOptions{RXSize: pingRing, TXSize: pingRing, Bind: f.bind},
		Rules:  set, PinDir: "", Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer port.Close()
	sock := port.Sockets[0]
	p, err := ping.New(sock, tp, 0)
	if err != nil {
		return err
	}
	defer p.Close()
	loop := "closed loop, one frame in flight"
	if f.o.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g frames/s, round trips from each frame's due time", f.o.Rate)
	}
	fmt.Printf("ping: %s queue %d, AF_XDP %s, %d-byte frames %s:%d -> %s:%d, %s; "+
		"round trips, both ends read on this host's CLOCK_MONOTONIC\n",
		f.iface, f.queue, dataplane.ModeText(sock), tp.Len(), f.cfg.SrcIP, f.cfg.SrcPort, f.cfg.DstIP, f.cfg.DstPort, loop)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h := ping.NewHistogram()
	res, err := p.Run(ctx, f.o, h)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Printf("ping: sent %d in %.2fs, received %d, lost %d (late %d, other frames %d)\n",
		res.Sent, res.Elapsed.Seconds(), res.Received, res.Lost, res.Late, res.Others)
	if res.Received > 0 {
		fmt.Println("round trip:", pingPercentiles(h))
	}
	if f.hgrm != "" {
		if err := writeHgrm(f.hgrm, h); err != nil {
			return err
		}
	}
	if res.Received == 0 && res.Sent > 0 {
		return fmt.Errorf("no reply to %d frames: is a reflector on %s:%d, and do its replies come back to queue %d?",
			res.Sent, f.cfg.DstIP, f.cfg.DstPort, f.queue)
	}
	return nil
}

// pingPercentiles is a histogram of nanoseconds as a line of microseconds,
// to 10 ns: the histogram's three significant digits below 10 us, where a
// tenth of a microsecond would be a step of 2% in a ratio of two pairs.
func pingPercentiles(h *hdrhistogram.Histogram) string {
	us := func(v int64) string { return fmt.Sprintf("%.2f", float64(v)/1e3) }
	return fmt.Sprintf("p50 %s p90 %s p99 %s p99.9 %s p99.99 %s max %s us (%d round trips)",
		us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(90)), us(h.ValueAtQuantile(99)),
		us(h.ValueAtQuantile(99.9)), us(h.ValueAtQuantile(99.99)), us(h.Max()), h.TotalCount())
}

// writeHgrm writes h's percentile distribution, in microseconds.
func writeHgrm(path string, h *hdrhistogram.Histogram) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--hgrm: %w", err)
	}
	_, err = h.PercentilesPrint(f, 5, 1e3)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--hgrm: %w", err)
	}
	return nil
}
