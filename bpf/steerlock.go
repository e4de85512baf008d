//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// lock serialises rule changes within the process and, when pinned, with
// other processes changing the same pins.
func (s *Steer) lock() (func(), error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	if s.pin == "" {
		return s.p.mu.Unlock, nil
	}
	fd, err := unix.Open(s.pin, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		s.p.mu.Unlock()
		return nil, fmt.Errorf("%w: %s was removed while the program ran (by hand, or by another process); "+
			"the rules in force keep steering but cannot change until the program is loaded again", ErrPinsGone, s.pin)
	}
	if err != nil {
		s.p.mu.Unlock()
		return nil, fmt.Errorf("lock %s: %w", s.pin, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		s.p.mu.Unlock()
		return nil, fmt.Errorf("lock %s: %w", s.pin, err)
	}
	return func() { unix.Close(fd); s.p.mu.Unlock() }, nil
}

// waitForReaders returns when no XDP program run that started before the
// call is still running: membarrier(MEMBARRIER_CMD_GLOBAL) is
// synchronize_rcu(), and XDP and BPF_PROG_RUN run inside RCU read-side
// sections. On kernels refusing it (nohz_full) a generous sleep stands in.
func waitForReaders() {
	const membarrierCmdGlobal = 1
	if _, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); e != 0 {
		time.Sleep(100 * time.Millisecond)
	}
}
