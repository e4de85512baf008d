package xsk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/caps"
	"github.com/xdpipe/xdpipe/internal/sat"
)

// Cost is memory a configuration will take, worked out from its settings
// before anything is allocated, so that a typo (ring: 1073741824) is
// refused with a message instead of bringing on the OOM killer: AF_XDP
// rings are kernel memory that no memory cgroup contains.
type Cost struct {
	// Setting names what sizes it as the user wrote it, a config key or a
	// flag ("ring", "stage sample (line 7): depth and snaplen"): the
	// refusal starts with it and says to lower it.
	Setting string
	// Bytes is the amount, saturated at math.MaxUint64 (never wrapped).
	Bytes uint64
	// Locked memory (a UMEM) counts against RLIMIT_MEMLOCK.
	Locked bool
}

// UmemCost is the locked memory of umems UMEMs of frames frames of
// frameSize bytes each (0: DefaultFrameSize).
func UmemCost(setting string, umems, frames uint64, frameSize uint32) Cost {
	if frameSize == 0 {
		frameSize = DefaultFrameSize
	}
	return Cost{Setting: setting, Bytes: sat.Mul(umems, frames, uint64(frameSize)), Locked: true}
}

// RingsCost is the kernel memory of sockets sockets' four rings: rx and tx
// descriptors of 16 bytes, fill and completion addresses of 8 bytes, each
// ring with a page for its producer and consumer words.
func RingsCost(setting string, sockets, rx, tx, fill, completion uint64) Cost {
	const desc, addr, page = 16, 8, 4096
	per := sat.Add(sat.Mul(sat.Add(rx, tx), desc), sat.Mul(sat.Add(fill, completion), addr), 4*page)
	return Cost{Setting: setting, Bytes: sat.Mul(sockets, per)}
}

// Cost is the locked memory NewUmem(o) maps, its defaults applied, under
// setting.
func (o UmemOptions) Cost(setting string) Cost {
	o = o.withDefaults()
	return UmemCost(setting, 1, uint64(o.NumFrames), o.FrameSize)
}

// Cost is the kernel memory of the four rings of a socket made with o on
// a UMEM made with uo (its fill and completion ring sizes), defaults
// applied, under setting.
func (o SocketOptions) Cost(setting string, uo UmemOptions) Cost {
	o, uo = o.withDefaults(), uo.withDefaults()
	return RingsCost(setting, 1, uint64(o.RXSize), uint64(o.TXSize), uint64(uo.FillSize), uint64(uo.CompletionSize))
}

// MemoryLimits are what the machine allows a configuration.
type MemoryLimits struct {
	// Available is MemAvailable from /proc/meminfo: what can be allocated
	// without swapping. A configuration may take up to 3/4 of it.
	Available uint64
	// Memlock bounds the locked memory: RLIMIT_MEMLOCK's hard limit (the
	// soft one is raised to it), or no bound (math.MaxUint64) with
	// CAP_IPC_LOCK.
	Memlock uint64
}

// ReadMemoryLimits reads this machine's and process's limits.
func ReadMemoryLimits() (MemoryLimits, error) {
	l := MemoryLimits{Memlock: math.MaxUint64}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return l, fmt.Errorf("memory limits: %w", err)
	}
	if l.Available, err = memAvailable(b); err != nil {
		return l, fmt.Errorf("memory limits: %w", err)
	}
	if !caps.Have(caps.IPCLock) {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
			return l, fmt.Errorf("memory limits: getrlimit memlock: %w", err)
		}
		if lim.Max != unix.RLIM_INFINITY {
			l.Memlock = lim.Max
		}
	}
	return l, nil
}

// memAvailable parses MemAvailable (in kB) out of /proc/meminfo.
func memAvailable(meminfo []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemAvailable %q: %w", v, err)
			}
			return sat.Mul(kb, 1024), nil
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

// Sum adds costs up: the total, and the part of it that is locked (the
// UMEMs), each saturated at math.MaxUint64.
func Sum(costs []Cost) (total, locked uint64) {
	for _, c := range costs {
		total = sat.Add(total, c.Bytes)
		if c.Locked {
			locked = sat.Add(locked, c.Bytes)
		}
	}
	return total, locked
}

// CheckMemory refuses costs that the limits cannot take, in one line that
// names the setting costing the most. Call it before allocating anything.
func CheckMemory(costs []Cost, lim MemoryLimits) error {
	total, locked := Sum(costs)
	var top, topLocked Cost
	for _, c := range costs {
		if c.Bytes > top.Bytes {
			top = c
		}
		if c.Locked && c.Bytes > topLocked.Bytes {
			topLocked = c
		}
	}
	if budget := lim.Available / 4 * 3; total > budget {
		return fmt.Errorf("%s: the configuration needs %s of memory, more than 3/4 of what this machine has available (%s); lower %s",
			top.Setting, Bytes(total), Bytes(lim.Available), top.Setting)
	}
	if locked > lim.Memlock {
		return fmt.Errorf("%s: the UMEMs need %s of locked memory, more than RLIMIT_MEMLOCK allows (%s); lower %s, or raise the limit (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK",
			topLocked.Setting, Bytes(locked), Bytes(lim.Memlock), topLocked.Setting)
	}
	return nil
}

// Bytes formats a byte count for messages: 1.5 GiB, 64 KiB, 100 B.
func Bytes(n uint64) string {
	if n == math.MaxUint64 {
		return "more than 16 EiB"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
