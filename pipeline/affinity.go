package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPU is the CPU a busy loop's thread is pinned to, or none: the zero
// value pins nothing, OnCPU(n) pins to CPU n. WorkerConfig, the data
// plane's receive loop and the benchmark harness take one, so "not
// pinned" is the same zero value everywhere and never CPU 0.
type CPU struct {
	n      int
	pinned bool
}

// OnCPU is CPU n, 0 or more (a negative one is refused where it is used).
func OnCPU(n int) CPU { return CPU{n: n, pinned: true} }

// Get returns the CPU's number and true, or false for no CPU.
func (c CPU) Get() (n int, ok bool) { return c.n, c.pinned }

// String is the CPU's number, or "none".
func (c CPU) String() string {
	if !c.pinned {
		return "none"
	}
	return strconv.Itoa(c.n)
}

// check refuses a CPU PinThread would refuse, before anything runs.
func (c CPU) check() error {
	if c.pinned && (c.n < 0 || c.n >= maxCPU) {
		return fmt.Errorf("cpu %d out of range", c.n)
	}
	return nil
}

// Pin pins the calling OS thread to c (PinThread), and does nothing for
// no CPU. The caller must hold runtime.LockOSThread.
func (c CPU) Pin() error {
	if !c.pinned {
		return nil
	}
	return PinThread(c.n)
}

// maxCPU bounds the CPU numbers a unix.CPUSet holds.
const maxCPU = 1024

// PinThread pins the calling OS thread to one CPU with sched_setaffinity.
// The caller must hold runtime.LockOSThread: locking alone does not pin, and
// pinning an unlocked goroutine's thread pins whatever runs there next.
func PinThread(cpu int) error {
	if err := OnCPU(cpu).check(); err != nil {
		return err
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity cpu %d: %w", cpu, err)
	}
	return nil
}

// ParseCPUList parses a Linux CPU list ("0-3,6,8-9") into CPU numbers in
// the order listed (a worker per queue takes them in queue order),
// rejecting duplicates and CPUs this machine does not have.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: bad cpu %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if c < 0 || c >= maxCPU || !set.IsSet(c) {
				return nil, fmt.Errorf("cpu list %q: cpu %d not available", s, c)
			}
			if slices.Contains(cpus, c) {
				return nil, fmt.Errorf("cpu list %q: cpu %d listed twice", s, c)
			}
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
