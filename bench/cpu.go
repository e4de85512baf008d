package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clkTck is USER_HZ, the unit of /proc's tick counts (100 on every Linux
// architecture Go supports).
const clkTck = 100

// procCPU is the CPU time a process used so far: the sum over its threads
// of /proc/PID/task/TID/schedstat's time on CPU (nanoseconds, user and
// system together, softirq work done while it was running included).
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // thread exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		total += time.Duration(ns)
	}
	return total, nil
}

// sysCPU is a /proc/stat CPU line: the machine's ("cpu") or one CPU's
// ("cpu1").
type sysCPU struct {
	Busy, Softirq, Total time.Duration
}

// readSysCPU is the machine-wide line.
func readSysCPU() sysCPU { return readCPULine("cpu") }

// readCPULine is /proc/stat's line for name ("cpu", "cpu0", ...); zero if
// there is none.
func readCPULine(name string) sysCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sysCPU{}
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != name {
			continue
		}
		var v [10]int64
		for i := 1; i < len(f) && i <= 10; i++ {
			v[i-1], _ = strconv.ParseInt(f[i], 10, 64)
		}
		tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clkTck }
		// user nice system idle iowait irq softirq steal guest guest_nice
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		return sysCPU{Busy: tick(busy), Softirq: tick(v[6]), Total: tick(busy + v[3] + v[4])}
	}
	return sysCPU{}
}

func (a sysCPU) sub(b sysCPU) sysCPU {
	return sysCPU{Busy: a.Busy - b.Busy, Softirq: a.Softirq - b.Softirq, Total: a.Total - b.Total}
}

// procTicks maps every user-space process (kernel threads left out) to its
// utime+stime in ticks, from /proc/PID/stat.
func procTicks() map[int]int64 {
	out := map[int]int64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		flags, _ := strconv.ParseUint(f[6], 10, 64)
		if flags&0x00200000 != 0 { // PF_KTHREAD
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = ut + st
	}
	return out
}

// othersCPU is the CPU time processes other than exclude used between two
// procTicks snapshots (processes that started in between count whole),
// and the busiest of them.
func othersCPU(before, after map[int]int64, exclude map[int]bool) (time.Duration, int) {
	var total int64
	top, topPid := int64(0), 0
	for pid, t := range after {
		if exclude[pid] {
			continue
		}
		d := t - before[pid]
		if d <= 0 {
			continue
		}
		total += d
		if d > top {
			top, topPid = d, pid
		}
	}
	return time.Duration(total) * time.Second / clkTck, topPid
}

// procName is /proc/PID/comm, for reports.
func procName(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}
