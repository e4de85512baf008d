package bench

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Symbol is one function of a CPU profile and its share of the samples.
type Symbol struct {
	Name    string  `json:"symbol"`
	Percent float64 `json:"percent"`
}

// profile samples one CPU with `perf record -e cpu-clock` (a software
// clock: it works where hardware counters do not, in a VM) while a cell
// runs. In copy mode the kernel copies each frame into the receiver's UMEM
// on the sender's CPU, so that CPU's profile is where a receiver's rate is
// decided: what each receiver makes the kernel do there shows in it.
type profile struct {
	perf string
	file string
	cmd  *exec.Cmd
}

// startProfile starts perf on cpu, writing its samples into dir.
func startProfile(perf string, cpu int, dir string) (*profile, error) {
	f, err := os.CreateTemp(dir, "perf-*.data")
	if err != nil {
		return nil, err
	}
	f.Close()
	p := &profile{perf: perf, file: f.Name()}
	p.cmd = exec.Command(perf, "record", "--quiet", "--cpu", strconv.Itoa(cpu), "--event", "cpu-clock", "--output", p.file)
	if err := p.cmd.Start(); err != nil {
		os.Remove(p.file)
		return nil, fmt.Errorf("perf record: %w", err)
	}
	// perf samples from when it has opened its events; until then the
	// cell would go unprofiled.
	time.Sleep(150 * time.Millisecond)
	return p, nil
}

// pid is perf's process, which the cell's disturbance check excludes.
func (p *profile) pid() int { return p.cmd.Process.Pid }

// stop ends the recording and returns the top symbols, at most top.
func (p *profile) stop(top int) ([]Symbol, error) {
	defer os.Remove(p.file)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	// perf record writes its data out on SIGINT, then ends by the signal
	// it caught.
	if err := p.cmd.Wait(); err != nil && !killedBy(err, syscall.SIGINT) {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	out, err := exec.Command(p.perf, "report", "--input", p.file, "--no-children", "--sort", "symbol", "--stdio").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	syms := parsePerfReport(string(out))
	if len(syms) == 0 {
		return nil, fmt.Errorf("perf report: no samples in %s", filepath.Base(p.file))
	}
	return syms[:min(top, len(syms))], nil
}

// perfLine is a line of `perf report --sort symbol --stdio`:
// "    23.20%  [k] _raw_spin_lock", [k] for the kernel, [.] for user space.
var perfLine = regexp.MustCompile(`^\s*([0-9.]+)%\s+\[(.)\]\s+(\S+)`)

// parsePerfReport reads the symbols of perf report's table, in its order
// (the most samples first). Kernel symbols are named as they are; a user
// space symbol gets "(user) " in front.
func parsePerfReport(out string) []Symbol {
	var syms []Symbol
	for line := range strings.Lines(out) {
		m := perfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pct, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		name := m[3]
		if m[2] != "k" {
			name = "(user) " + name
		}
		syms = append(syms, Symbol{Name: name, Percent: pct})
	}
	return syms
}

// meanProfile folds the profiles of a cell's rounds into one: each
// symbol's mean share over the rounds that have a profile (a symbol
// missing from a round's top counts as 0 there), the top most first.
func meanProfile(profiles [][]Symbol, top int) []Symbol {
	sum := map[string]float64{}
	n := 0
	for _, p := range profiles {
		if len(p) == 0 {
			continue
		}
		n++
		for _, s := range p {
			sum[s.Name] += s.Percent
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Symbol, 0, len(sum))
	for name, v := range sum {
		out = append(out, Symbol{Name: name, Percent: v / float64(n)})
	}
	slices.SortFunc(out, func(a, b Symbol) int {
		return cmp.Or(cmp.Compare(b.Percent, a.Percent), strings.Compare(a.Name, b.Name))
	})
	return out[:min(top, len(out))]
}

// profileText is a profile on one line: "40.0% _raw_spin_lock, 7.0% ...".
func profileText(syms []Symbol) string {
	parts := make([]string, len(syms))
	for i, s := range syms {
		parts[i] = fmt.Sprintf("%.1f%% %s", s.Percent, s.Name)
	}
	return strings.Join(parts, ", ")
}

// killedBy says err is the exit of a process that sig ended.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
