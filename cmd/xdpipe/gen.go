package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/gen/xskport"
	"github.com/xdpipe/xdpipe/internal/caps"
	"github.com/xdpipe/xdpipe/xsk"
)

// genFlags are the flags of `xdpipe gen`, parsed and checked.
type genFlags struct {
	iface, engine     string
	bind              xsk.BindMode
	cfg               gen.Config
	run               gen.Run
	queue             int
	batch             uint
	cpuprofile        string
	quiet             bool
	dstMAC, srcMAC    string
	srcIP, dstIP      string
	proto, vary, rate string
	srcPort, dstPort  uint
	size, flows       int
}

func parseGenFlags(args []string) (*genFlags, error) {
	f := &genFlags{}
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xdpipe gen --iface IF --dst-mac MAC --dst-ip IP [flags]\n\n"+
			"Sends generated frames out of IF (run it in IF's namespace: ip netns exec NS xdpipe gen ...).\n"+
			"Every frame carries a magic, a sequence number and a CLOCK_MONOTONIC send timestamp that\n"+
			"xdpipe's receivers account (loss, duplicates, reordering, latency on a shared clock).\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&f.iface, "iface", "", "interface to send on (required)")
	fs.StringVar(&f.engine, "engine", "live", "live (BPF_PROG_RUN live frames, in-kernel, fastest, frames up to one page) or xsk (AF_XDP TX from Go, multi-buffer for jumbo)")
	bind := fs.String("bind", "auto", "xsk engine: AF_XDP bind mode, copy, zerocopy or auto (zero-copy, else copy)")
	fs.StringVar(&f.proto, "proto", "udp4", "udp4, udp6, tcp4syn or tcp6syn")
	fs.IntVar(&f.size, "size", 0, "frame size in bytes without FCS, 64..9000 (default: the smallest that holds the headers and payload)")
	fs.IntVar(&f.flows, "flows", 1, "number of flows, 1..65536")
	fs.StringVar(&f.vary, "vary", "srcport", "what tells flows apart: srcport or srcaddr")
	fs.StringVar(&f.rate, "rate", "max", "frames per second (e.g. 100000, 250k, 1.5M), or max for full speed")
	fs.Uint64Var(&f.run.Count, "count", 0, "frames to send (0: no limit)")
	fs.DurationVar(&f.run.Duration, "duration", 0, "how long to send (0: no limit; with neither --count nor --duration, until interrupted)")
	fs.StringVar(&f.srcMAC, "src-mac", "", "source MAC (default: the interface's)")
	fs.StringVar(&f.dstMAC, "dst-mac", "", "destination MAC (required)")
	fs.StringVar(&f.srcIP, "src-ip", "", "source IP (default: the interface's first address of the protocol's family)")
	fs.StringVar(&f.dstIP, "dst-ip", "", "destination IP (required)")
	fs.UintVar(&f.srcPort, "src-port", 10000, "first source port")
	fs.UintVar(&f.dstPort, "dst-port", 9, "destination port")
	fs.IntVar(&f.queue, "queue", 0, "queue: the RX queue live frames pretend to arrive on, or the TX queue of the xsk engine")
	fs.UintVar(&f.batch, "batch", 64, "frames per kernel batch (live: at most 256)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress line")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.iface == "" {
		return nil, errors.New("--iface is required")
	}
	if f.engine != "live" && f.engine != "xsk" {
		return nil, fmt.Errorf("unknown engine %q: want live or xsk", f.engine)
	}
	var err error
	if f.bind, err = xsk.ParseBindMode(*bind); err != nil {
		return nil, fmt.Errorf("--bind: %w", err)
	}
	if f.bind != xsk.BindAuto && f.engine != "xsk" {
		return nil, fmt.Errorf("--bind %v: only the xsk engine binds an AF_XDP socket; add --engine xsk", f.bind)
	}
	c := &f.cfg
	if c.Proto, err = gen.ParseProto(f.proto); err != nil {
		return nil, err
	}
	switch f.vary {
	case "srcport":
		c.Vary = gen.VarySrcPort
	case "srcaddr":
		c.Vary = gen.VarySrcAddr
	default:
		return nil, fmt.Errorf("unknown --vary %q: want srcport or srcaddr", f.vary)
	}
	if f.flows < 1 || f.flows > 65536 {
		return nil, fmt.Errorf("--flows %d out of range 1..65536", f.flows)
	}
	c.Size, c.Flows = f.size, f.flows
	if f.srcPort == 0 || f.srcPort > 65535 || f.dstPort == 0 || f.dstPort > 65535 {
		return nil, fmt.Errorf("ports must be 1..65535 (got --src-port %d, --dst-port %d)", f.srcPort, f.dstPort)
	}
	c.SrcPort, c.DstPort = uint16(f.srcPort), uint16(f.dstPort)
	if f.dstMAC == "" {
		return nil, errors.New("--dst-mac is required (the receiving interface's MAC)")
	}
	if c.DstMAC, err = parseMAC(f.dstMAC); err != nil {
		return nil, fmt.Errorf("--dst-mac: %w", err)
	}
	if f.srcMAC != "" {
		if c.SrcMAC, err = parseMAC(f.srcMAC); err != nil {
			return nil, fmt.Errorf("--src-mac: %w", err)
		}
	}
	if f.dstIP == "" {
		return nil, errors.New("--dst-ip is required")
	}
	if c.DstIP, err = netip.ParseAddr(f.dstIP); err != nil {
		return nil, fmt.Errorf("--dst-ip: %w", err)
	}
	if f.srcIP != "" {
		if c.SrcIP, err = netip.ParseAddr(f.srcIP); err != nil {
			return nil, fmt.Errorf("--src-ip: %w", err)
		}
	}
	if f.run.Rate, err = parseRate(f.rate); err != nil {
		return nil, fmt.Errorf("--rate: %w", err)
	}
	if f.run.Duration < 0 {
		return nil, fmt.Errorf("--duration %v is negative", f.run.Duration)
	}
	if f.batch == 0 || f.batch > 256 {
		return nil, fmt.Errorf("--batch %d out of range 1..256", f.batch)
	}
	return f, nil
}

func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil, err
	}
	if len(m) != 6 {
		return nil, fmt.Errorf("%q is not a 6-byte Ethernet MAC", s)
	}
	return m, nil
}

// parseRate parses "max" or a positive number of frames/s with an optional
// k or M suffix.
func parseRate(s string) (float64, error) {
	if s == "max" || s == "full" {
		return 0, nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of frames per second or max", s)
	}
	v *= mult
	switch {
	case !(v > 0):
		return 0, fmt.Errorf("rate %v frames/s: want a positive rate (or max for full speed)", v)
	case v > 1e9:
		return 0, fmt.Errorf("rate %v frames/s: more than 10^9 frames/s, beyond any interface; use max for full speed", v)
	}
	return v, nil
}

// fillFromInterface defaults the source MAC and IP from the interface.
func (f *genFlags) fillFromInterface(ifc *net.Interface) error { return fillSource(&f.cfg, ifc) }

// fillSource defaults c's source MAC and IP from the interface: its MAC,
// and its first address of the destination's family.
func fillSource(c *gen.Config, ifc *net.Interface) error {
	if c.SrcMAC == nil {
		if len(ifc.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet MAC: give --src-mac", ifc.Name)
		}
		c.SrcMAC = ifc.HardwareAddr
	}
	if !c.SrcIP.IsValid() {
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		want6 := c.DstIP.Is6() && !c.DstIP.Is4In6()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ip, ok := netip.AddrFromSlice(ipn.IP)
				if !ok || ip.Unmap().Is6() != want6 || ip.IsLinkLocalUnicast() {
					continue
				}
				c.SrcIP = ip.Unmap()
				break
			}
		}
		if !c.SrcIP.IsValid() {
			return fmt.Errorf("interface %s has no address of %s's family: give --src-ip", ifc.Name, c.DstIP)
		}
	}
	return nil
}

func runGen(ctx context.Context, args []string) error {
	f, err := parseGenFlags(args)
	if err != nil {
		return err
	}
	if err := caps.Check("run the generator's BPF program and open AF_XDP sockets", caps.BPF, caps.NetAdmin, caps.NetRaw); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(f.iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w (run in its namespace: ip netns exec NS xdpipe gen ...)", f.iface, err)
	}
	if err := f.fillFromInterface(ifc); err != nil {
		return err
	}
	tp, err := gen.NewTemplate(f.cfg)
	if err != nil {
		return err
	}
	// The live engine's BPF_PROG_RUN resolves the ifindex in the calling
	// thread's namespace; keep this goroutine on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var eng gen.Engine
	switch f.engine {
	case "live":
		eng, err = gen.NewLive(tp, gen.LiveOptions{Ifindex: ifc.Index, Queue: f.queue, BatchSize: uint32(f.batch)})
	case "xsk":
		eng, err = newXSKEngine(tp, ifc, f.queue, f.bind)
	}
	if err != nil {
		return err
	}
	defer eng.Close()

	if f.cpuprofile != "" {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	size := tp.Len()
	if !f.quiet {
		f.run.Progress = func(p gen.Progress) {
			if p.Final {
				return
			}
			fmt.Fprintf(os.Stderr, "%8.1fs  sent %12d  %9.3f Mfps  %8.3f Gbit/s\n",
				p.Elapsed.Seconds(), p.Sent, p.Rate/1e6, p.Rate*float64(size)*8/1e9)
		}
	}
	rate := "full speed"
	if f.run.Rate > 0 {
		rate = fmt.Sprintf("%.0f frames/s", f.run.Rate)
	}
	fmt.Fprintf(os.Stderr, "xdpipe gen: %s engine on %s: %s %d-byte frames, %d flow(s), %s -> %s, %s\n",
		f.engine, f.iface, tp.Config().Proto, size, tp.Config().Flows, tp.Config().SrcIP, tp.Config().DstIP, rate)
	res, err := eng.Send(ctx, f.run)
	dropped := ""
	if res.Dropped > 0 {
		dropped = fmt.Sprintf(" (%d more made but refused by the driver: not sent)", res.Dropped)
	}
	fmt.Printf("sent %d frames in %v: %.3f Mfps, %.3f Gbit/s%s\n",
		res.Sent, res.Elapsed.Round(time.Millisecond), res.Rate()/1e6, res.Rate()*float64(size)*8/1e9, dropped)
	return err
}

func newXSKEngine(tp *gen.Template, ifc *net.Interface, queue int, bind xsk.BindMode) (gen.Engine, error) {
	e, err := xskport.Open(tp, ifc.Name, queue, gen.XSKOptions{Ifindex: ifc.Index, Bind: bind})
	if err != nil {
		return nil, err
	}
	mode := fmt.Sprintf("%s mode", e.Mode())
	if why := e.Fallback(); why != "" {
		mode += " (auto: " + why + ")"
	}
	fmt.Fprintf(os.Stderr, "xdpipe gen: AF_XDP socket on queue %d in %s, %s\n", queue, mode, e.XDPFeatures())
	return e, nil
}
