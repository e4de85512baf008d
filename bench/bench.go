package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/gen/xskport"
	"github.com/xdpipe/xdpipe/pipeline"
)

// Config is a benchmark matrix. The zero value runs every receiver at
// every size for 3 seconds a cell.
type Config struct {
	// Receivers to run, in order (default Receivers()). "xdp-drop", the
	// ceiling, is moved first if listed: the first round runs it first for
	// each size.
	Receivers []string
	// Sizes are frame sizes in bytes (default 64, 512, 1500, 9000).
	Sizes []int
	// Rates are the offered rates in frames per second, each run at every
	// size (default 0 alone: full speed). Several make a sweep: receiver
	// CPU per frame and kernel drops against the offered rate (WriteSweep).
	Rates []float64
	// Duration of each cell's traffic (default 3s).
	Duration time.Duration
	// Flows of the generated traffic (default 1).
	Flows int
	// Self is the command that starts an in-process receiver child; the
	// harness appends --kind etc. Default: this executable with
	// "bench receiver".
	Self []string
	// Env is added to the children's environment.
	Env []string
	// Xdpipe is the xdpipe binary, for the receivers that are its own
	// commands (xdpipe-spin, xdpipe-wakeup); empty skips them.
	Xdpipe string
	// AsaviePeer is the directory of the hack/asavie-peer module; empty
	// skips asavie-xdp.
	AsaviePeer string
	// XskCPeer is the directory of hack/xsk-c-peer (the C libxdp peer,
	// built with make on first use); empty skips c-xsk-rxdrop, c-xsk-poll
	// and c-xsk-l2fwd.
	XskCPeer string
	// GenCPU and RxCPU pin the generator thread and the receiver process
	// (zero: not pinned; xdpipe bench pins them to DefaultCPUs).
	GenCPU, RxCPU pipeline.CPU
	// Retries is how often a disturbed cell is repeated (0: never).
	Retries int
	// Repeat is how many rounds of the whole matrix to run (0: 1). Rounds
	// after the first run the cells in a rotated order (see roundOrder), and
	// the report gives each cell's and each ratio's median, minimum and
	// maximum over the rounds.
	Repeat int
	// Perf, if set, is the perf binary: each cell then runs with the
	// generator's CPU under `perf record -e cpu-clock`, and its result
	// keeps the top PerfTop symbols (Result.GenProfile; default 8). perf
	// runs on whichever CPU it likes, and is no disturbance.
	Perf    string
	PerfTop int
	// Disturbance is the CPU share (of one CPU, over the cell) that other
	// processes may use before a cell counts as disturbed (default 0.05).
	Disturbance float64
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
	// Log receives per-cell notes (nil: none).
	Log io.Writer
}

// Result is one cell of the matrix.
type Result struct {
	Receiver string `json:"receiver"`
	Size     int    `json:"size"`
	// Rate is the offered rate in frames/s (0: full speed).
	Rate     float64 `json:"offered_fps,omitempty"`
	Engine   string  `json:"generator"`
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	// Seconds of traffic.
	Seconds float64 `json:"seconds"`
	SentFps float64 `json:"sent_fps"`
	Fps     float64 `json:"fps"`
	Gbps    float64 `json:"gbps"`
	// Receiver process CPU seconds per million frames received.
	CPUPerMframe float64 `json:"cpu_s_per_mframe"`
	// Machine-wide softirq CPU seconds per million frames: the kernel's
	// share of receiving on a veth (and of the generator's XDP_TX).
	SoftirqPerMframe float64 `json:"softirq_s_per_mframe"`
	RatioToCeiling   float64 `json:"ratio_to_ceiling"`
	// Drops are the frames the kernel dropped at the receiver's AF_XDP
	// socket (XDP_STATISTICS rx_dropped, which counts an empty fill ring
	// in copy mode, plus rx_ring_full), as the receiver reports them.
	Drops uint64 `json:"kernel_drops,omitempty"`
	// CPU seconds other processes used during the cell, and the busiest.
	OtherCPU   float64 `json:"other_cpu_s"`
	OtherTop   string  `json:"other_top,omitempty"`
	Disturbed  bool    `json:"disturbed"`
	Attempts   int     `json:"attempts"`
	Note       string  `json:"note,omitempty"`
	Error      string  `json:"error,omitempty"`
	Skipped    bool    `json:"skipped,omitempty"`
	RxCPUSecs  float64 `json:"rx_cpu_s"`
	SoftirqSec float64 `json:"softirq_s"`
	// CPU seconds the whole machine was busy during the cell (/proc/stat),
	// of CPUs x seconds available.
	MachineBusy float64 `json:"machine_busy_s"`
	// GenProfile is the generator CPU's profile with Config.Perf: its top
	// symbols, most samples first (a repeated run's: their mean shares).
	GenProfile []Symbol `json:"generator_profile,omitempty"`
	// Spread, in a repeated run's Results only: the rates, per-frame CPU
	// and ratio to the ceiling above are then medians over the rounds the
	// cell ran without error, and counts and seconds totals over them.
	Spread *CellSpread `json:"spread,omitempty"`
}

// Header is what a report says of its run.
type Header struct {
	Started  time.Time `json:"started"`
	Kernel   string    `json:"kernel"`
	CPUs     int       `json:"cpus"`
	Duration float64   `json:"cell_seconds"`
	Command  string    `json:"command,omitempty"`
}

// newHeader is the header of a run starting now with cells of d.
func newHeader(d time.Duration) Header {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return Header{Started: time.Now().UTC(), Kernel: unix.ByteSliceToString(uts.Release[:]), CPUs: runtime.NumCPU(),
		Duration: d.Seconds()}
}

// Report is the whole matrix.
type Report struct {
	Header
	Results   []Result `json:"results"`
	Receivers []string `json:"receivers"`
	Sizes     []int    `json:"sizes"`
	// Rates are the offered rates (frames/s, 0: full speed), when not only
	// full speed.
	Rates []float64 `json:"rates,omitempty"`
	// Ratios are Compare's, filled in when the run ends.
	Ratios []Ratio `json:"ratios,omitempty"`
	// Rounds, in a repeated run (Config.Repeat above 1) only: every
	// round's cells as measured, in Results' order; Results then folds
	// them into one cell each (see Result.Spread).
	Rounds [][]Result `json:"rounds,omitempty"`
}

// DefaultSizes are the frame sizes of the full matrix.
var DefaultSizes = []int{64, 512, 1500, 9000}

// DefaultCPUs are the CPUs xdpipe bench pins the generator thread and the
// receiver process to, apart: CPU 0 and CPU 1, or only the generator on a
// machine with one CPU.
func DefaultCPUs() (gen, rx pipeline.CPU) {
	gen = pipeline.OnCPU(0)
	if runtime.NumCPU() >= 2 {
		rx = pipeline.OnCPU(1)
	}
	return gen, rx
}

func (c *Config) defaults() error {
	if len(c.Receivers) == 0 {
		c.Receivers = Receivers()
	}
	known := map[string]bool{}
	for _, r := range Receivers() {
		known[r] = true
	}
	for _, r := range c.Receivers {
		if !known[r] {
			return fmt.Errorf("unknown receiver %q (have %s)", r, strings.Join(Receivers(), ", "))
		}
	}
	// The ceiling first.
	for i, r := range c.Receivers {
		if r == "xdp-drop" && i != 0 {
			c.Receivers = append([]string{"xdp-drop"}, append(c.Receivers[:i:i], c.Receivers[i+1:]...)...)
			break
		}
	}
	if len(c.Sizes) == 0 {
		c.Sizes = DefaultSizes
	}
	for _, s := range c.Sizes {
		if s < gen.MinSize(gen.UDP4) || s > gen.MaxFrameSize {
			return fmt.Errorf("frame size %d out of range %d..%d", s, gen.MinSize(gen.UDP4), gen.MaxFrameSize)
		}
	}
	if len(c.Rates) == 0 {
		c.Rates = []float64{0}
	}
	for _, r := range c.Rates {
		if !(r >= 0) || math.IsInf(r, 0) {
			return fmt.Errorf("offered rate %v frames/s: want a positive rate, or 0 for full speed", r)
		}
	}
	if err := runDefaults(&c.Duration, &c.Repeat, &c.Self); err != nil {
		return err
	}
	if c.Flows == 0 {
		c.Flows = 1
	}
	if c.Retries < 0 {
		return fmt.Errorf("negative retries %d", c.Retries)
	}
	if c.Disturbance == 0 {
		c.Disturbance = 0.05
	}
	if c.Perf != "" {
		if _, ok := c.GenCPU.Get(); !ok {
			return errors.New("a profile of the generator's CPU needs the generator pinned to one")
		}
		if c.PerfTop == 0 {
			c.PerfTop = 8
		}
	}
	return nil
}

// runDefaults checks and fills in what both matrices take: the cells'
// duration (default 3s), the rounds (default 1) and the command that
// starts an in-process child (default this executable's bench receiver).
func runDefaults(d *time.Duration, repeat *int, self *[]string) error {
	if *d == 0 {
		*d = 3 * time.Second
	}
	if *d < 0 {
		return fmt.Errorf("negative duration %v", *d)
	}
	if *repeat < 0 {
		return fmt.Errorf("negative repeat %d", *repeat)
	}
	if *repeat == 0 {
		*repeat = 1
	}
	if *self == nil {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*self = []string{exe, "bench", "receiver"}
	}
	return nil
}

// genReq asks the generator thread to send.
type genReq struct {
	ctx   context.Context
	tp    *gen.Template
	run   gen.Run
	xsk   bool // the xsk engine whatever the size
	bare  bool // live frames through the bare XDP_TX program (gen.LiveOptions.Bare)
	reply chan genRes
}

type genRes struct {
	res    gen.Result
	engine string
	err    error
}

// startGenerator runs a goroutine locked to a thread in namespace A,
// pinned to cpu, that serves genReqs until reqs is closed. The thread is
// never returned to the runtime's pool (it exits with the goroutine).
func startGenerator(tb *testbed, cpu pipeline.CPU) (chan<- genReq, error) {
	reqs := make(chan genReq)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := enterNS(tb.nsA); err != nil {
			ready <- err
			return
		}
		_ = cpu.Pin() // best effort: an unpinned generator still runs
		ready <- nil
		for r := range reqs {
			r.reply <- sendOnce(tb, r)
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return reqs, nil
}

// sendOnce builds the engine for the frame size and sends: live frames up
// to a page, the xsk engine above or when asked for.
func sendOnce(tb *testbed, r genReq) genRes {
	var eng gen.Engine
	var err error
	name := "live"
	if r.bare {
		name = "bare"
	}
	if !r.xsk && r.tp.Len() <= gen.MaxLiveFrameSize() {
		eng, err = gen.NewLive(r.tp, gen.LiveOptions{Ifindex: tb.ifindexA, Chunk: 1 << 18, Bare: r.bare})
	} else {
		name = "xsk"
		eng, err = newXSK(r.tp, tb.ifindexA)
	}
	if err != nil {
		return genRes{engine: name, err: err}
	}
	defer eng.Close()
	res, err := eng.Send(r.ctx, r.run)
	return genRes{res: res, engine: name, err: err}
}

// newXSK is the generator for frames above a page (live frames cannot
// send them): AF_XDP TX, multi-buffer.
func newXSK(tp *gen.Template, ifindex int) (gen.Engine, error) {
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	return xskport.Open(tp, ifc.Name, 0, gen.XSKOptions{Ifindex: ifindex})
}

// Run builds the testbed, runs the matrix and removes the testbed.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	tb, err := newTestbed()
	if err != nil {
		return nil, err
	}
	defer tb.close()
	reqs, err := startGenerator(tb, c.GenCPU)
	if err != nil {
		return nil, err
	}
	defer close(reqs)

	rep := &Report{Header: newHeader(c.Duration), Receivers: c.Receivers, Sizes: c.Sizes}
	if !slices.Equal(c.Rates, []float64{0}) {
		rep.Rates = c.Rates
	}
	total := c.Repeat * len(c.Sizes) * len(c.Rates) * len(c.Receivers)
	done := 0
	for round := range c.Repeat {
		if c.Repeat > 1 && c.Log != nil {
			fmt.Fprintf(c.Log, "\rround %d of %d\n", round+1, c.Repeat)
		}
		results, err := runRound(ctx, &c, tb, reqs, roundOrder(round, c.Receivers, c.Sizes, c.Rates), &done, total)
		canonical(results, c.Receivers, c.Sizes, c.Rates)
		setCeilingRatios(results)
		if c.Repeat == 1 {
			rep.Results = results
		} else {
			rep.Rounds = append(rep.Rounds, results)
			rep.Results = aggregate(rep.Rounds)
		}
		if err != nil {
			return rep, err
		}
	}
	progressBar(c.Progress, done, total, "done")
	if c.Progress != nil {
		fmt.Fprintln(c.Progress)
	}
	rep.Ratios = rep.Compare()
	return rep, nil
}

// runRound runs the cells of one round in the order given, one size group
// after another, counting them in *done of total for the progress bar. On
// an error it returns the cells that ran so far.
func runRound(ctx context.Context, c *Config, tb *testbed, reqs chan<- genReq, groups [][]cell, done *int, total int) ([]Result, error) {
	var results []Result
	for _, group := range groups {
		size := group[0].size
		if err := tb.setMTU(max(1500, size-14)); err != nil {
			return results, err
		}
		cfg := gen.Config{Proto: gen.UDP4, Size: size, Flows: c.Flows, SrcMAC: tb.genMAC, DstMAC: tb.macB,
			SrcIP: netip.AddrFrom4([4]byte(tb.ipA)), DstIP: netip.AddrFrom4([4]byte(tb.ipB)), DstPort: 9}
		tp, err := gen.NewTemplate(cfg)
		if err != nil {
			return results, err
		}
		for _, cl := range group {
			if ctx.Err() != nil {
				return results, ctx.Err()
			}
			progressBar(c.Progress, *done, total, fmt.Sprintf("%-14s %5d B %s", cl.rx, size, RateText(cl.rate)))
			r := runCell(ctx, c, tb, reqs, tp, cl)
			results = append(results, r)
			*done++
			if c.Log != nil {
				logCell(c.Log, r)
			}
		}
	}
	return results, nil
}

func logCell(w io.Writer, r Result) {
	if r.Error != "" {
		fmt.Fprintf(w, "\r%-14s %5d B: %s\n", r.Receiver, r.Size, r.Error)
		return
	}
	d := ""
	if r.Disturbed {
		d = fmt.Sprintf(" DISTURBED (others used %.2f CPU s, most %s)", r.OtherCPU, r.OtherTop)
	}
	fmt.Fprintf(w, "\r%-14s %5d B %4s: %8.3f Mfps (sent %.3f) %6.2f Gbit/s, %.3f CPU s/Mf, %d kernel drops, %d attempt(s)%s\n",
		r.Receiver, r.Size, RateText(r.Rate), r.Fps/1e6, r.SentFps/1e6, r.Gbps, r.CPUPerMframe, r.Drops, r.Attempts, d)
	if r.GenProfile != nil {
		fmt.Fprintf(w, "%14s generator CPU: %s\n", "", profileText(r.GenProfile))
	}
}

func progressBar(w io.Writer, done, total int, what string) {
	if w == nil {
		return
	}
	const width = 30
	n := width * done / max(total, 1)
	fmt.Fprintf(w, "\r[%s%s] %d/%d %-24s", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total, what)
}

// runCell runs one receiver at one size and rate, repeating a disturbed
// run.
func runCell(ctx context.Context, c *Config, tb *testbed, reqs chan<- genReq, tp *gen.Template, cl cell) Result {
	var r Result
	for attempt := 1; attempt <= c.Retries+1; attempt++ {
		r = runOnce(ctx, c, tb, reqs, tp, cl.rx, cl.rate)
		r.Attempts = attempt
		if r.Error != "" || !r.Disturbed || ctx.Err() != nil {
			break
		}
	}
	return r
}

func runOnce(ctx context.Context, c *Config, tb *testbed, reqs chan<- genReq, tp *gen.Template, rx string, rate float64) Result {
	r := Result{Receiver: rx, Size: tp.Len(), Rate: rate}
	fail := func(err error) Result { r.Error = err.Error(); return r }
	argv := append(append([]string{}, c.Self...), "--kind", rx, "--iface", tb.ifB, "--ip", tb.ipB.String(),
		"--size", fmt.Sprint(tp.Len()))
	rc, _ := receiverNamed(rx) // a name Config.defaults found
	if rc.feed == feedBare && tp.Len() > gen.MaxLiveFrameSize() {
		r.Skipped = true
		return fail(fmt.Errorf("the bare generator sends live frames, at most %d bytes", gen.MaxLiveFrameSize()))
	}
	ext := rc.ext
	if rc.run == nil {
		var err error
		if argv, err = ext.argv(c, tb, tp.Len()); err != nil {
			r.Skipped = true
			return fail(err)
		}
	}
	prefix := []string{"netns", "exec", tb.nsB}
	if cpu, ok := c.RxCPU.Get(); ok {
		prefix = append(prefix, "taskset", "-c", strconv.Itoa(cpu))
	}
	cmd := exec.Command("ip", append(prefix, argv...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail(err)
	}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	pid := cmd.Process.Pid
	stop := func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	defer func() {
		stop()
		t := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		t.Stop()
	}()
	out := bufio.NewReader(stdoutPipe)
	if err := readyLine(out, ext.ready, 15*time.Second); err != nil {
		stop()
		_ = cmd.Wait()
		return fail(fmt.Errorf("%v: %s", err, lastLine(stderr.String())))
	}
	exclude := map[int]bool{os.Getpid(): true, pid: true}
	time.Sleep(100 * time.Millisecond) // let the receiver settle
	cpu0, _ := procCPU(pid)
	sys0, procs0 := readSysCPU(), procTicks()

	var prof *profile
	if c.Perf != "" {
		var err error
		cpu, _ := c.GenCPU.Get()
		if prof, err = startProfile(c.Perf, cpu, os.TempDir()); err != nil {
			return fail(err)
		}
		exclude[prof.pid()] = true
		defer func() {
			if prof != nil { // not stopped: the cell failed
				_, _ = prof.stop(0)
			}
		}()
	}
	reply := make(chan genRes, 1)
	reqs <- genReq{ctx: ctx, tp: tp, run: gen.Run{Duration: c.Duration, Rate: rate}, xsk: rc.feed == feedXSK, bare: rc.feed == feedBare, reply: reply}
	g := <-reply // the generator stops at its duration or when ctx ends
	r.Engine = g.engine
	if g.err != nil {
		return fail(fmt.Errorf("generator: %w", g.err))
	}
	if prof != nil {
		// Sending is over: what comes now is the generator's CPU idle.
		syms, err := prof.stop(c.PerfTop)
		prof = nil
		if err != nil {
			return fail(err)
		}
		r.GenProfile = syms
	}
	time.Sleep(200 * time.Millisecond) // drain what is in flight
	cpu1, _ := procCPU(pid)
	sys1, procs1 := readSysCPU(), procTicks()
	stop()
	res, err := readResult(out, ext.parse, tp.Len())
	if err != nil {
		return fail(fmt.Errorf("receiver result: %v: %s", err, lastLine(stderr.String())))
	}
	secs := g.res.Elapsed.Seconds()
	r.Sent, r.Received, r.Seconds, r.Drops = g.res.Sent, res.Frames, secs, res.Drops
	r.Note = res.Note
	if r.Note == "" {
		r.Note = ext.note
	}
	if res.Frames == 0 && g.res.Sent > 0 {
		r.Note = "received nothing (" + r.Note + ")"
	}
	if secs > 0 {
		r.SentFps = float64(r.Sent) / secs
		r.Fps = float64(r.Received) / secs
		r.Gbps = float64(res.Bytes) * 8 / secs / 1e9
	}
	r.RxCPUSecs = (cpu1 - cpu0).Seconds()
	r.SoftirqSec = sys1.sub(sys0).Softirq.Seconds()
	r.MachineBusy = sys1.sub(sys0).Busy.Seconds()
	if r.Received > 0 {
		mf := float64(r.Received) / 1e6
		r.CPUPerMframe = r.RxCPUSecs / mf
		r.SoftirqPerMframe = r.SoftirqSec / mf
	}
	// Our own children (the `ip netns exec` wrapper execs into the
	// receiver, so pid covers it); everything else is a disturbance.
	other, top := othersCPU(procs0, procs1, exclude)
	r.OtherCPU = other.Seconds()
	if top != 0 {
		r.OtherTop = fmt.Sprintf("%s[%d]", procName(top), top)
	}
	r.Disturbed = r.OtherCPU > c.Disturbance*(secs+0.2)
	return r
}

func readResult(r *bufio.Reader, parse func(string, int) (childResult, error), size int) (childResult, error) {
	var res childResult
	type out struct {
		b   []byte
		err error
	}
	ch := make(chan out, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- out{b, err}
	}()
	var o out
	select {
	case o = <-ch:
	case <-time.After(15 * time.Second):
		return res, errors.New("receiver did not report in time")
	}
	var err error
	if parse != nil {
		res, err = parse(string(o.b), size)
	} else {
		lines := strings.Split(strings.TrimSpace(string(o.b)), "\n")
		last := lines[len(lines)-1]
		if err = json.Unmarshal([]byte(last), &res); err != nil {
			err = fmt.Errorf("parse %q: %w", last, err)
		}
	}
	res.Drops = kernelDrops(string(o.b))
	return res, err
}

// kernelCounter finds an XDP_STATISTICS counter as the AF_XDP receivers
// print it: rxdrop's "rx_ring_full=N", the peers' "rx_ring_full N".
var kernelCounter = regexp.MustCompile(`\b(rx_dropped|rx_ring_full)[= ](\d+)`)

// kernelDrops is the sum of the last rx_dropped and rx_ring_full a
// receiver printed (0 if it printed none: not an AF_XDP receiver).
func kernelDrops(out string) uint64 {
	last := map[string]uint64{}
	for _, m := range kernelCounter.FindAllStringSubmatch(out, -1) {
		last[m[1]], _ = strconv.ParseUint(m[2], 10, 64)
	}
	return last["rx_dropped"] + last["rx_ring_full"]
}

// RateText is an offered rate as the flags and tables write it: "10k",
// "1.5M", "max" for full speed.
func RateText(r float64) string {
	switch {
	case r == 0:
		return "max"
	case r >= 1e6:
		return strconv.FormatFloat(r/1e6, 'g', 4, 64) + "M"
	case r >= 1e3:
		return strconv.FormatFloat(r/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(r, 'g', 4, 64)
}

// ParseRate reads RateText's form back: a number of frames/s with an
// optional k or M, or "max" (0: full speed).
func ParseRate(s string) (float64, error) {
	num := strings.TrimSpace(s)
	if num == "max" {
		return 0, nil
	}
	mul := 1.0
	switch {
	case strings.HasSuffix(num, "k"):
		mul, num = 1e3, num[:len(num)-1]
	case strings.HasSuffix(num, "M"):
		mul, num = 1e6, num[:len(num)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("offered rate %q: want frames/s such as 10k, 1.5M or 2000, or max", s)
	}
	return v * mul, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
