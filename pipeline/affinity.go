package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinThread pins the calling OS thread to one CPU with sched_setaffinity.
// The caller must hold runtime.LockOSThread: locking alone does not pin, and
// pinning an unlocked goroutine's thread pins whatever runs there next.
func PinThread(cpu int) error {
	if cpu < 0 || cpu >= 1024 {
		return fmt.Errorf("cpu %d out of range", cpu)
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
			if c < 0 || c >= 1024 || !set.IsSet(c) {
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
