package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LatencyConfig is a latency matrix: pairs of a client and a reflector on
// the veth testbed, the client in namespace A on CPU 0 and the reflector
// in B on CPU 1, each pair first in a closed loop (one message in flight)
// and then in an open loop at fractions of the rate its closed loop
// reached in the same round.
type LatencyConfig struct {
	// Pairs to run, in order (default LatencyPairs()).
	Pairs []string
	// Loads are the open loops' rates as fractions of the pair's
	// closed-loop rate (default 0.1, 0.5, 0.9); ClosedOnly runs none.
	Loads      []float64
	ClosedOnly bool
	// Duration is each cell's sending time (default 3s). sockperf counts
	// whole seconds: its cells round it up.
	Duration time.Duration
	// Repeat is how many rounds to run (0: 1), the pairs' order rotated
	// by one each round.
	Repeat int
	// Warmup is how long a closed loop runs against each pair's reflector,
	// before its cells and not counted (default 1s; negative: none): long
	// enough for a reflector to settle, as a service under steady traffic
	// has (xsk brings an idle fill ring down to its floor within a
	// second), and for the caches to fill.
	Warmup time.Duration
	// Payload is the UDP payload in bytes (default 64: sockperf's -m 64;
	// xdpipe ping's frames are sized to carry as much).
	Payload int
	// Xdpipe is the xdpipe binary (ping, run): needed by every pair but
	// kernel.
	Xdpipe string
	// XskCPeer is the directory of hack/xsk-c-peer, for ping-c-reflect.
	XskCPeer string
	// Sockperf is the sockperf binary, for kernel and sockperf-reflect.
	Sockperf string
	// Self and Env start the in-process echo server (see Config).
	Self []string
	Env  []string
	// Progress receives a progress bar, Log a line per cell (nil: none).
	Progress, Log io.Writer
}

// latencyPort is the reflectors' UDP port.
const latencyPort = 11111

// Both ends' CPUs: the client's in namespace A, the reflector's in B.
const (
	clientCPU = 0
	serverCPU = 1
)

// A latencyPair is a client and the reflector it measures.
type latencyPair struct {
	// sockperf: the client is sockperf (ping-pong, under-load), else
	// xdpipe ping.
	sockperf bool
	// server is the reflector's command line.
	server func(c *LatencyConfig, tb *testbed) ([]string, error)
	// ready reports whether a line of the reflector's stdout says it is
	// set up.
	ready func(line string) bool
	// unpinned runs the reflector on any CPU instead of serverCPU.
	unpinned bool
	// busyPoll sets the reflector's interface up for busy polling.
	busyPoll bool
	note     string
}

// spinFlags are the spinning reflectors' flags: what the README advises
// for latency, a fill ring kept shallow while traffic is light.
var spinFlags = []string{"--poll", "spin", "--fill-low", "256"}

// latencyPairs are the pairs by name; latencyOrder is their order.
var latencyPairs = map[string]latencyPair{
	"kernel": {sockperf: true, server: sockperfServer, ready: sockperfReady,
		note: "sockperf ping-pong / under-load -> sockperf server: the kernel's UDP sockets on both ends"},
	"sockperf-reflect": {sockperf: true, server: reflector("{sockperf: true}", spinFlags...), ready: runReady,
		note: "sockperf -> xdpipe run {reflect: {sockperf: true}}, spinning, --fill-low 256 (as every spinning reflector but fullring)"},
	"ping-echo": {server: echoServer, ready: func(l string) bool { return l == "ready\n" },
		note: "xdpipe ping -> a Go net.UDPConn echo"},
	"sockperf-c-reflect": {sockperf: true, server: cReflector("--sockperf"), ready: cReady,
		note: "sockperf -> C AF_XDP reflector answering as sockperf's server (hack/xsk-c-peer reflect --sockperf)"},
	"ping-c-reflect": {server: cReflector(), ready: cReady,
		note: "xdpipe ping -> C AF_XDP reflector (hack/xsk-c-peer reflect: libxdp, copy mode, spinning)"},
	"ping-reflect": {server: reflector("{}", spinFlags...), ready: runReady,
		note: "xdpipe ping -> xdpipe run reflect, spinning, --fill-low 256"},
	"ping-reflect-redirect": {server: reflectorConf("{}", "", false, spinFlags...), ready: runReady,
		note: "xdpipe run reflect, spinning, without rules: the redirect program sends every frame to the socket, as the C reflector's does"},
	"ping-reflect-busypoll": {server: reflector("{}", slices.Concat(spinFlags, []string{"--busy-poll"})...), ready: runReady, busyPoll: true,
		note: "the same with socket busy polling (napi_defer_hard_irqs 2, gro_flush_timeout 200 us)"},
	"ping-reflect-wakeup": {server: reflector("{}", "--poll", "wakeup"), ready: runReady,
		note: "the same in wakeup mode: naps of up to 200 us while frames come, else poll(2)"},
	"ping-reflect-poll": {server: reflector("{}", "--poll", "wakeup", "--coalesce", "0"), ready: runReady,
		note: "the same in wakeup mode without naps: poll(2) whenever the ring is empty"},
	"ping-reflect-drain": {server: reflectorConf("{}", "drain: 100us\n", true, spinFlags...), ready: runReady,
		note: "xdpipe run reflect, spinning, with TX buffers waiting up to 100 us for more packets (drain: 100us, DPDK l2fwd's drain)"},
	"ping-reflect-fullring": {server: reflector("{}", "--poll", "spin"), ready: runReady,
		note: "xdpipe run reflect, spinning, keeping its whole fill ring (no --fill-low, the default)"},
	"ping-reflect-unpinned": {server: reflector("{}", spinFlags...), ready: runReady, unpinned: true,
		note: "xdpipe run reflect, spinning, on whichever CPU the scheduler picks (the client's too)"},
}

var latencyOrder = []string{"kernel", "sockperf-reflect", "sockperf-c-reflect", "ping-echo", "ping-c-reflect", "ping-reflect",
	"ping-reflect-redirect", "ping-reflect-fullring", "ping-reflect-busypoll", "ping-reflect-wakeup", "ping-reflect-poll", "ping-reflect-drain",
	"ping-reflect-unpinned"}

// LatencyPairs lists the pairs RunLatency knows, in matrix order.
func LatencyPairs() []string { return slices.Clone(latencyOrder) }

func sockperfServer(c *LatencyConfig, tb *testbed) ([]string, error) {
	if c.Sockperf == "" {
		return nil, errors.New("no sockperf binary (LatencyConfig.Sockperf)")
	}
	return []string{c.Sockperf, "server", "-i", tb.ipB.String(), "-p", strconv.Itoa(latencyPort)}, nil
}

func sockperfReady(l string) bool { return strings.Contains(l, "# UDP") }

func runReady(l string) bool { return strings.HasPrefix(l, "run: ready") }

// reflector is `xdpipe run` with the reflect stage (options opts) on B's
// interface, with a rule that steers only the reflected port to it.
func reflector(opts string, flags ...string) func(c *LatencyConfig, tb *testbed) ([]string, error) {
	return reflectorConf(opts, "", true, flags...)
}

// reflectorConf is reflector with more settings in its configuration file
// (YAML lines), and with steer false without rules: every frame goes to
// the socket.
func reflectorConf(opts, more string, steer bool, flags ...string) func(c *LatencyConfig, tb *testbed) ([]string, error) {
	return func(c *LatencyConfig, tb *testbed) ([]string, error) {
		if c.Xdpipe == "" {
			return nil, errors.New("no xdpipe binary to run (LatencyConfig.Xdpipe)")
		}
		more := more
		if steer {
			pins, err := tb.bpffs()
			if err != nil {
				return nil, err
			}
			rules := filepath.Join(tb.dir, "reflect-rules.yaml")
			if err := os.WriteFile(rules, fmt.Appendf(nil, "rules:\n  - name: reflected\n    priority: 10\n    proto: udp\n"+
				"    dport: %d\n    action: redirect\n", latencyPort), 0o644); err != nil {
				return nil, err
			}
			more += fmt.Sprintf("rules: %s\npin_dir: %s\n", rules, pins)
		}
		conf := filepath.Join(tb.dir, "reflect.yaml")
		if err := os.WriteFile(conf, fmt.Appendf(nil, "interfaces: [%s]\nqueues: all\nstages: [{reflect: %s}]\n%s",
			tb.ifB, opts, more), 0o644); err != nil {
			return nil, err
		}
		return append([]string{c.Xdpipe, "run", "--config", conf, "--metrics", "off", "--interval", "1h"}, flags...), nil
	}
}

func echoServer(c *LatencyConfig, tb *testbed) ([]string, error) {
	return append(slices.Clone(c.Self), "--kind", "udp-echo", "--ip", tb.ipB.String(), "--port", strconv.Itoa(latencyPort)), nil
}

// cReflector is hack/xsk-c-peer's reflect mode on B's interface, with
// flags.
func cReflector(flags ...string) func(c *LatencyConfig, tb *testbed) ([]string, error) {
	return func(c *LatencyConfig, tb *testbed) ([]string, error) {
		if c.XskCPeer == "" {
			return nil, errors.New("no hack/xsk-c-peer directory (LatencyConfig.XskCPeer)")
		}
		bin, err := buildXskC(c.XskCPeer)
		if err != nil {
			return nil, err
		}
		return append([]string{bin, "reflect", "--iface", tb.ifB}, flags...), nil
	}
}

func cReady(l string) bool { return l == "ready\n" }

// LatencyCell is one pair at one load.
type LatencyCell struct {
	Pair string `json:"pair"`
	// Load is the open loop's rate as a fraction of the pair's closed-loop
	// rate in the round; 0 is the closed loop.
	Load float64 `json:"load,omitempty"`
	// Offered is the open loop's rate in messages per second.
	Offered float64 `json:"offered_mps,omitempty"`
	// Rate is the round trips completed per second.
	Rate                 float64 `json:"mps"`
	Sent, Received, Lost uint64
	// Round trips in microseconds, from the client's histogram; Count is
	// how many it holds (sockperf leaves out its warm-up and last part).
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	P9999 float64 `json:"p99_99_us"`
	Max   float64 `json:"max_us"`
	Count uint64  `json:"count"`
	// Dist is the percentile distribution (HdrHistogram's .hgrm rows),
	// for charts.
	Dist []DistPoint `json:"distribution,omitempty"`
	// ClientCPU and ServerCPU are the CPU seconds each process used per
	// second of the client's run; ClientCore and ServerCore the share of
	// each side's CPU that was busy in that time, the kernel's softirq
	// work and any other process on it included.
	ClientCPU  float64 `json:"client_cpu"`
	ServerCPU  float64 `json:"server_cpu"`
	ClientCore float64 `json:"client_core_busy"`
	ServerCore float64 `json:"server_core_busy"`
	Note       string  `json:"note,omitempty"`
	Error      string  `json:"error,omitempty"`
	// Spread, in a repeated run's Cells only: the figures above are then
	// medians over the rounds the cell ran without error.
	Spread *LatencySpread `json:"spread,omitempty"`
}

// DistPoint is one row of a percentile distribution.
type DistPoint struct {
	Percentile float64 `json:"percentile"`
	Micros     float64 `json:"us"`
}

// LatencySpread is how a cell varied over the rounds.
type LatencySpread struct {
	Rounds int    `json:"rounds"`
	Failed int    `json:"failed,omitempty"`
	Rate   Spread `json:"mps"`
	P50    Spread `json:"p50_us"`
	P99    Spread `json:"p99_us"`
	P999   Spread `json:"p99_9_us"`
	Max    Spread `json:"max_us"`
}

// LatencyReport is the whole latency matrix.
type LatencyReport struct {
	// Kind tells the report from Report's in a JSON file: "latency".
	Kind string `json:"kind"`
	Header
	Payload int `json:"payload_bytes"`
	// Warmup is the closed loop's seconds before each pair's cells.
	Warmup float64       `json:"warmup_seconds,omitempty"`
	Pairs  []string      `json:"pairs"`
	Notes  []string      `json:"notes"`
	Loads  []float64     `json:"loads,omitempty"`
	Cells  []LatencyCell `json:"cells"`
	Ratios []Ratio       `json:"ratios,omitempty"`
	// Rounds, in a repeated run: every round's cells, in Cells' order.
	Rounds [][]LatencyCell `json:"rounds,omitempty"`
}

func (c *LatencyConfig) defaults() error {
	if len(c.Pairs) == 0 {
		c.Pairs = LatencyPairs()
	}
	for _, p := range c.Pairs {
		if _, ok := latencyPairs[p]; !ok {
			return fmt.Errorf("unknown pair %q (have %s)", p, strings.Join(LatencyPairs(), ", "))
		}
	}
	if c.ClosedOnly {
		c.Loads = nil
	} else if len(c.Loads) == 0 {
		c.Loads = []float64{0.1, 0.5, 0.9}
	}
	for _, l := range c.Loads {
		if !(l > 0 && l <= 1) {
			return fmt.Errorf("load %v: want a fraction of the closed-loop rate in (0, 1]", l)
		}
	}
	if err := runDefaults(&c.Duration, &c.Repeat, &c.Self); err != nil {
		return err
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	// sockperf's header is 14 bytes; ping's stamp fits in 16.
	if c.Payload < 16 || c.Payload > 1472 {
		return fmt.Errorf("payload %d bytes: want 16..1472", c.Payload)
	}
	return nil
}

// RunLatency builds the testbed, runs the latency matrix and removes the
// testbed.
func RunLatency(ctx context.Context, c LatencyConfig) (*LatencyReport, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	tb, err := newTestbed()
	if err != nil {
		return nil, err
	}
	defer tb.close()
	rep := &LatencyReport{Kind: "latency", Header: newHeader(c.Duration), Payload: c.Payload,
		Warmup: max(c.Warmup, 0).Seconds(), Pairs: c.Pairs, Loads: c.Loads}
	for _, p := range c.Pairs {
		rep.Notes = append(rep.Notes, p+": "+latencyPairs[p].note)
	}
	total, done := c.Repeat*len(c.Pairs)*(1+len(c.Loads)), 0
	for round := range c.Repeat {
		if c.Repeat > 1 && c.Log != nil {
			fmt.Fprintf(c.Log, "\rround %d of %d\n", round+1, c.Repeat)
		}
		var cells []LatencyCell
		for i := range c.Pairs {
			name := c.Pairs[(i+round)%len(c.Pairs)]
			if ctx.Err() != nil {
				break
			}
			progressBar(c.Progress, done, total, name)
			pc := runPair(ctx, &c, tb, name)
			done += len(pc)
			for _, cl := range pc {
				logLatencyCell(c.Log, cl)
			}
			cells = append(cells, pc...)
		}
		slices.SortStableFunc(cells, func(a, b LatencyCell) int {
			return cmp.Compare(slices.Index(c.Pairs, a.Pair), slices.Index(c.Pairs, b.Pair))
		})
		if c.Repeat == 1 {
			rep.Cells = cells
		} else {
			rep.Rounds = append(rep.Rounds, cells)
			rep.Cells = aggregateLatency(rep.Rounds)
		}
		if err := ctx.Err(); err != nil {
			rep.Ratios = rep.compareLatency()
			return rep, err
		}
	}
	progressBar(c.Progress, done, total, "done")
	if c.Progress != nil {
		fmt.Fprintln(c.Progress)
	}
	rep.Ratios = rep.compareLatency()
	return rep, nil
}

func logLatencyCell(w io.Writer, cl LatencyCell) {
	if w == nil {
		return
	}
	if cl.Error != "" {
		fmt.Fprintf(w, "\r%-22s %-9s: %s\n", cl.Pair, loadText(cl.Load), cl.Error)
		return
	}
	fmt.Fprintf(w, "\r%-22s %-9s: %8.0f/s  p50 %7.1f  p99 %7.1f  p99.9 %7.1f  max %8.1f us; CPU client %.2f server %.2f\n",
		cl.Pair, loadText(cl.Load), cl.Rate, cl.P50, cl.P99, cl.P999, cl.Max, cl.ClientCPU, cl.ServerCPU)
}

// loadText is a load as the tables write it.
func loadText(l float64) string {
	if l == 0 {
		return "closed"
	}
	return strconv.FormatFloat(l*100, 'g', 3, 64) + "%"
}

// runPair starts the pair's reflector and runs its closed loop, then its
// open loops.
func runPair(ctx context.Context, c *LatencyConfig, tb *testbed, name string) []LatencyCell {
	p := latencyPairs[name]
	cells := []LatencyCell{{Pair: name}}
	for _, l := range c.Loads {
		cells = append(cells, LatencyCell{Pair: name, Load: l})
	}
	failAll := func(err error) []LatencyCell {
		for i := range cells {
			cells[i].Error = err.Error()
		}
		return cells
	}
	if p.busyPoll {
		undo, err := tb.busyPollB()
		if err != nil {
			return failAll(err)
		}
		defer undo()
	}
	srv, err := startServer(c, tb, p)
	if err != nil {
		return failAll(err)
	}
	defer srv.stop()
	if c.Warmup > 0 {
		wc := *c
		wc.Duration = c.Warmup
		if err := runClient(ctx, &wc, tb, p, srv, &LatencyCell{Pair: name}); err != nil {
			return failAll(fmt.Errorf("warm-up: %w", err))
		}
	}
	for i := range cells {
		cl := &cells[i]
		if cl.Load > 0 {
			closed := cells[0]
			if closed.Error != "" || closed.Rate == 0 {
				cl.Error = "no closed-loop rate to take a fraction of"
				continue
			}
			cl.Offered = math.Round(cl.Load * closed.Rate)
		}
		if err := runClient(ctx, c, tb, p, srv, cl); err != nil {
			cl.Error = err.Error()
		}
		if cl.Error == "" && srv.exited() {
			cl.Error = "the reflector exited: " + srv.lastLine()
		}
	}
	return cells
}

// server is a running reflector.
type server struct {
	cmd   *exec.Cmd
	stdin io.Closer
	out   lockedBuffer // stderr, and stdout after the ready line
	done  chan struct{}
}

// lockedBuffer is a buffer two goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServer(c *LatencyConfig, tb *testbed, p latencyPair) (*server, error) {
	argv, err := p.server(c, tb)
	if err != nil {
		return nil, err
	}
	args := []string{"netns", "exec", tb.nsB}
	if !p.unpinned {
		args = append(args, "taskset", "-c", strconv.Itoa(serverCPU%runtime.NumCPU()))
	}
	s := &server{cmd: exec.Command("ip", append(args, argv...)...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), c.Env...)
	s.cmd.Stderr = &s.out
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The echo server stops when its stdin closes, as a receiver does.
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	r := bufio.NewReader(stdout)
	if err := readyLine(r, p.ready, 15*time.Second); err != nil {
		_ = s.stdin.Close()
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		return nil, fmt.Errorf("reflector: %v: %s", err, lastLine(s.out.String()))
	}
	go func() {
		_, _ = io.Copy(&s.out, r)
		_ = s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) lastLine() string { return lastLine(s.out.String()) }

// stop sends SIGTERM, and SIGKILL if the reflector is still there after
// 10 s.
func (s *server) stop() {
	_ = s.stdin.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// busyPollB sets B's interface up for busy polling as the kernel's NAPI
// documentation advises, and returns what puts it back.
func (t *testbed) busyPollB() (func(), error) {
	set := func(defer_, flush string) error {
		return sh("ip", "netns", "exec", t.nsB, "sh", "-c", fmt.Sprintf(
			"echo %s >/sys/class/net/%s/napi_defer_hard_irqs && echo %s >/sys/class/net/%s/gro_flush_timeout",
			defer_, t.ifB, flush, t.ifB))
	}
	if err := set("2", "200000"); err != nil {
		return nil, err
	}
	return func() { _ = set("0", "0") }, nil
}

// bpffs mounts (once) a bpffs in the testbed's directory, for xdpipe
// run's pins: `ip netns exec` gives its command a /sys of its own, without
// /sys/fs/bpf. close unmounts it.
func (t *testbed) bpffs() (string, error) {
	dir := filepath.Join(t.dir, "bpf")
	if t.bpfMounted {
		return dir, nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, ""); err != nil {
		return "", fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	t.bpfMounted = true
	return dir, nil
}

// runClient runs the pair's client for one cell and fills in cl.
func runClient(ctx context.Context, c *LatencyConfig, tb *testbed, p latencyPair, srv *server, cl *LatencyCell) error {
	var argv []string
	var parse func(out string, cl *LatencyCell) error
	if p.sockperf {
		argv, parse = sockperfClient(c, tb, cl)
	} else {
		argv, parse = pingClient(c, tb, cl)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", tb.nsA, "taskset", "-c", strconv.Itoa(clientCPU)}, argv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	srvPid := srv.cmd.Process.Pid
	s0, _ := procCPU(srvPid)
	cpuC, cpuS := "cpu"+strconv.Itoa(clientCPU), "cpu"+strconv.Itoa(serverCPU%runtime.NumCPU())
	c0, b0 := readCPULine(cpuC), readCPULine(cpuS)
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start).Seconds()
	s1, _ := procCPU(srvPid)
	c1, b1 := readCPULine(cpuC), readCPULine(cpuS)
	if err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(argv[0]), err, lastLine(out.String()))
	}
	if err := parse(out.String(), cl); err != nil {
		return err
	}
	if st := cmd.ProcessState; st != nil && wall > 0 {
		cl.ClientCPU = (st.UserTime() + st.SystemTime()).Seconds() / wall
		cl.ServerCPU = (s1 - s0).Seconds() / wall
	}
	share := func(a, b sysCPU) float64 {
		d := a.sub(b)
		if d.Total <= 0 {
			return 0
		}
		return d.Busy.Seconds() / d.Total.Seconds()
	}
	cl.ClientCore, cl.ServerCore = share(c1, c0), share(b1, b0)
	return nil
}
