package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xdpipe/xdpipe/xsk"
)

// externalRx is a receiver that is a separate program: xdpipe's own
// commands (rxdrop, ...) run as users run them, the asavie/xdp peer built
// from its own module under hack/asavie-peer, and the C libxdp peer built
// from hack/xsk-c-peer.
type externalRx struct {
	// argv returns the command line for one cell, or an error that skips
	// the cell (not built, frame size not supported).
	argv func(c *Config, tb *testbed, size int) ([]string, error)
	// ready reports whether a line on stdout says the receiver is set up
	// (nil: the line is "ready").
	ready func(line string) bool
	// parse extracts the result from everything the child printed on
	// stdout after ready (nil: the last line is a JSON childResult).
	parse func(out string, size int) (childResult, error)
	note  string
}

// rxdropRx runs `xdpipe rxdrop` in copy mode with the given polling; with
// track, as users run it, accounting the generated traffic (its default),
// else only counting, as the other receivers do.
func rxdropRx(poll string, track bool) externalRx {
	flags := []string{"--bind", "copy", "--poll", poll, "--track=" + strconv.FormatBool(track)}
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			return append(append([]string{c.Xdpipe, "rxdrop", "--iface", tb.ifB}, flags...), "--interval", "1h"), nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "rxdrop: ") },
		parse: parseRxdropSummary,
		note:  "xdpipe rxdrop " + strings.Join(flags, " "),
	}
}

// steer10kRx runs `xdpipe rxdrop` as xdpipe-spin does, behind the
// steering program with steerRuleCount rules of which the last matches.
func steer10kRx() externalRx {
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			f, err := tb.steerRules()
			if err != nil {
				return nil, err
			}
			return []string{c.Xdpipe, "rxdrop", "--iface", tb.ifB, "--bind", "copy", "--poll", "spin",
				"--track=false", "--interval", "1h", "--rules", f}, nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "rxdrop: ") },
		parse: parseRxdropSummary,
		note:  "xdpipe rxdrop --rules (10,000 rules, the last matches) --bind copy --poll spin --track=false",
	}
}

var rxdropSummary = regexp.MustCompile(`summary: (\d+) packets, (\d+) bytes`)

func parseRxdropSummary(out string, _ int) (childResult, error) {
	m := rxdropSummary.FindStringSubmatch(out)
	if m == nil {
		return childResult{}, fmt.Errorf("no summary line in %q", lastLine(out))
	}
	f, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return childResult{Frames: f, Bytes: b}, nil
}

// steerRuleCount is the rule count of the xdpipe-steer10k receiver.
const steerRuleCount = 10000

// steerRules writes (once) a rules file of steerRuleCount rules of which
// only the last, lowest-priority one matches the generated traffic (UDP to
// ipB port 9) and redirects it; the others match other destinations and
// ports and would drop.
func (t *testbed) steerRules() (string, error) {
	path := filepath.Join(t.dir, "steer10k.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var b strings.Builder
	b.WriteString("default: pass\nmalformed: pass\nrules:\n")
	for i := range steerRuleCount - 1 {
		fmt.Fprintf(&b, "  - priority: %d\n    proto: udp\n    dst: 198.18.%d.%d/32\n    dport: %d\n    action: drop\n",
			i+1, i>>8, i&0xff, 1000+i%50000)
	}
	fmt.Fprintf(&b, "  - priority: %d\n    name: bench\n    proto: udp\n    dst: %s/32\n    dport: 9\n    action: redirect\n",
		steerRuleCount, t.ipB)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// runRx runs `xdpipe run` on queue 0 with stages and flags, spinning, in
// copy mode, and reads its per-queue summary; what says what the cell is.
func runRx(what, stages string, flags ...string) externalRx {
	flags = append([]string{"--stages", stages, "--poll", "spin", "--bind", "copy"}, flags...)
	note := "xdpipe run " + strings.Join(flags, " ") + " (" + what + ")"
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if c.Xdpipe == "" {
				return nil, errors.New("no xdpipe binary to run (Config.Xdpipe)")
			}
			return append(append([]string{c.Xdpipe, "run", "--iface", tb.ifB, "--queues", "0"}, flags...),
				"--metrics", "off", "--interval", "1h"), nil
		},
		ready: func(line string) bool { return strings.HasPrefix(line, "run: ready") },
		parse: func(out string, size int) (childResult, error) { return parseRunSummary(out, size, note) },
		note:  note,
	}
}

// l2fwdRx runs `xdpipe run` with the macswap stage (DPDK l2fwd's
// macswap: every frame back out of the port it came in on).
func l2fwdRx() externalRx { return runRx("l2fwd", "macswap") }

var runSummary = regexp.MustCompile(`run: queue 0: received (\d+), transmitted (\d+)`)

// parseRunSummary reads `xdpipe run`'s summary; it has no byte count, and
// every generated frame has the same size.
func parseRunSummary(out string, size int, note string) (childResult, error) {
	m := runSummary.FindStringSubmatch(out)
	if m == nil {
		return childResult{}, fmt.Errorf("no summary line in %q", lastLine(out))
	}
	f, _ := strconv.ParseUint(m[1], 10, 64)
	tx, _ := strconv.ParseUint(m[2], 10, 64)
	return childResult{Frames: f, Bytes: f * uint64(size), Note: fmt.Sprintf("%s; transmitted %d", note, tx)}, nil
}

// asavieRx runs hack/asavie-peer, built on first use with `go build` in
// its own module (Config.AsaviePeer: the module's directory), spinning or
// (poll "wakeup") sleeping in poll(2), asavie's Socket.Poll.
func asavieRx(poll string) externalRx {
	note := "asavie/xdp v0.3.3, copy mode, busy poll"
	if poll == "wakeup" {
		note = "asavie/xdp v0.3.3, copy mode, poll(2)"
	}
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			bin, err := buildAsavie(c.AsaviePeer)
			if err != nil {
				return nil, err
			}
			if limit := xsk.FrameData(asavieFrameSize); size > limit {
				return nil, fmt.Errorf("asavie/xdp v0.3.3 has no multi-buffer (frames above %d bytes)", limit)
			}
			return []string{bin, "--iface", tb.ifB, "--poll", poll}, nil
		},
		note: note,
	}
}

// A build is a peer built at most once per process: the first call builds,
// later calls get the same binary or the same error.
type build struct {
	sync.Mutex
	done bool
	bin  string
	err  error
}

func (b *build) get(f func() (string, error)) (string, error) {
	b.Lock()
	defer b.Unlock()
	if !b.done {
		b.bin, b.err = f()
		b.done = true
	}
	return b.bin, b.err
}

var asavieBuild, xskCBuild build

// peer builds the program name from its directory dir (which must hold
// marker) into a fresh temporary directory, once: cmd is the build command
// given that directory, run in dir; hint is added to a build error.
func (b *build) peer(name, dir, marker, hint string, cmd func(out string) *exec.Cmd) (string, error) {
	return b.get(func() (string, error) {
		if dir == "" {
			return "", fmt.Errorf("%s: its directory was not given (hack/%s)", name, name)
		}
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		tmp, err := os.MkdirTemp("", "xdpipe-"+name+"-")
		if err != nil {
			return "", err
		}
		c := cmd(tmp)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("build %s%s: %v: %s", name, hint, err, lastLine(string(out)))
		}
		return filepath.Join(tmp, name), nil
	})
}

// buildAsavie builds the asavie peer once per process, with exactly the
// modules its go.sum pins (-mod=readonly: a missing or changed one fails
// the build instead of being resolved anew).
func buildAsavie(dir string) (string, error) {
	return asavieBuild.peer("asavie-peer", dir, "go.mod", "", func(out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-o", filepath.Join(out, "asavie-peer"), ".")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		return cmd
	})
}

// The UMEM frame sizes of the peers, which have no multi-buffer: asavie's
// default, and the C peer's (libxdp's default).
const (
	asavieFrameSize = 2048
	xskCFrameSize   = 4096
)

// xskCRx runs hack/xsk-c-peer (Config.XskCPeer: its directory), the C
// reference on libxdp, in mode rxdrop or l2fwd: the same jobs as
// xdpipe-spin and xdpipe-l2fwd (one socket, copy mode, need_wakeup, bursts
// of 64, spinning), so that a gap to the ceiling can be told apart as
// xdpipe's or the kernel's; with poll, rxdrop blocks in poll(2) while idle
// instead (xdpipe-wakeup's reference). It prints the JSON childResult
// itself.
func xskCRx(mode string, poll bool) externalRx {
	args, wait := []string{mode}, "spinning"
	if poll {
		args, wait = append(args, "--poll"), "poll(2) when idle"
	}
	return externalRx{
		argv: func(c *Config, tb *testbed, size int) ([]string, error) {
			if limit := xsk.FrameData(xskCFrameSize); size > limit {
				return nil, fmt.Errorf("hack/xsk-c-peer has no multi-buffer (frames above %d bytes)", limit)
			}
			bin, err := buildXskC(c.XskCPeer)
			if err != nil {
				return nil, err
			}
			return slices.Concat([]string{bin}, args, []string{"--iface", tb.ifB}), nil
		},
		note: "C libxdp " + mode + ", copy mode, need_wakeup, " + wait,
	}
}

// buildXskC builds the C peer once per process with its Makefile (needs
// hack/deps.sh bench: libxdp-dev, a C compiler).
func buildXskC(dir string) (string, error) {
	return xskCBuild.peer("xsk-c-peer", dir, "Makefile", " (hack/deps.sh bench installs libxdp-dev and a compiler)",
		func(out string) *exec.Cmd { return exec.Command("make", "-s", "OUT="+out) })
}
